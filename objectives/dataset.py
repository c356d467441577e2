"""A data-set objective: an ``nn.Module`` trained in mini-batches, scored on held-out data.

The module supplies the architecture, the initial parameters and the initial buffers; the
training loop owns a trial's parameters, and each trial gets fresh buffers and a freshly seeded
dropout generator (``start_trial``), so BatchNorm statistics and dropout belong to the trial.
The data are materialised once as tensors on each device they are used on. A user objective::

    objective = DatasetObjective(
        model, (inputs, targets), batch_size=100, loss_fn=torch.nn.functional.cross_entropy,
        validation=(val_inputs, val_targets), test=(test_inputs, test_targets),
        metrics={"accuracy": accuracy}, name="mine")

An epoch is one pass over the training data in batches of ``batch_size`` (the last one smaller,
or dropped with ``drop_last``), in an order drawn from a generator seeded by ``(seed, epoch)``:
every trial sees the same batches in the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch.func import functional_call
from torch.utils.data import Dataset

from ._base import TrialState
from ._errors import ObjectiveError
from .module import check_count, device_of, initial_parameters

__all__ = ["DatasetObjective", "accuracy"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
MetricFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor | float]
Data = tuple[torch.Tensor, torch.Tensor] | Dataset
_Pair = tuple[torch.Tensor, torch.Tensor]


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Share of rows whose largest output is at the target class."""
    return (outputs.argmax(dim=1) == targets).to(outputs.dtype).mean()


