"""How trials run together: ``size`` trials at a time (``--batch``), asked of the sampler
together and pruned against each other in lockstep, trained as stacks of ``width`` rows. The
size is a setting, so the same seed gives the same study; the width is measured, and changes
only the speed (``sweeps.batched.trials.train_batch``). The choice is stored with the study
(``for_study``), so a resumed sweep and every ``--workers`` process run the same way.

A wide stack pays where a step is dominated by fixed costs (Python, dispatch, small kernels:
the seed's 16 share counts, a small MLP) and less where it is dominated by arithmetic that
the stack only multiplies (a convolution on the CPU runs little faster per trial as a grouped
convolution, and many rows' activations overflow the caches). So ``choose_batch`` times the
steady-state step of stacks of one row, ``_MIDDLE`` rows and ``wanted`` rows (of one probe
configuration, Adam: the costliest stacked rule but one, with the statistics the sweep
records) and takes the width whose step costs a trial least. After a few warm-up steps the
stacks step in turn until about ``_PROBE_SECONDS`` have passed (at least ``_MIN_STEPS``
each), and each one's median step counts; nothing of it is kept. Widths that run out of
memory in the probe are halved until one fits.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from sweeps.batched.stack import out_of_memory
from sweeps.training.hparams import Hyperparams
from sweeps.training.threads import threads_for

if TYPE_CHECKING:
    import optuna

    from objectives import Objective

__all__ = ["BatchChoice", "choose_batch", "for_study"]

_PROBE = Hyperparams("adam", 1e-4)  # small steps: nothing diverges while the clock runs
_WARM_UP = 2
_MIN_STEPS = 3
_PROBE_SECONDS = 0.15
_MIDDLE = 4  # the width measured between one row and all
CHOICE_ATTR = "trial_batch"  # the study's user attribute that keeps the choice


@dataclass(frozen=True)
class BatchChoice:
    """Trials that run together (``size``: asked of the sampler together and pruned against
    each other in lockstep), the rows of each stack they train in (``width``), and the step
    times the width was chosen by: (width, ms per trial and step) for each width measured."""

    size: int
    wanted: int
    width: int
    step_ms: tuple[tuple[int, float], ...] = ()
    reason: str = ""

    def describe(self) -> str:
        """One line for the log."""
        if not self.step_ms:
            return f"trials run {self.size} at a time ({self.reason})"
        times = ", ".join(f"{ms:.3g} ms " + ("alone" if w == 1 else f"in a stack of {w}")
                          for w, ms in self.step_ms)
        why = f"; {self.reason}" if self.reason else ""
        rows = f"{self.width} row" + ("s" if self.width > 1 else "")
        return (f"trials run {self.size} at a time, in stacks of {rows}: a step "
                f"costs a trial {times} (measured{why})")

    @classmethod
    def stored(cls, attrs: dict[str, Any]) -> BatchChoice:
        """The choice as ``asdict`` stored it in a study (JSON: tuples come back as lists)."""
        return cls(**{**attrs, "step_ms": tuple((int(w), float(ms))
                                                for w, ms in attrs["step_ms"])})


def for_study(study: optuna.Study, objective: Objective, wanted: int, epochs: int,
              device: str, per_tensor: bool = True, log_steps: bool = False) -> BatchChoice:
    """The choice stored with ``study`` for ``wanted`` (``--batch``), else ``choose_batch``'s,
    stored there for the next process of the sweep (a choice stored in another form, by an
    earlier version, is measured again)."""
    from dataclasses import asdict, fields

    stored = dict(study.user_attrs.get(CHOICE_ATTR, {}))
    if stored.pop("asked", None) == wanted and set(stored) == {f.name for f in
                                                               fields(BatchChoice)}:
        return BatchChoice.stored(stored)
    choice = choose_batch(objective, wanted, epochs, device, per_tensor, log_steps)
    if not choice.reason.startswith("not measured"):
        study.set_user_attr(CHOICE_ATTR, {"asked": wanted, **asdict(choice)})
    return choice


def choose_batch(objective: Objective, wanted: int, epochs: int, device: str,
                 per_tensor: bool = True, log_steps: bool = False) -> BatchChoice:
    """``wanted`` trials at a time, where the objective's trials stack, in stacks of the
    width (1, ``_MIDDLE`` or ``wanted`` rows) whose step costs a trial least; where
    ``wanted`` rows run out of memory, the widths up to half as many (and so on). Trials of
    an objective that cannot stack them, or where two rows run out of memory, run one at a
    time. An objective that fails in the probe gets ``wanted`` unmeasured: its first trials
    fail the same way and say why."""
    if wanted < 2:
        return BatchChoice(wanted, wanted, 1, reason="asked for")
    widest = wanted
    while widest >= 2:
        try:
            choice = _measure(objective, wanted, widest, epochs, device, per_tensor,
                              log_steps)
        except Exception as exc:
            if not out_of_memory(exc):
                raise
            widest //= 2
            continue
        if widest < wanted:
            return replace(choice, reason=f"{wanted} rows ran out of memory")
        return choice
    return BatchChoice(1, wanted, 1, reason="2 rows ran out of memory")


def _measure(objective: Objective, wanted: int, widest: int, epochs: int, device: str,
             per_tensor: bool, log_steps: bool) -> BatchChoice:
    """``choose_batch`` for stacks of at most ``widest`` rows (at least 2); raises what
    running out of memory raises."""
    from sweeps.batched.trials import batched_stack

    widths = sorted({1, min(_MIDDLE, widest), widest}, reverse=True)  # the widest first
    try:
        stacks = [batched_stack(objective, [_PROBE] * w, epochs, device, per_tensor,
                                log_steps=log_steps) for w in widths]
        steps: list[Callable[[int], None]] = [stack.probe_step for stack in stacks
                                              if stack is not None]
        if len(steps) < len(stacks):
            return BatchChoice(1, wanted, 1, reason="the objective's trials cannot be stacked")
        with _one_thread(device):
            times = _median_steps(steps, _synchronizer(device), _clock(device))
    except Exception as exc:  # the objective's failure: the sweep reports it as such
        if out_of_memory(exc):
            raise
        return BatchChoice(wanted, wanted, widest, reason=f"not measured: {type(exc).__name__}")
    per_row = sorted((w, t / w) for w, t in zip(widths, times))
    width = min(per_row, key=lambda item: item[1])[0]
    return BatchChoice(wanted, wanted, width, tuple((w, t * 1e3) for w, t in per_row))


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
    with threads_for(1):
        yield


def _synchronizer(device: str) -> Callable[[], None]:
    """Waits for the device's queued work (CUDA runs asynchronously); nothing on the CPU."""
    import torch

    where = torch.device(device)
    if where.type == "cuda":
        return lambda: torch.cuda.synchronize(where)
    return lambda: None
