"""What every batch of trials shares: parameters stacked one row per trial, the update rules
over their rows, and the bookkeeping that hands each trial's statistics to its own observers
and ends each trial on its own (pruned, failed, complete).

A trial that ends leaves the stack at once: after each chunk of statistics the rows still
training are gathered into smaller stacked tensors (parameters, optimizer state, learning
rates, buffers, the recorder), so an ended trial costs nothing from its next step on. A
configuration keeps its index in ``hps`` (``ids`` maps each row to it); the rows keep their
order, so each optimizer's rows stay one slice."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from sweeps.batched.lr_tables import TABULATED, LossSchedule, lr_tables
from sweeps.batched.rules import RULES, StackedRule
from sweeps.optim.optimizers import group_options
from sweeps.training.trial import (
    ObjectiveStartError,
    Observer,
    ObserverError,
    Status,
    TrainResult,
    finish,
    observe,
    raise_observer_error,
    report,
)

if TYPE_CHECKING:
    import torch

    from objectives import Objective
    from sweeps.training.hparams import Hyperparams
    from sweeps.training.stats import EpochStats

__all__ = ["OnResult", "Refill", "TrialStack", "out_of_memory", "run_together", "stacked"]

OnResult = Callable[[int, TrainResult], None]  # (index in the batch, result): a trial ended
Refill = Callable[[int], "list[TrialStack]"]  # rows ended so far -> stacks to start now
Cut = tuple["EpochStats", "tuple[int, str] | None"]  # a row's statistics, up to its first
# non-finite epoch (epoch, metric), if any


class TrialStack:
    """Rows of stacked parameters, one per configuration of ``hps``, grouped by optimizer so
    that each rule updates a slice; ``steps_per_epoch`` sets the length of the lr tables
    (``lr[step]``: a column of each row's lr, on the device; ``lr_host``: the same on the
    host). ``on_result(i, result)`` hears of row ``i``'s end when it happens."""

    def __init__(self, objective: Objective, hps: list[Hyperparams], epochs: int,
                 device: str | torch.device, observers: list[tuple[Observer, ...]],
                 steps_per_epoch: int = 1, on_result: OnResult | None = None) -> None:
        import torch

        self.objective, self.hps, self.epochs, self.observers = objective, hps, epochs, observers
        self.device = torch.device(device)
        self.on_result = on_result
        try:
            initial = objective.init_params(self.device)
        except Exception as exc:
            raise ObjectiveStartError(f"{type(exc).__name__}: {exc}") from exc
        self.names = list(initial)
        size = len(hps)
        self.params = [stacked(initial[n], size).requires_grad_(True) for n in self.names]
        like = self.params[0]
        self.rules = _rules(hps, like)
        self.steps_per_epoch = steps_per_epoch
        self.on_loss = {i: LossSchedule(hp.scheduler, hp.lr, epochs, hp.options)
                        for i, hp in enumerate(hps) if hp.scheduler not in TABULATED}
        steps = epochs * steps_per_epoch
        tabulated = iter(lr_tables([hp for i, hp in enumerate(hps) if i not in self.on_loss],
                                   epochs, steps_per_epoch))
        tables = [[self.on_loss[i].lr] * steps if i in self.on_loss else next(tabulated)
                  for i in range(size)]
        self.lr = torch.tensor(tables, dtype=like.dtype, device=self.device).T.contiguous()
        self.lr_host = np.asarray(tables).T.copy()
        clips = [hp.options.get("grad_clip", math.inf) for hp in hps]
        self.clip = (torch.tensor(clips, dtype=like.dtype, device=self.device)
                     if any(math.isfinite(c) for c in clips) else None)  # per row: max norm
        self.parts: list[list[EpochStats]] = [[] for _ in hps]
        self.results: list[TrainResult | None] = [None] * size
        self.ids = list(range(size))  # the configuration of each row
        self.epoch = 0  # the next epoch to train (run_together)
        self.active = list(range(size))  # configurations still training
        self.recorder: Any = None  # set by the subclass: full, size, drain() -> per row,
        # for_rows(params) -> the same recorder for fewer rows

    def row(self, i: int) -> dict[str, torch.Tensor]:
        """Configuration ``i``'s parameters (views of its row)."""
        pos = self.ids.index(i)
        return {n: p[pos].detach() for n, p in zip(self.names, self.params)}

    def by_name(self) -> dict[str, torch.Tensor]:
        """The stacked parameters by name (every row)."""
        return dict(zip(self.names, self.params))

    def unbatchable(self) -> str | None:
        """Why the rows cannot be stacked, or None: one batched forward pass before the first
        epoch (``probe_losses``, which consumes nothing). vmap raises RuntimeError on what it
        cannot batch (data-dependent control flow, ``.item()``, dynamic shapes), and a
        batched loss may have the wrong shape; where the unbatched loss fails too
        (``first_loss``), or anything else is raised, it is the objective's own failure, as
        in the sequential loop."""
        try:
            losses = self.probe_losses()
        except RuntimeError as exc:
            if out_of_memory(exc):
                raise
            self.first_loss(exc)
            return f"vmap cannot trace its loss ({exc})"
        except Exception as exc:
            raise ObjectiveStartError(f"{type(exc).__name__}: {exc}") from exc
        if losses.shape != (len(self.hps),):
            return f"its batched loss has shape {tuple(losses.shape)}, not ({len(self.hps)},)"
        return None

    def probe_losses(self) -> torch.Tensor:
        """Every row's first loss, batched, with nothing consumed."""
        raise NotImplementedError

    def first_loss(self, batched: RuntimeError) -> None:
        """``ObjectiveStartError`` if the batched loss failed with ``batched`` because the
        objective fails, not the batching: the first row's plain loss fails too."""
        raise NotImplementedError

    def update(self, grads: list[torch.Tensor], step: int) -> None:
        """One update of every row still training, at the lrs of ``step``."""
        import torch

        lr = self.lr[step]
        with torch.no_grad():
            if self.clip is not None:
                clip_rows(grads, self.clip)
            for rule in self.rules:
                rule.step(self.params, grads, lr[rule.rows])

    def step_on_loss(self, epoch: int, losses: list[float]) -> None:
        """Step each schedule that steps on its row's loss (``losses``: one per row); a new lr
        sets every later step's."""
        later = (epoch + 1) * self.steps_per_epoch
        for pos, i in enumerate(self.ids):
            schedule = self.on_loss.get(i)
            new_lr = schedule.step(losses[pos]) if schedule is not None else None
            if new_lr is not None and later < len(self.lr):
                self.lr[later:, pos] = new_lr
                self.lr_host[later:, pos] = new_lr

    def deliver(self, chunk: list[EpochStats]) -> None:
        """Hand each active row its statistics, every row's ``on_report`` first (rows prune
        each other in lockstep); end the rows that went non-finite or that an observer
        prunes."""
        deliver_together([(self, chunk)])

    def reported(self, chunk: list[EpochStats]) -> dict[int, Cut]:
        """The first phase of a delivery: each active row's statistics (cut before a
        non-finite epoch) reported to its observers (``on_report``)."""
        cut: dict[int, Cut] = {}
        for i, stats in zip(self.ids, chunk):
            if i in self.active:
                bad = stats.first_nonfinite()
                cut[i] = (stats if bad is None else stats.head(bad[0] - stats.start), bad)
        for i, (stats, _) in cut.items():
            report(stats, self.observers[i])
        return cut

    def judge(self, cut: dict[int, Cut]) -> None:
        """The second phase: each row's statistics to its observers (``on_chunk``), and the
        rows ended that went non-finite or that an observer prunes."""
        for i, (stats, bad) in cut.items():
            self.parts[i].append(stats)
            stop = False
            for observer in self.observers[i]:
                stop = observe(observer.on_chunk, stats) or stop
            if bad is not None:
                self.end(i, "failed", f"non-finite {bad[1]}", bad[0])
            elif stop:
                self.end(i, "pruned", None, None)

    def end(self, i: int, status: Status, failure: str | None,
            failure_epoch: int | None) -> None:
        """End configuration ``i``: its result, its observers told, ``on_result`` called. Its
        row still trains until the stack is compacted (``compact``)."""
        params = {n: p.clone() for n, p in self.row(i).items()}
        final, buffers = math.nan, None
        if status != "failed":
            final, buffers = self.final(i, params)
            if not math.isfinite(final):
                status, failure, failure_epoch = "failed", "non-finite final loss", self.epochs
        kept = params if status != "failed" else None
        result = finish(self.observers[i], self.parts[i], status, final, failure,
                        failure_epoch, kept, buffers if kept is not None else None)
        self.results[i] = result
        self.active.remove(i)
        if self.on_result is not None:
            observe(self.on_result, i, result)

    def run(self) -> list[TrainResult]:
        """Train every row for the epochs, handing each its statistics chunk by chunk; every
        row's result, in order."""
        return run_together([self])[0]

    def advance(self, epoch: int) -> None:
        """Train ``epoch`` of every row; an exception (not an observer's, which goes on up to
        ``run_together``) fails the rows still training, after they have been handed the
        epochs they ran."""
        try:
            self.train_epoch(epoch)
        except ObserverError:
            raise
        except Exception as exc:
            self.fail(exc, epoch)

    def fail(self, exc: Exception, epoch: int) -> None:
        """End the rows still training as failed by ``exc`` at ``epoch``, after handing them
        the epochs they ran."""
        if self.recorder.size:
            self.deliver(self.recorder.drain())
        for i in list(self.active):
            self.end(i, "failed", f"{type(exc).__name__}: {exc}", epoch)

    def compact(self) -> None:
        """Keep only the rows of configurations still training (right after a drain: the
        recorder holds nothing)."""
        import torch

        kept = [pos for pos, i in enumerate(self.ids) if i in self.active]
        index = torch.tensor(kept, device=self.device)
        self.params = [p.detach().index_select(0, index).requires_grad_(True)
                       for p in self.params]
        rules = []
        for rule in self.rules:
            mine = [pos for pos in kept if rule.rows.start <= pos < rule.rows.stop]
            if mine:
                start = kept.index(mine[0])
                rule.keep([pos - rule.rows.start for pos in mine],
                          slice(start, start + len(mine)))
                rules.append(rule)
        self.rules = rules
        self.lr = self.lr[:, index].contiguous()
        if self.clip is not None:
            self.clip = self.clip[index]
        self.lr_host = self.lr_host[:, kept].copy()
        self.ids = [self.ids[pos] for pos in kept]
        self.keep_rows(index)
        self.recorder = self.recorder.for_rows(self.params)

    def keep_rows(self, index: torch.Tensor) -> None:
        """Keep the rows ``index`` of what the subclass stacks besides the parameters."""
        return None

    def train_epoch(self, epoch: int) -> None:
        """One epoch of every row, recorded in ``self.recorder``."""
        raise NotImplementedError

    def final(self, i: int, params: dict[str, torch.Tensor]
              ) -> tuple[float, dict[str, torch.Tensor] | None]:
        """Row ``i``'s final loss and buffers (``TrainResult.final_loss``, ``.buffers``)."""
        raise NotImplementedError

    def finished(self) -> list[TrainResult]:
        """Every row's result, in order, once every row has ended."""
        return [r for r in self.results if r is not None]


