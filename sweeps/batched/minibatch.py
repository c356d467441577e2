"""Batched trials of a mini-batch objective: every trial takes the same mini-batch at each step.

The trials' parameters and buffers (BatchNorm statistics) are stacked, one row per trial, and
the objective's ``batch_losses`` computes every row's loss on the step's batch as one program
(``objectives.DatasetObjective``: one ``vmap`` of ``torch.func.functional_call``); one
backward pass on their sum gives each row its own gradient, and the optimizers' stacked rules
update the rows (``sweeps.batched.rules``), at per-step learning rates tabulated from torch's
own schedulers (``sweeps.batched.lr_tables``). After each epoch ``validate_rows`` scores every
row in eval mode. Every trial's dropout stream starts from the same seed, so the rows share
one stream and each row reproduces its sequential run (``tests/sweeps/batched``). Each batch
is produced once and taken by every row: where the objective loads its batches as the epoch
runs (a ``DataLoader``), an epoch is loaded once per stack, not once per trial.

Whether it pays is the objective's and the device's business: ``sweeps.batched.sizing``
measures it before a sweep's first batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sweeps.batched.stack import OnResult, TrialStack, stacked
from sweeps.training.loop import ObjectiveStartError, Observer, default_chunk
from sweeps.training.minibatch import last_epoch_loss
from sweeps.training.precision import loss_scaled

if TYPE_CHECKING:
    import torch

    from objectives import MiniBatchObjective
    from sweeps.training.hparams import Hyperparams

__all__ = ["MiniBatchBatch", "stackable"]


def stackable(objective: MiniBatchObjective) -> str | None:
    """Why trials of ``objective`` cannot run as one batch, or None."""
    if not callable(getattr(objective, "batch_losses", None)):
        return "it has no batch_losses (objectives.DatasetObjective has one)"
    if not callable(getattr(objective, "validate_rows", None)):
        return "it has no validate_rows (objectives.DatasetObjective has one)"
    if loss_scaled(objective):
        return ("at fp16 each trial scales its loss by a scale of its own "
                "(sweeps.training.precision)")
    return None


class MiniBatchBatch(TrialStack):
    """One batch of trials of a mini-batch objective sharing stacked parameters and buffers."""

    def __init__(self, objective: MiniBatchObjective, hps: list[Hyperparams], epochs: int,
                 device: str | torch.device, observers: list[tuple[Observer, ...]],
                 chunk: int | None, per_tensor: bool = True,
                 on_result: OnResult | None = None, log_steps: bool = False) -> None:
        import torch

        from objectives import TrialState
        from sweeps.training.recorder import tracked_tensors
        from sweeps.training.step_recorder import RowStepRecorder

        try:
            device = torch.device(device)
            trial = objective.start_trial(device)
            self.batches = objective.batches(0, device)
            if not self.batches:
                raise ValueError("the objective has no batches in an epoch")
            self.first = next(iter(self.batches))  # the probes' batch (the epoch is not kept)
        except Exception as exc:
            raise ObjectiveStartError(f"{type(exc).__name__}: {exc}") from exc
        super().__init__(objective, hps, epochs, device, observers,
                         steps_per_epoch=len(self.batches), on_result=on_result)
        self.minibatch = objective
        self.state = TrialState({k: stacked(b, len(hps)) for k, b in trial.buffers.items()},
                                trial.generator)
        self.recorder = RowStepRecorder(self.params,
                                        chunk or default_chunk(epochs, len(self.batches)),
                                        tracked_tensors(self.names, per_tensor),
                                        len(self.batches) if log_steps else None)

    def probe_losses(self) -> torch.Tensor:
        """On the first batch, with a copy of the trials' state."""
        import torch

        from objectives import TrialState

        generator = torch.Generator(self.device).set_state(self.state.generator.get_state())
        copy = TrialState({k: b.clone() for k, b in self.state.buffers.items()}, generator)
        return self.minibatch.batch_losses(self.by_name(), copy, self.first)

    def first_loss(self, batched: RuntimeError) -> None:
        try:
            self.minibatch.batch_loss(self.row(0), self.minibatch.start_trial(self.device),
                                      self.first)
        except Exception as exc:
            raise ObjectiveStartError(f"{type(exc).__name__}: {exc}") from exc

    def train_step(self, step: int, batch: Any) -> None:
        """One optimizer step of every row on ``batch``, the ``step``-th of the run."""
        import torch

        for p in self.params:
            p.grad = None
        losses = self.minibatch.batch_losses(self.by_name(), self.state, batch)
        losses.sum().backward()
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        self.recorder.before_step(losses, grads)
        self.update(grads, step)
        self.recorder.after_step(self.lr_host[step])

    def probe_step(self, i: int) -> None:
        """A step for ``sweeps.batched.sizing`` to time (the batch is thrown away after)."""
        self.train_step(0, self.first)

    def train_epoch(self, epoch: int) -> None:
        batches = self.batches if epoch == 0 else self.minibatch.batches(epoch, self.device)
        step = epoch * self.steps_per_epoch
        for batch in batches:
            self.train_step(step, batch)
            step += 1
        epoch_loss = self.recorder.epoch_loss() if self.on_loss else None
        self.recorder.end_epoch(self.minibatch.validate_rows(self.by_name(), self.state))
        if epoch_loss is not None:
            self.step_on_loss(epoch, epoch_loss.tolist())

    def final(self, i: int, params: dict[str, torch.Tensor]
              ) -> tuple[float, dict[str, torch.Tensor] | None]:
        """As ``train_minibatch``: the mean training loss of the last epoch run, and the
        row's buffers."""
        pos = self.ids.index(i)
        return last_epoch_loss(self.parts[i]), {k: b[pos].detach().clone()
                                                for k, b in self.state.buffers.items()}

    def keep_rows(self, index: torch.Tensor) -> None:
        from objectives import TrialState

        self.state = TrialState({k: b.index_select(0, index)
                                 for k, b in self.state.buffers.items()}, self.state.generator)
