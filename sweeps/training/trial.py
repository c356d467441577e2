"""What a training loop of one trial shares with the others (the full-batch loop in
``sweeps.training.loop``, the mini-batch loop in ``sweeps.training.minibatch``, the stacks of
``sweeps.batched``): the observers that hear a trial's statistics, its result, the errors that
are not the trial's, and the delivery of each chunk of statistics.

An observer that returns True from ``on_chunk`` stops the run (pruning); an exception an
observer raises is not the trial's failure but the sweep's (``ObserverError``): it leaves the
loop as it is.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from sweeps.training.stats import EpochStats
from sweeps.training.verdicts import Verdict, judge

if TYPE_CHECKING:
    import torch

__all__ = ["ObjectiveStartError", "Observer", "ObserverError", "Status", "TrainResult",
           "default_chunk", "deliver", "finish", "observe", "raise_observer_error", "report",
           "trainable"]

Status = Literal["complete", "pruned", "failed"]


class Observer(Protocol):
    """Receives a trial's statistics. Subclass it and override what you need."""

    def on_report(self, stats: EpochStats) -> None:
        """Statistics of the epochs just run, before ``on_chunk``: when trials train side by
        side, every trial's observers hear of a chunk here before any is asked to stop one,
        so that a decision can weigh the others' values of the same epochs (pruning)."""
        return None

    def on_chunk(self, stats: EpochStats) -> bool:
        """Statistics of the epochs just run; return True to stop (prune) the trial."""
        return False

    def on_end(self, result: TrainResult) -> None:
        """The trial ended (completed, pruned or failed)."""
        return None


@dataclass(frozen=True)
class TrainResult:
    status: Status  # complete, pruned or failed
    final_loss: float  # loss of the parameters after the last step (nan if failed); for a
    # mini-batch objective the mean training loss of the last epoch
    best_loss: float  # lowest loss seen, including final_loss
    epochs_run: int  # epochs whose statistics were recorded
    history: EpochStats  # per-epoch statistics of every epoch run
    failure: str | None = None  # why the run failed
    failure_epoch: int | None = None  # epoch at which it failed
    params: dict[str, torch.Tensor] | None = None  # parameters after the last step
    verdict: Verdict | None = None  # why it went as it did (None: no epoch ran)
    buffers: dict[str, torch.Tensor] | None = None  # a mini-batch trial's buffers at the end
    # (BatchNorm statistics), for ``objectives.evaluate``


class ObjectiveStartError(RuntimeError):
    """The objective could not produce a first loss: no trial of it can run."""


class ObserverError(Exception):
    """An observer raised (the study's storage, the tracking server): not the trial's
    failure. The training loops let the observer's own exception (the cause) out as it is,
    and the sweep stops with one line; finished trials are kept and it can be resumed."""


def observe(hook: Callable[..., Any], *args: Any) -> Any:
    """``hook(*args)``, an observer's; what it raises comes wrapped in ``ObserverError``."""
    try:
        return hook(*args)
    except Exception as exc:
        raise ObserverError(f"{type(exc).__name__}: {exc}") from exc


def raise_observer_error(exc: Exception) -> None:
    """If ``exc`` is an ``ObserverError``, raise its cause: a loop's handler of the trial's
    own failures calls this first."""
    if isinstance(exc, ObserverError) and exc.__cause__ is not None:
        raise exc.__cause__


def default_chunk(epochs: int, steps_per_epoch: int = 1) -> int:
    """Epochs per statistics chunk: one epoch where an epoch is several steps (a mini-batch
    objective reports every epoch, so that it can be pruned after any), else about 20
    chunks a run, 1 to 500 epochs each."""
    if steps_per_epoch > 1:
        return 1
    return max(1, min(500, epochs // 20))


def deliver(stats: EpochStats, observers: tuple[Observer, ...],
            parts: list[EpochStats]) -> Status | tuple[int, str]:
    """Hand a chunk of statistics, cut before its first non-finite epoch, to every observer
    and keep it in ``parts``. Returns (epoch, metric) of that non-finite value, else "pruned"
    if an observer asked to stop, else "complete"."""
    bad = stats.first_nonfinite()
    if bad is not None:
        stats = stats.head(bad[0] - stats.start)
    parts.append(stats)
    report(stats, observers)
    stop = False
    for observer in observers:  # every observer sees every chunk
        stop = observe(observer.on_chunk, stats) or stop
    return bad if bad is not None else ("pruned" if stop else "complete")


def report(stats: EpochStats, observers: tuple[Observer, ...]) -> None:
    """Every observer's ``on_report`` of ``stats`` (observers that are not ``Observer``
    subclasses may lack it)."""
    for observer in observers:
        hook = getattr(observer, "on_report", None)
        if hook is not None:
            observe(hook, stats)


def trainable(initial: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The trial's own parameters: contiguous copies of ``initial`` that require grad."""
    import torch

    return {k: v.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True)
            for k, v in initial.items()}


def finish(
    observers: tuple[Observer, ...],
    parts: list[EpochStats],
    status: Status,
    final: float,
    failure: str | None,
    failure_epoch: int | None,
    params: dict[str, torch.Tensor] | None,
    buffers: dict[str, torch.Tensor] | None = None,
) -> TrainResult:
    history = EpochStats.concat(parts)
    finite = history.loss[np.isfinite(history.loss)]
    candidates = [*finite.tolist(), final] if math.isfinite(final) else finite.tolist()
    best = min(candidates) if candidates else math.nan
    verdict = judge(history, failed=failure) if len(history) or failure else None
    result = TrainResult(status, final, best, len(history), history, failure, failure_epoch,
                         params, verdict, buffers)
    for observer in observers:
        observe(observer.on_end, result)
    return result
