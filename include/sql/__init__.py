"""The warehouse SQL, shipped with the package: ``importlib.resources.files("salespulse.sql")``."""
