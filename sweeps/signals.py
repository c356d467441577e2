"""SIGTERM as an exception, so an ended sweep closes its trial and runs like Ctrl-C does."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

__all__ = ["Terminated", "exit_status", "terminate_as_exception"]


class Terminated(BaseException):
    """The process received SIGTERM."""


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


@contextlib.contextmanager
def terminate_as_exception() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_status(exc: BaseException) -> int:
    """128 + the signal number, as shells report it."""
    return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