class DatasetObjective:
    """``loss_fn(module(inputs[batch]), targets[batch])`` over the mini-batches of a data set.

    ``metrics`` map names to ``fn(outputs, targets)`` (means over rows, e.g. ``accuracy``),
    scored with ``loss_fn`` on the validation data after each epoch as ``val_<name>`` and
    ``val_loss``, and on the ``test`` data once at the end of each complete trial of a sweep
    as ``test_<name>`` and ``test_loss`` (``evaluate``). ``seed`` fixes the batch order and the trial's dropout stream; the module's
    parameters and buffers are snapshotted at construction. ``lr_ranges`` (optimizer name ->
    (low, high)) are the learning-rate intervals a sweep searches by default;
    ``prune_warmup`` is the epochs a trial runs before a sweep's pruner may stop it (a
    trial's validation metric is reported after every epoch).
    """

    def __init__(
        self,
        module: torch.nn.Module,
        train: Data,
        *,
        batch_size: int,
        loss_fn: LossFn,
        validation: Data | None = None,
        test: Data | None = None,
        metrics: Mapping[str, MetricFn] | None = None,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        name: str = "dataset",
        default_epochs: int = 20,
        arguments: Mapping[str, Any] | None = None,
        lr_ranges: Mapping[str, tuple[float, float]] | None = None,
        prune_warmup: int = 1,
    ) -> None:
        check_count("batch_size", batch_size)
        check_count("prune_warmup", prune_warmup)
        check_count("default_epochs", default_epochs)
        check_count("seed", seed, minimum=0)
        inputs, targets = _materialise("train", train)
        if drop_last and batch_size > len(inputs):
            raise ObjectiveError("batch_size", batch_size, f"with drop_last use at most the "
                                 f"{len(inputs)} training rows")
        metrics = dict(metrics or {})
        if metrics and validation is None and test is None:
            raise ObjectiveError("metrics", ", ".join(metrics),
                                 "metrics need validation or test data")
        for key in metrics:
            if not key.isidentifier() or key == "loss":
                raise ObjectiveError("metrics", key, "use identifiers other than 'loss'")
        held_out = None if validation is None else _materialise("validation", validation)
        if held_out is not None:
            _check_like("validation", held_out, inputs, targets)
        tested = None if test is None else _materialise("test", test)
        if tested is not None:
            _check_like("test", tested, inputs, targets)
        initial = initial_parameters(module)
        self.name = name
        self.default_epochs = default_epochs
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self._module = module
        self._initial = initial
        self._buffers = {key: b.detach().clone() for key, b in module.named_buffers()}
        self._train = (inputs, targets)
        self._validation = held_out
        self._test = tested
        self._loss_fn = loss_fn
        self._metrics = metrics
        self._arguments = dict(arguments or {})
        self.lr_ranges = _intervals(lr_ranges)
        self.prune_warmup = prune_warmup
        self._on_device: dict[tuple[str, torch.device], _Pair] = {}
        self._rows_vmap = True  # validate_rows still tries one vmap over the rows

    @property
    def rows(self) -> int:
        """Training rows: the size of one epoch."""
        return len(self._train[0])

    @property
    def steps_per_epoch(self) -> int:
        """Batches in an epoch: ceil(rows / batch_size), or the floor with ``drop_last``."""
        whole, part = divmod(self.rows, self.batch_size)
        return whole + (1 if part and not self.drop_last else 0)

    def init_params(self, device: torch.device) -> dict[str, torch.Tensor]:
        """Copies of the module's parameters as they were at construction, on ``device``."""
        return {key: p.to(device, copy=True) for key, p in self._initial.items()}

    def start_trial(self, device: torch.device) -> TrialState:
        """Copies of the module's initial buffers and a generator seeded with ``seed``."""
        buffers = {key: b.to(device, copy=True) for key, b in self._buffers.items()}
        return TrialState(buffers, torch.Generator(device=device).manual_seed(self.seed))

    def batches(self, epoch: int, device: torch.device) -> list[torch.Tensor]:
        """The index tensors of ``epoch``'s batches, on ``device``. The order is drawn on the
        CPU from a generator seeded by (seed, epoch), so it is the same on every device."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch))
            order = torch.randperm(self.rows, generator=generator)
        else:
            order = torch.arange(self.rows)
        parts = list(order.to(device).split(self.batch_size))
        if self.drop_last and len(parts[-1]) < self.batch_size:
            parts.pop()
        return parts

    def batch_loss(self, params: dict[str, torch.Tensor], state: TrialState,
                   batch: torch.Tensor) -> torch.Tensor:
        """``loss_fn`` on ``batch`` in training mode: BatchNorm normalises with the batch's
        statistics and updates ``state.buffers`` in place; dropout draws from
        ``state.generator``."""
        inputs, targets = self._data("train", device_of(params))
        outputs = self._forward(params, state, inputs.index_select(0, batch), training=True)
        return self._loss_fn(outputs, targets.index_select(0, batch))

    def validate(self, params: dict[str, torch.Tensor],
                 state: TrialState) -> dict[str, torch.Tensor]:
        """``val_loss`` and ``val_<metric>`` on the validation data in eval mode (running
        statistics from ``state``, no dropout), as 0-dim tensors on the parameters' device.
        The data go through the module in chunks of ``batch_size``; the loss and metrics see
        all outputs at once."""
        if self._validation is None:
            return {}
        with torch.no_grad():
            return self._scores(params, state.buffers)

    def _scores(self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
                split: str = "validation") -> dict[str, torch.Tensor]:
        """The scores of one set of parameters and buffers on held-out ``split`` (eval mode:
        no randomness, no buffer updates), named ``val_*`` or ``test_*``."""
        inputs, targets = self._data(split, device_of(params))
        prefix = "val" if split == "validation" else split
        self._set_mode(False)
        outputs = torch.cat([functional_call(self._module, {**buffers, **params}, (chunk,))
                             for chunk in inputs.split(self.batch_size)])
        scores = {f"{prefix}_loss": self._loss_fn(outputs, targets)}
        for key, fn in self._metrics.items():
            scores[f"{prefix}_{key}"] = torch.as_tensor(fn(outputs, targets),
                                                        device=outputs.device)
        return scores

    def evaluate(self, params: dict[str, torch.Tensor],
                 buffers: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
        """``test_loss`` and ``test_<metric>`` on the test data, once at the end of a trial
        (eval mode, with the trial's own BatchNorm statistics ``buffers``; none given: the
        module's initial ones); nothing without test data. Never a study's metric."""
        if self._test is None:
            return {}
        state = self.start_trial(device_of(params))
        if buffers is not None:
            state.buffers.update(buffers)
        with torch.no_grad():
            return {k: float(v) for k, v in self._scores(params, state.buffers, "test").items()}

    def batch_losses(self, params: dict[str, torch.Tensor], state: TrialState,
                     batch: torch.Tensor) -> torch.Tensor:
        """``batch_loss`` of every row of ``params`` and ``state.buffers`` (stacked along a
        new first dimension, one row per trial) on the same ``batch``: one ``vmap``. Every
        trial's dropout stream starts from the same seed and draws the same masks, so the
        rows share one draw from ``state.generator`` (``randomness="same"``) and each row
        equals its own sequential run."""
        inputs, targets = self._data("train", device_of(params))
        inputs, targets = inputs.index_select(0, batch), targets.index_select(0, batch)
        self._set_mode(True)

        def row(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> torch.Tensor:
            return self._loss_fn(functional_call(self._module, {**b, **p}, (inputs,)), targets)

        with _drawing_from(state.generator):
            return torch.func.vmap(row, randomness="same")(params, state.buffers)

    def validate_rows(self, params: dict[str, torch.Tensor],
                      state: TrialState) -> dict[str, torch.Tensor]:
        """``validate`` of every row of stacked ``params`` and ``state.buffers``: each value a
        tensor of one score per row. One ``vmap`` over the rows where the loss and metric
        functions allow it, else (remembered) one ``validate`` per row."""
        if self._validation is None:
            return {}
        if self._rows_vmap:
            try:
                with torch.no_grad():
                    return torch.func.vmap(self._scores)(params, state.buffers)
            except RuntimeError:
                self._rows_vmap = False  # e.g. a metric calling .item(): row by row from now
        count = len(next(iter(params.values())))
        rows = [self.validate({k: v[i] for k, v in params.items()},
                              TrialState({k: v[i] for k, v in state.buffers.items()},
                                         state.generator)) for i in range(count)]
        return {key: torch.stack([r[key] for r in rows]) for key in rows[0]}

    def loss(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """The training loss of the whole training set as one batch, in training mode, with
        a fresh trial state that is thrown away: a pure function of ``params`` (for probes and
        the LR range test; the training loop uses ``batch_loss``)."""
        device = device_of(params)
        inputs, targets = self._data("train", device)
        outputs = self._forward(params, self.start_trial(device), inputs, training=True)
        return self._loss_fn(outputs, targets)

    def arguments(self) -> dict[str, Any]:
        """The arguments given at construction (logged with the sweep)."""
        return dict(self._arguments)

    def _forward(self, params: dict[str, torch.Tensor], state: TrialState,
                 inputs: torch.Tensor, *, training: bool) -> torch.Tensor:
        self._set_mode(training)
        with _drawing_from(state.generator):
            return functional_call(self._module, {**state.buffers, **params}, (inputs,))

    def _set_mode(self, training: bool) -> None:
        if self._module.training != training:
            self._module.train(training)

    def _data(self, split: str, device: torch.device) -> _Pair:
        key = (split, device)
        if key not in self._on_device:
            pair = {"train": self._train, "validation": self._validation,
                    "test": self._test}[split]
            assert pair is not None  # the callers return early without held-out data
            inputs, targets = pair
            self._on_device[key] = (inputs.to(device), targets.to(device))
        return self._on_device[key]


@contextmanager
def _drawing_from(generator: torch.Generator) -> Iterator[None]:
    """Draw the default generator of ``generator``'s device from ``generator``'s stream, and
    give the default generator its own state back afterwards (dropout takes no generator)."""
    device = generator.device
    if device.type == "cpu":
        default = torch.random.default_generator
    else:
        default = torch.cuda.default_generators[
            device.index if device.index is not None else torch.cuda.current_device()]
    saved = default.get_state()
    default.set_state(generator.get_state())
    try:
        yield
    finally:
        generator.set_state(default.get_state())
        default.set_state(saved)


def _intervals(lr_ranges: Mapping[str, tuple[float, float]] | None
               ) -> dict[str, tuple[float, float]] | None:
    """``lr_ranges`` as (low, high) float pairs, 0 < low < high; None if none are given."""
    if not lr_ranges:
        return None
    out = {}
    for name, bounds in lr_ranges.items():
        try:
            low, high = (float(b) for b in bounds)
        except (TypeError, ValueError):
            low = high = 0.0
        if not 0 < low < high:
            raise ObjectiveError("lr_ranges", f"{name}: {bounds}", "use (low, high), "
                                 "0 < low < high")
        out[name] = (low, high)
    return out


def _epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed for the batch order of ``epoch``, independent between epochs."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0] >> 1)


def _materialise(field: str, data: Data) -> _Pair:
    """(inputs, targets) as tensors: a pair of tensors as it is, a ``Dataset`` of (input,
    target) items stacked once."""
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, torch.Tensor)
                                                          for t in data):
        inputs, targets = data
    elif isinstance(data, Dataset):
        try:
            items = [data[i] for i in range(len(data))]  # type: ignore[arg-type]
            inputs = torch.stack([torch.as_tensor(x) for x, _ in items])
            targets = torch.stack([torch.as_tensor(y) for _, y in items])
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ObjectiveError(field, type(data).__name__,
                                 f"use a sized Dataset of (input, target) pairs ({exc})") from None
    else:
        raise ObjectiveError(field, type(data).__name__,
                             "use a pair of tensors (inputs, targets) or a Dataset")
    if inputs.ndim == 0 or targets.ndim == 0 or len(inputs) != len(targets) or not len(inputs):
        raise ObjectiveError(field, f"{tuple(inputs.shape)} and {tuple(targets.shape)}",
                             "use inputs and targets with the same number of rows, at least 1")
    return inputs.detach(), targets.detach()


def _check_like(split: str, held_out: _Pair, inputs: torch.Tensor,
                targets: torch.Tensor) -> None:
    """Held-out rows (of ``split``) shaped like training rows, of the same dtypes."""
    for got, want, what in ((held_out[0], inputs, "inputs"), (held_out[1], targets,
                                                               "targets")):
        if got.shape[1:] != want.shape[1:]:
            raise ObjectiveError(f"{split} {what}", tuple(got.shape),
                                 f"use rows of shape {tuple(want.shape[1:])}, as in training")
        if got.dtype != want.dtype:
            raise ObjectiveError(f"{split} {what}", str(got.dtype).removeprefix("torch."),
                                 f"use {str(want.dtype).removeprefix('torch.')}, as in training")