def run_together(stacks: list[TrialStack], refill: Refill | None = None
                 ) -> list[list[TrainResult]]:
    """Train ``stacks`` (of one cohort: the same objective and epochs) epoch by epoch in
    lockstep: at each chunk every row of every stack due reports before any is judged, so
    the rows prune each other whichever stack they are in, as if they were one stack. Each
    stack keeps its own epoch: ``refill(ended)`` is asked after each chunk, with the rows
    ended so far, for new stacks, which start at their epoch 0 beside the running ones
    (trials that join a running sweep as others leave it). The results of ``stacks``, in
    order (the refills' go to their ``on_result``)."""
    live, every = list(stacks), list(stacks)
    try:
        while live:
            for stack in live:
                stack.advance(stack.epoch)
                stack.epoch += 1
            live = [s for s in live if s.active]
            due = [s for s in live if s.recorder.full or s.epoch == s.epochs]
            deliver_together([(s, s.recorder.drain()) for s in due])
            for stack in due:
                if stack.active and stack.epoch == stack.epochs:
                    for i in list(stack.active):
                        stack.end(i, "complete", None, None)
                elif stack.active and len(stack.active) < len(stack.ids):
                    stack.compact()
            live = [s for s in live if s.active]
            if refill is not None and due:
                fresh = refill(sum(len(s.results) - len(s.active) for s in every))
                every += fresh
                live += fresh
    except Exception as exc:
        raise_observer_error(exc)
        for stack in live:
            stack.fail(exc, stack.epoch)
    except BaseException:  # interrupted: hand the epochs already run to the observers
        for stack in live:
            if stack.recorder.size:
                stack.deliver(stack.recorder.drain())
        raise
    return [stack.finished() for stack in stacks]


