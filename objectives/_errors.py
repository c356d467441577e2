"""The one error objectives raise for bad arguments."""

from __future__ import annotations

__all__ = ["ObjectiveError"]


class ObjectiveError(ValueError):
    """A bad objective name or argument: names the field, the bad value and what is allowed."""

    def __init__(self, field: str, value: object, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field}: {value!r} is not valid; {allowed}")

    def __reduce__(self) -> tuple[type, tuple[str, object, str]]:
        """Pickled with its three fields (it crosses to and from child processes)."""
        return type(self), (self.field, self.value, self.allowed)
