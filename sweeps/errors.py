"""Messages for people: bad input as one line naming the field, the bad value and what is
allowed, and the one-line forms of other errors."""

from __future__ import annotations

__all__ = ["UsageError", "first_line", "one_line"]


class UsageError(Exception):
    """Bad user input. The commands print it as one line on stderr and exit with status 2."""

    def __init__(self, field: str, value: object, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field}: {value!r} is not valid; {allowed}")

    def __reduce__(self) -> tuple[type, tuple[str, object, str]]:
        """Pickled with its three fields (it crosses to and from child processes)."""
        return type(self), (self.field, self.value, self.allowed)


def one_line(text: str) -> str:
    """``text`` on one line: line breaks become ' | ' (a bad input is one stderr line)."""
    return " | ".join(part.strip() for part in text.splitlines() if part.strip())


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its repr if it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else repr(exc)