def deliver_together(chunks: list[tuple[TrialStack, list[EpochStats]]]) -> None:
    """Deliver each stack its chunk (``TrialStack.deliver``): every row of every stack
    reports first, then each is judged."""
    cuts = [(stack, stack.reported(chunk)) for stack, chunk in chunks]
    for stack, cut in cuts:
        stack.judge(cut)


def clip_rows(grads: list[torch.Tensor], max_norm: torch.Tensor) -> None:
    """Scale each row's gradient (its slice of every tensor of ``grads``) down to the row's
    ``max_norm`` (inf: unclipped), as ``torch.nn.utils.clip_grad_norm_`` does for one trial:
    the norm of the tensors' norms, and a factor ``max_norm / (norm + 1e-6)`` at most 1."""
    import torch

    norms = torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads], dim=1)
    total = torch.linalg.vector_norm(norms, dim=1)
    factor = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(factor.view(-1, *([1] * (g.dim() - 1))))


def out_of_memory(exc: BaseException) -> bool:
    """True if ``exc`` is torch running out of memory (on a GPU, or the CPU's allocator)."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text
                                              or "can't allocate memory" in text)


def stacked(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    """``rows`` copies of ``tensor`` along a new first dimension (a new tensor)."""
    return tensor.detach().unsqueeze(0).repeat(rows, *([1] * tensor.dim()))


def _rules(hps: list[Hyperparams], like: torch.Tensor) -> list[StackedRule]:
    """One rule per optimizer of ``hps`` over its consecutive rows (the rows are in
    ``RULES`` order)."""
    rules = []
    start = 0
    for name in RULES:
        rows = [i for i, hp in enumerate(hps) if hp.optimizer == name]
        if rows:
            stop = start + len(rows)
            settings = [group_options(name, hps[i].lr, hps[i].options) for i in rows]
            rules.append(RULES[name](slice(start, stop), settings, like))
            start = stop
    return rules
