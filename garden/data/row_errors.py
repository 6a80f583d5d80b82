"""The error of one row that cannot become a training sample."""

from __future__ import annotations


class RowError(Exception):
    """A row that cannot become a training sample; the message is shown with its location."""
