"""The Great Expectations suites, one per entity, shipped with the package."""
