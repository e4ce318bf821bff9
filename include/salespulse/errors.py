"""Errors a retry cannot fix.

A task that fails with one of these fails at once, without Airflow's retries, and says why in its log and
in an alert (``plugins/salespulse_airflow/runtime.py``). Anything else (a network error, a lock, a
server's 5xx) keeps the retries. The specific errors keep their usual base (``ValueError`` for bad input),
so code that catches those still does.
"""

from __future__ import annotations


class PermanentError(Exception):
    """Retrying will not help: the configuration, a mapping, a source's schema or a source's answer must be
    changed first."""


class ConfigurationError(PermanentError, ValueError):
    """A setting is missing or invalid; the message names the variable."""


class EntityNotProvided(LookupError):
    """The source has nothing for an entity: no export file, not in the mapping. For an optional entity that
    is recorded and the pipeline goes on; for a required one it becomes a permanent error."""


class SourceError(RuntimeError):
    """The source could not be read (after retries, where retrying makes sense)."""


class UnreadableFile(PermanentError, SourceError):
    """A file that no retry will read: not text in the expected encoding, a broken gzip stream, an empty
    CSV, something that is not Parquet."""
