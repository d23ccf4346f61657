"""The catalog's error types, in one module every other one can import (no cycles through ``store``)."""

from __future__ import annotations


class CatalogError(RuntimeError):
    """A catalog operation that cannot proceed (unknown dataset, conflict...)."""


class IntegrityError(CatalogError):
    """A file does not match the hash its manifest or HEAD records, or sits where it may not."""


class RestrictedError(CatalogError):
    """A restricted dataset's rows (or anything derived from them) were asked for without ``allow_restricted``."""


class HeadMoved(CatalogError):
    """A commit's expected parent is no longer the head: another version landed first."""


class ConflictError(CatalogError):
    """The shared catalog's history and the local one differ (another publisher got there first)."""
