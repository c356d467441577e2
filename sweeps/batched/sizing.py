"""How many trials a sweep batches: measured on the objective and device before a study's
first batch, and stored with the study (``for_study``), so that a resumed sweep and every
``--workers`` process batch the same way: the same seed gives the same study.

Batching pays where a step is dominated by fixed costs (Python, dispatch, small kernels: the
seed's 16 share counts, a small MLP) and not where it is dominated by arithmetic that the
batch only multiplies (a convolution on the CPU runs no faster per trial as a grouped
convolution). So ``choose_batch`` times the steady-state step of the wanted batch (rows of one
probe configuration, Adam: the costliest stacked rule but one) and the step of one trial as
the sequential loop runs it, both with the statistics the sweep records, and batches only if
a trial's share of the batched step costs at most ``1 / MIN_GAIN`` of its step alone. The
trials of a batch prune each other in lockstep (``sweeps.study.halving``), but a batch's
trials are asked of the sampler together, so it learns from fewer finished trials when it
picks them: a small gain per step is not worth that. After a few warm-up steps the two sides
step in turn until about ``_PROBE_SECONDS`` have passed (at least ``_MIN_STEPS`` each), and
each side's median step counts; nothing of it is kept. A batch that runs out of memory in the
probe is halved until one fits.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from sweeps.batched.stack import out_of_memory
from sweeps.training.hparams import Hyperparams

if TYPE_CHECKING:
    import optuna

    from objectives import Objective

__all__ = ["BatchChoice", "choose_batch", "for_study"]

_PROBE = Hyperparams("adam", 1e-4)  # small steps: nothing diverges while the clock runs
_WARM_UP = 2
_MIN_STEPS = 3
_PROBE_SECONDS = 0.15
MIN_GAIN = 1.5  # batch where a step costs a trial at most 1 / MIN_GAIN of its step alone
CHOICE_ATTR = "trial_batch"  # the study's user attribute that keeps the choice


@dataclass(frozen=True)
class BatchChoice:
    """Trials per batch, and the step times it was chosen by (ms per trial and step; NaN:
    not measured)."""

    size: int
    wanted: int
    batched_ms: float = math.nan
    sequential_ms: float = math.nan
    reason: str = ""

    @property
    def pays(self) -> bool:
        """False where batching was measured not to pay: nothing batches then, the plots'
        reference run (a rider) included."""
        return self.size > 1 or math.isnan(self.batched_ms)

    def describe(self) -> str:
        """One line for the log."""
        if math.isnan(self.batched_ms) or math.isnan(self.sequential_ms):
            return f"trials run in batches of {self.size} ({self.reason})"
        why = f"; {self.reason}" if self.reason else ""
        return (f"trials run in batches of {self.size}: a step costs "
                f"{self.batched_ms:.3g} ms a trial in a batch of {self.wanted}, "
                f"{self.sequential_ms:.3g} ms one at a time (measured; batching needs "
                f"{MIN_GAIN:g}x{why})")


def for_study(study: optuna.Study, objective: Objective, wanted: int, epochs: int,
              device: str, per_tensor: bool = True, log_steps: bool = False) -> BatchChoice:
    """The choice stored with ``study`` for ``wanted`` (``--batch``), else ``choose_batch``'s,
    stored there for the next process of the sweep."""
    from dataclasses import asdict

    stored = dict(study.user_attrs.get(CHOICE_ATTR, {}))
    if stored.pop("asked", None) == wanted:
        return BatchChoice(**stored)
    choice = choose_batch(objective, wanted, epochs, device, per_tensor, log_steps)
    if not choice.reason.startswith("not measured"):
        study.set_user_attr(CHOICE_ATTR, {"asked": wanted, **asdict(choice)})
    return choice


def choose_batch(objective: Objective, wanted: int, epochs: int, device: str,
                 per_tensor: bool = True, log_steps: bool = False) -> BatchChoice:
    """``wanted`` if a step of ``wanted`` batched trials costs a trial at most
    ``1 / MIN_GAIN`` of a step of it alone, else 1; where ``wanted`` rows run out of memory,
    half as many (and so on). An objective that fails in the probe gets ``wanted``
    unmeasured: its first trials fail the same way and say why."""
    asked = wanted
    while wanted >= 2:
        try:
            choice = _measure(objective, wanted, epochs, device, per_tensor, log_steps)
        except Exception as exc:
            if not out_of_memory(exc):
                raise
            wanted //= 2
            continue
        if wanted < asked:
            return replace(choice, reason=f"{asked} rows ran out of memory")
        return choice
    if asked < 2:
        return BatchChoice(asked, asked, reason="asked for")
    return BatchChoice(1, asked, reason="2 rows ran out of memory")


def _measure(objective: Objective, wanted: int, epochs: int, device: str, per_tensor: bool,
             log_steps: bool) -> BatchChoice:
    """``choose_batch`` for ``wanted`` rows (at least 2); raises what running out of memory
    raises."""
    from sweeps.batched.trials import batched_stack

    try:
        stack = batched_stack(objective, [_PROBE] * wanted, epochs, device, per_tensor,
                              log_steps=log_steps)
        if stack is None:
            return BatchChoice(1, wanted, reason="the objective's trials cannot be stacked")
        with _one_thread(device):
            batched, sequential = _median_steps(
                [stack.probe_step, _sequential_step(objective, device, per_tensor)],
                _synchronizer(device), _clock(device))
    except Exception as exc:  # the objective's failure: the sweep reports it as such
        if out_of_memory(exc):
            raise
        return BatchChoice(wanted, wanted, reason=f"not measured: {type(exc).__name__}")
    batched /= wanted
    size = wanted if batched * MIN_GAIN <= sequential else 1
    return BatchChoice(size, wanted, batched * 1e3, sequential * 1e3)


def _median_steps(steps: list[Callable[[int], None]], sync: Callable[[], None],
                  clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Steady-state seconds (of ``clock``) per call of each of ``steps``: the calls
    alternate, and the median call counts, so that a call slowed by something else does not
    decide."""
    for i in range(_WARM_UP):
        for step in steps:
            step(i)
    sync()
    times: list[list[float]] = [[] for _ in steps]
    start = time.perf_counter()
    i = _WARM_UP
    while i < _WARM_UP + _MIN_STEPS or time.perf_counter() - start < _PROBE_SECONDS:
        for step, seen in zip(steps, times):
            began = clock()
            step(i)
            sync()
            seen.append(clock() - began)
        i += 1
    return [statistics.median(seen) for seen in times]


