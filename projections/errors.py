"""Errors raised by the projections: one base class, one subclass per situation."""

from __future__ import annotations


class ProjectionError(Exception):
    """Base class of every error raised by ``projections``."""

    code = "projection-error"


class InvalidQuery(ProjectionError):
    """A query argument is malformed (a bad cursor, an out-of-range limit or as-of point)."""

    code = "invalid-query"


class UnknownAgency(ProjectionError):
    """A report was asked for an agency that the log never registered."""

    code = "unknown-agency"


class ViewsMissing(ProjectionError):
    """The database has no projection tables: its schema predates migration 0002."""

    code = "views-missing"


class RebuildMismatch(ProjectionError):
    """A rebuilt view differs from the incrementally built one (a projection bug)."""

    code = "rebuild-mismatch"
