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
    """SIGTERM raises ``Terminated``, and SIGINT ``KeyboardInterrupt`` even where the process
    was started with SIGINT ignored (a shell's background job): an interrupted sweep always
    closes its trial and runs before it exits."""
    previous = signal.signal(signal.SIGTERM, _raise)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


def exit_status(exc: BaseException) -> int:
    """128 + the signal number, as shells report it."""
    return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
