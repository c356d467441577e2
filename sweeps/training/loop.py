"""The training loop of one trial: objective + optimizer + scheduler + epochs.

It emits per-epoch statistics in chunks to observers (Optuna reporting, MLflow logging,
progress); it knows nothing about them. An observer that returns True from ``on_chunk``
stops the run (pruning); an exception an observer raises is not the trial's failure but the
sweep's (``ObserverError``): it leaves the loop as it is.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from sweeps.training.hparams import Hyperparams
from sweeps.training.stats import EpochStats
from sweeps.training.verdicts import Verdict, judge

if TYPE_CHECKING:
    import torch

    from objectives import Objective

__all__ = ["ObjectiveStartError", "Observer", "ObserverError", "TrainResult", "default_chunk", "deliver", "finish",
           "observe", "raise_observer_error", "report", "train", "trainable"]

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


def train(
    objective: Objective,
    hp: Hyperparams,
    epochs: int,
    *,
    device: str | torch.device = "cpu",
    observers: tuple[Observer, ...] = (),
    chunk: int | None = None,
    per_tensor: bool = True,
    log_steps: bool = False,
) -> TrainResult:
    """Run ``epochs`` epochs of ``hp`` on ``objective`` and return the result: one full-batch
    step an epoch, or one pass over the batches of a mini-batch objective
    (``sweeps.training.minibatch``).

    ``per_tensor`` adds each parameter tensor's mean |grad| and update ratio to the
    statistics (``grad_abs_mean/<tensor>``, ``update_ratio/<tensor>``) for objectives of 2
    to ``recorder.MAX_TENSORS`` tensors (``recorder.tracked_tensors``).

    ``log_steps`` keeps every step's loss and learning rate of a mini-batch objective
    (``EpochStats.trace``; see ``train_minibatch``). A full-batch objective ignores it: its
    one step an epoch is already in the per-epoch ``loss`` and ``lr``."""
    import torch

    from objectives import is_minibatch
    from sweeps.optim import SCHEDULERS, build_optimizer, build_scheduler
    from sweeps.optim.optimizers import clip_gradients
    from sweeps.training.recorder import Recorder, chunk_capacity, tracked_tensors

    if is_minibatch(objective):
        from sweeps.training.minibatch import train_minibatch

        return train_minibatch(objective, hp, epochs, device=device, observers=observers,
                               chunk=chunk, per_tensor=per_tensor, log_steps=log_steps)
    device = torch.device(device)
    try:
        initial = objective.init_params(device)
        params = trainable(initial)
        leaves = list(params.values())
        optimizer = build_optimizer(hp.optimizer, leaves, hp.lr, hp.options)
        scheduler = build_scheduler(hp.scheduler, optimizer, epochs, hp.options)
    except Exception as exc:
        raise ObjectiveStartError(f"{type(exc).__name__}: {exc}") from exc
    steps_on_loss = SCHEDULERS[hp.scheduler].steps_on_loss
    recorder = Recorder(leaves, chunk_capacity(leaves, chunk or default_chunk(epochs)),
                        tracked_tensors(list(params), per_tensor))
    group = optimizer.param_groups[0]
    parts: list[EpochStats] = []

    def flush() -> Status | tuple[int, str]:
        return deliver(recorder.drain(), observers, parts)

    epoch = 0
    outcome: Status | tuple[int, str] = "complete"
    try:
        for epoch in range(epochs):
            optimizer.zero_grad()
            loss = objective.loss(params)
            loss.backward()
            recorder.record(loss, group["lr"], [p.grad for p in leaves])
            clip_gradients(leaves, hp.options)
            optimizer.step()
            if scheduler is not None:
                scheduler.step(loss.item()) if steps_on_loss else scheduler.step()
            if recorder.full or epoch == epochs - 1:
                outcome = flush()
                if outcome != "complete":
                    break
    except Exception as exc:
        raise_observer_error(exc)
        if epoch == 0 and recorder.size == 0 and not parts:
            raise ObjectiveStartError(f"{type(exc).__name__}: {exc}") from exc
        outcome = flush() if recorder.size else "complete"
        if not isinstance(outcome, tuple):  # the exception, not an earlier NaN, ended it
            return finish(observers, parts, "failed", math.nan,
                           f"{type(exc).__name__}: {exc}", epoch, None)
    except BaseException:  # interrupted: hand the epochs already run to the observers
        if recorder.size:
            flush()
        raise
    if isinstance(outcome, tuple):
        bad_epoch, what = outcome
        return finish(observers, parts, "failed", math.nan, f"non-finite {what}", bad_epoch,
                       None)
    with torch.no_grad():
        final = float(objective.loss(params))
    if not math.isfinite(final):
        return finish(observers, parts, "failed", final, "non-finite final loss", epochs, None)
    detached = {k: v.detach() for k, v in params.items()}
    return finish(observers, parts, outcome, final, None, None, detached)


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
