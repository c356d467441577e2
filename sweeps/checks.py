"""The checks every command applies to its input, before anything is written. Each raises
``UsageError`` naming the field, the bad value and what is allowed."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from pathlib import Path

from sweeps.errors import UsageError

__all__ = ["DEVICES", "PRECISIONS", "at_least", "check_device", "check_precision", "choice",
           "names", "number", "positive", "readable_text", "resolve_device", "worker_device",
           "writable_file"]

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "fp16")  # --precision: float32, or autocast to bf16 or fp16


def choice(field: str, value: object, allowed: Iterable[str]) -> None:
    """``value`` is one of ``allowed``."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise UsageError(field, value, f"use one of {', '.join(allowed)}")


def names(field: str, values: tuple[str, ...], allowed: Iterable[str]) -> None:
    """``values`` is one or more of ``allowed``."""
    allowed = tuple(allowed)
    for value in values or ("",):
        if value not in allowed:
            raise UsageError(field, value, f"use one or more of {', '.join(allowed)}")


def at_least(field: str, value: object, low: int) -> None:
    """``value`` is an integer (not a bool) >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UsageError(field, value, f"use an integer >= {low}")


def positive(field: str, value: float) -> None:
    """``value`` is a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not (math.isfinite(value) and value > 0):
        raise UsageError(field, value, "use a finite number > 0")


def number(field: str, raw: str) -> float:
    """``raw`` read as a number."""
    try:
        return float(raw)
    except ValueError:
        raise UsageError(field, raw, "use a number") from None


def readable_text(field: str, path: str, kind: str) -> str:
    """The text of file ``path``, which should hold ``kind`` (JSON, TOML)."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(field, path, f"use a readable {kind} file ({type(exc).__name__})")


def writable_file(field: str, path: str, suffix: str | None = None) -> None:
    """``path`` names a file (ending in ``suffix``, if given) in an existing folder."""
    target = Path(path)
    if suffix is not None and target.suffix.lower() != suffix:
        raise UsageError(field, path, f"use a file name ending in {suffix}")
    try:
        usable = not target.is_dir() and target.parent.is_dir()
    except OSError as exc:  # e.g. a name longer than the file system allows
        raise UsageError(field, path, f"use a file path in an existing folder "
                                      f"({exc.strerror})") from None
    if not usable:
        raise UsageError(field, path, "use a file path in an existing folder")


def check_device(name: str) -> None:
    """``name`` is auto, cpu, cuda or cuda:K (K a device index)."""
    if name not in DEVICES and not re.fullmatch(r"cuda:\d+", name):
        raise UsageError("device", name, "use auto, cpu, cuda or cuda:K (K a GPU's index)")


def resolve_device(name: str, worker: int = 0) -> str:
    """The device of worker ``worker`` of a sweep (0: the main process): ``auto`` as ``cuda``
    where CUDA is available, else ``cpu``; ``cuda`` and ``cuda:K`` only there (see
    ``worker_device``)."""
    check_device(name)
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if name == "auto":
        name = "cuda" if count else "cpu"
    return worker_device(name, worker, count)


def worker_device(name: str, worker: int, count: int) -> str:
    """Where worker ``worker`` trains, given the device asked for (``cpu``, ``cuda`` or
    ``cuda:K``) and ``count`` visible GPUs: with several, ``cuda`` spreads the workers over
    them (worker i on ``cuda:{i mod count}``); ``cuda:K`` puts every worker on GPU K."""
    if name == "cpu":
        return name
    if not count:
        raise UsageError("device", name, "CUDA is not available here; use auto or cpu")
    if name == "cuda":
        return f"cuda:{worker % count}" if count > 1 else name
    index = int(name.partition(":")[2])
    if index >= count:
        raise UsageError("device", name, f"this machine has {count} GPU(s): use cuda:0 to "
                                         f"cuda:{count - 1}")
    return name

def check_precision(name: str, device: str) -> None:
    """``name`` is one of ``PRECISIONS`` and runs on ``device`` (``cpu``, ``cuda`` or
    ``cuda:K``, as ``resolve_device`` gives it): torch autocasts to it there, and a GPU
    computes bf16 natively (compute capability 8.0 and later; an older one would emulate it)."""
    choice("precision", name, PRECISIONS)
    if name == "fp32":
        return
    import warnings

    import torch

    kind = torch.device(device).type
    if kind == "cuda" and name == "bf16" and not torch.cuda.is_bf16_supported(
            including_emulation=False):
        raise UsageError("precision", name, f"device {device} has no native bfloat16 (a GPU "
                                            "of compute capability 8.0 or later has): use fp16 "
                                            "or fp32")
    dtype = torch.bfloat16 if name == "bf16" else torch.float16
    with warnings.catch_warnings():  # torch warns, and turns autocast off, where it cannot
        warnings.simplefilter("ignore")
        with torch.autocast(kind, dtype=dtype):
            runs = torch.is_autocast_enabled(kind)
    if not runs:
        raise UsageError("precision", name, f"torch {torch.__version__} cannot autocast to "
                                            f"{name} on device {device}: use fp32")
