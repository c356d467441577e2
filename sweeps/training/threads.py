"""A run on a given number of torch intra-op threads (the count of a process as a whole is
``sweeps.parallel.threads``'s business)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["threads_for"]


@contextmanager
def threads_for(count: int) -> Iterator[None]:
    """torch on ``count`` intra-op threads inside the block, as it was after it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