def _sequential_step(objective: Objective, device: str,
                     per_tensor: bool) -> Callable[[int], None]:
    """One step of one trial as the sequential loops take it (``sweeps.training``): the loss,
    its gradient, the statistics, the update. The update is torch's single-tensor Adam
    arithmetic as its stacked rule repeats it, on one row: building a ``torch.optim``
    optimizer imports ``torch._dynamo`` (over a second) in a sweep that may never build one.
    The optimizer's own Python overhead per step (tens of microseconds) is left out, which
    can only make batching look less worth it."""
    import torch

    from objectives import is_minibatch
    from sweeps.batched.rules import RULES
    from sweeps.optim.optimizers import group_options
    from sweeps.training.loop import trainable
    from sweeps.training.recorder import Recorder, StepRecorder, tracked_tensors

    where = torch.device(device)
    params = trainable(objective.init_params(where))
    leaves = list(params.values())
    rows = [p.detach().unsqueeze(0) for p in leaves]  # views: the rule updates the leaves
    rule = RULES[_PROBE.optimizer](
        slice(0, 1), [group_options(_PROBE.optimizer, _PROBE.lr, _PROBE.options)], rows[0])
    lr = torch.full((1,), _PROBE.lr, dtype=rows[0].dtype, device=where)
    tensors = tracked_tensors(list(params), per_tensor)

    def update() -> None:
        grads = [torch.zeros_like(r) if p.grad is None else p.grad.unsqueeze(0)
                 for p, r in zip(leaves, rows)]
        with torch.no_grad():
            rule.step(rows, grads, lr)
        for p in leaves:
            p.grad = None

    if is_minibatch(objective):
        state = objective.start_trial(where)
        batches = objective.batches(0, where)
        recorder = StepRecorder(leaves, 1, tensors)

        def step(i: int) -> None:
            loss = objective.batch_loss(params, state, batches[i % len(batches)])
            loss.backward()
            recorder.before_step(loss, [p.grad for p in leaves])
            update()
            recorder.after_step(_PROBE.lr)
    else:
        full = Recorder(leaves, 1, tensors)

        def step(i: int) -> None:
            loss = objective.loss(params)
            loss.backward()
            full.size = 0  # one row, rewritten each step
            full.record(loss, _PROBE.lr, [p.grad for p in leaves])
            update()

    return step


def _clock(device: str) -> Callable[[], float]:
    """What a probe step is timed by: on the CPU the thread's CPU time, which other
    processes on the machine do not inflate (on a loaded machine a short step that loses its
    core once reads many times its length, which would decide for batching by chance; the
    probe runs on one thread, ``_one_thread``, so that no CPU time is spent waiting for
    another); on a GPU the wall clock, with the device synchronised."""
    import torch

    return time.perf_counter if torch.device(device).type == "cuda" else time.thread_time


@contextmanager
def _one_thread(device: str) -> Iterator[None]:
    """torch on one intra-op thread for a CPU probe (``_clock``); as it was after."""
    import torch

    if torch.device(device).type == "cuda":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _synchronizer(device: str) -> Callable[[], None]:
    """Waits for the device's queued work (CUDA runs asynchronously); nothing on the CPU."""
    import torch

    where = torch.device(device)
    if where.type == "cuda":
        return lambda: torch.cuda.synchronize(where)
    return lambda: None
