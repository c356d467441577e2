"""Bad input at the boundary: one line naming the field, the bad value and what is allowed."""

from __future__ import annotations

__all__ = ["UsageError", "usage_line"]


class UsageError(Exception):
    """Bad user input. The CLI prints ``usage_line(err)`` to stderr and exits with status 2."""

    def __init__(self, field: str, value: object, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field}: {value!r} is not valid; {allowed}")


def usage_line(prog: str, exc: BaseException) -> str:
    """The one stderr line for a bad input (``UsageError`` or ``ObjectiveError``)."""
    return f"{prog}: error: {exc}"
