"""A data-set objective: an ``nn.Module`` trained in mini-batches, scored on held-out data.

The module supplies the architecture, the initial parameters and the initial buffers; the
training loop owns a trial's parameters, and each trial gets fresh buffers and a freshly seeded
dropout generator (``start_trial``), so BatchNorm statistics and dropout belong to the trial.
A user objective::

    objective = DatasetObjective(
        model, train_loader, loss_fn=torch.nn.functional.cross_entropy,
        validation=(val_inputs, val_targets), test=test_set,
        metrics={"accuracy": accuracy}, batch_size=100, name="mine")

Each split's data (``objectives.data``) are a pair of tensors (moved once to the device; an
epoch's batches are index tensors in an order drawn from a generator seeded by
``(seed, epoch)``), a ``Dataset`` (loaded through a ``DataLoader`` of ``batch_size``,
``shuffle`` and ``drop_last``), a ``DataLoader`` (its own batch size, sampler, ``collate_fn``
and workers), or a function of no arguments returning either of the last two. A ``Dataset``
or ``DataLoader`` is iterated every epoch, every draw seeded by ``(seed, epoch)``: random
transforms draw afresh each epoch, and the same epoch draws the same in every trial and
re-run. Its batches are loaded as the epoch runs, not kept; trials stacked as rows of one
program (``batch_losses``) share each loaded batch, so an epoch is loaded once per stack.
Held-out data are scored in order, drawn the same way each time.

A batch of ``(inputs, targets)`` trains ``loss_fn(module(inputs), targets)``; a ``step``
hook, ``step(model, batch) -> loss``, takes any batch (a dict, several inputs) with ``model``
calling the module with the trial's parameters (``objectives.step``).

``with_autocast(dtype)`` gives a copy whose module runs under ``torch.autocast`` at
``dtype`` (bfloat16 or float16; a sweep's ``--precision``), in training and on held-out
data: ``loss_fn`` and the metrics take its outputs as float32 (a ``step`` hook runs under
autocast whole, its loss taken as float32); parameters and buffers stay float32.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch
from torch.func import functional_call

from ._base import Batches, TrialState
from ._errors import ObjectiveError
from .data import Batching, Data, Loaded, Source, Tensors, batch_rows, check_like, describe, source
from .module import check_count, device_of, initial_parameters
from .stacked import StackedNet, lowering
from .step import Bound, Step, scalar

__all__ = ["Data", "DatasetObjective", "accuracy"]

log = logging.getLogger(__name__)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
MetricFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor | float]
_Pair = tuple[torch.Tensor, torch.Tensor]
_Stacked = dict[str, torch.Tensor]


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Share of rows whose largest output is at the target class."""
    return (outputs.argmax(dim=1) == targets).to(outputs.dtype).mean()


class DatasetObjective:
    """``loss_fn(module(inputs), targets)`` (or ``step(model, batch)``) over the mini-batches
    of a data set.

    ``metrics`` map names to ``fn(outputs, targets)`` (means over rows, e.g. ``accuracy``),
    scored with ``loss_fn`` on the validation data after each epoch as ``val_<name>`` and
    ``val_loss``, and on the ``test`` data once at the end of each complete trial of a sweep
    as ``test_<name>`` and ``test_loss`` (``evaluate``; a non-finite one is an
    ``ObjectiveError``). With a ``step`` hook the held-out score is its loss, the mean over
    rows (``val_loss``, ``test_loss``), and ``loss_fn`` and ``metrics`` are not taken.
    ``seed`` fixes the batch order, the data's random draws and the trial's dropout stream;
    the module's parameters and buffers are snapshotted at construction. ``batch_size``,
    ``shuffle`` and ``drop_last`` cut tensors and ``Dataset``s into batches (a
    ``DataLoader`` keeps its own). ``lr_ranges`` (optimizer name -> (low, high)) are the
    learning-rate intervals a sweep searches by default; ``prune_warmup`` is the epochs a
    trial runs before a sweep's pruner may stop it (a trial's validation metric is reported
    after every epoch).
    """

    def __init__(
        self,
        module: torch.nn.Module,
        train: Data,
        *,
        batch_size: int | None = None,
        loss_fn: LossFn | None = None,
        validation: Data | None = None,
        test: Data | None = None,
        metrics: Mapping[str, MetricFn] | None = None,
        step: Step | None = None,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        name: str = "dataset",
        default_epochs: int = 20,
        arguments: Mapping[str, Any] | None = None,
        lr_ranges: Mapping[str, tuple[float, float]] | None = None,
        prune_warmup: int = 1,
    ) -> None:
        if batch_size is not None:
            check_count("batch_size", batch_size)
        check_count("prune_warmup", prune_warmup)
        check_count("default_epochs", default_epochs)
        check_count("seed", seed, minimum=0)
        if step is not None and not callable(step):
            raise ObjectiveError("step", type(step).__name__,
                                 "use a function step(model, batch) -> scalar loss")
        if step is None and loss_fn is None:
            raise ObjectiveError("loss_fn", None, "give loss_fn(outputs, targets), or a "
                                 "step(model, batch) hook")
        metrics = dict(metrics or {})
        if metrics and step is not None:
            raise ObjectiveError("metrics", ", ".join(metrics), "with a step hook the "
                                 "held-out score is its loss: metrics take loss_fn's "
                                 "(outputs, targets)")
        trained = source("train", train, Batching(batch_size, shuffle, drop_last))
        if metrics and validation is None and test is None:
            raise ObjectiveError("metrics", ", ".join(metrics),
                                 "metrics need validation or test data")
        for key in metrics:
            if not key.isidentifier() or key == "loss":
                raise ObjectiveError("metrics", key, "use identifiers other than 'loss'")
        held_out = {split: source(split, data, Batching(batch_size))
                    for split, data in (("validation", validation), ("test", test))
                    if data is not None}
        if step is None and isinstance(trained, Tensors):
            for split, data in held_out.items():
                if isinstance(data, Tensors):
                    check_like(split, (data.inputs, data.targets), trained.inputs,
                               trained.targets)
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
        self._sources: dict[str, Source] = {"train": trained, **held_out}
        # the tensors of in-memory splits (None otherwise), as they were given
        self._train, self._validation, self._test = (
            (s.inputs, s.targets) if isinstance(s, Tensors) else None
            for s in (trained, held_out.get("validation"), held_out.get("test")))
        self._loss_fn = loss_fn
        self._step = step
        self._metrics = metrics
        self._arguments = dict(arguments or {})
        self.lr_ranges = _intervals(lr_ranges)
        self.prune_warmup = prune_warmup
        self._checked = False  # the loaded splits' first batches are alike (``_check``)
        self._took = False  # a training batch went through the model
        self._by_vmap = {"forward": True, "score": True}  # validate_rows still tries vmap
        # stacked rows run as one wider network where the module allows it (checked against
        # vmap at first use), else under vmap
        self._stacked: StackedNet | None = lowering(module) if step is None else None
        self._stacked_checked = False
        self.autocast: torch.dtype | None = None  # the module's dtype under torch.autocast

    @property
    def rows(self) -> int:
        """Training rows: the size of one epoch."""
        return self._sources["train"].rows

    @property
    def steps_per_epoch(self) -> int:
        """Batches in an epoch: ceil(rows / batch_size), or the floor with ``drop_last``
        (a ``DataLoader``'s length)."""
        return self._sources["train"].steps()

    def init_params(self, device: torch.device) -> dict[str, torch.Tensor]:
        """Copies of the module's parameters as they were at construction, on ``device``."""
        return {key: p.to(device, copy=True) for key, p in self._initial.items()}

    def start_trial(self, device: torch.device) -> TrialState:
        """Copies of the module's initial buffers and a generator seeded with ``seed``."""
        buffers = {key: b.to(device, copy=True) for key, b in self._buffers.items()}
        return TrialState(buffers, torch.Generator(device=device).manual_seed(self.seed))

    def batches(self, epoch: int, device: torch.device) -> Batches:
        """``epoch``'s batches on ``device``, the same for every trial: index tensors into
        in-memory tensors (a list), or batches loaded from a ``Dataset`` or ``DataLoader``
        as they are iterated (a sized iterable, each iteration seeded by (seed, epoch))."""
        if not self._checked:
            self._check(device)
        return self._sources["train"].batches(epoch, device, self.seed)

    def batch_loss(self, params: dict[str, torch.Tensor], state: TrialState,
                   batch: Any) -> torch.Tensor:
        """The loss of ``batch`` in training mode: BatchNorm normalises with the batch's
        statistics and updates ``state.buffers`` in place; dropout draws from
        ``state.generator``. The first batch the model cannot take is an ``ObjectiveError``
        naming it."""
        raw = self._sources["train"].take(batch, device_of(params))
        self._set_mode(True)
        if self._took:
            with _drawing_from(state.generator):
                return self._loss({**state.buffers, **params}, raw)
        try:
            with _drawing_from(state.generator):
                loss = self._loss({**state.buffers, **params}, raw)
        except (ObjectiveError, torch.OutOfMemoryError):
            raise
        except Exception as exc:
            who = "step" if self._step is not None else "the model and loss_fn"
            raise ObjectiveError("train batch", describe(raw), f"{who} could not take it "
                                 f"({type(exc).__name__}: {exc})") from exc
        self._took = True
        return loss

    def batch_losses(self, params: dict[str, torch.Tensor], state: TrialState,
                     batch: Any) -> torch.Tensor:
        """``batch_loss`` of every row of ``params`` and ``state.buffers`` (stacked along a
        new first dimension, one row per trial) on the same ``batch``: one ``vmap``. Every
        trial's dropout stream starts from the same seed and draws the same masks, so the
        rows share one draw from ``state.generator`` (``randomness="same"``) and each row
        equals its own sequential run."""
        raw = self._sources["train"].take(batch, device_of(params))
        if self._step is None:
            raw = self._pair(raw, "train")
        self._set_mode(True)
        tensors = {**state.buffers, **params}
        if self._stacked is not None and self._lowered(tensors, raw[0]):
            inputs, targets = raw
            assert self._loss_fn is not None
            loss_fn = self._loss_fn
            with _drawing_from(state.generator):
                outputs = self._stacked_call(tensors, inputs, True)
            return torch.func.vmap(lambda out: scalar("loss_fn", loss_fn(out, targets)))(
                outputs)

        def row(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> torch.Tensor:
            return self._loss({**b, **p}, raw)

        with _drawing_from(state.generator):
            return torch.func.vmap(row, randomness="same")(params, state.buffers)

    def validate(self, params: dict[str, torch.Tensor],
                 state: TrialState) -> dict[str, torch.Tensor]:
        """``val_loss`` and ``val_<metric>`` on the validation data in eval mode (running
        statistics from ``state``, no dropout), as 0-dim tensors on the parameters' device.
        The data go through the module batch by batch; the loss and metrics see all outputs
        at once."""
        if "validation" not in self._sources:
            return {}
        with torch.no_grad():
            return self._scores(params, state.buffers, "validation")

    def validate_rows(self, params: dict[str, torch.Tensor],
                      state: TrialState) -> dict[str, torch.Tensor]:
        """``validate`` of every row of stacked ``params`` and ``state.buffers``: each value a
        tensor of one score per row. Each batch is loaded once for all rows; the module runs
        as one ``vmap`` over the rows, and so do the loss and metrics, where they allow it,
        else (remembered) row by row."""
        if "validation" not in self._sources:
            return {}
        with torch.no_grad():
            return self._scores(params, state.buffers, "validation", rows=True)

    def evaluate(self, params: dict[str, torch.Tensor],
                 buffers: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
        """``test_loss`` and ``test_<metric>`` on the test data, once at the end of a trial
        (eval mode, with the trial's own BatchNorm statistics ``buffers``; none given: the
        module's initial ones); nothing without test data. Never a study's metric. A
        non-finite score is an ``ObjectiveError`` naming it."""
        if "test" not in self._sources:
            return {}
        state = self.start_trial(device_of(params))
        if buffers is not None:
            state.buffers.update(buffers)
        with torch.no_grad():
            scores = {k: float(v) for k, v in self._scores(params, state.buffers, "test").items()}
        for key, value in scores.items():
            if not math.isfinite(value):
                raise ObjectiveError(key, value, "a test score must be finite: check the test "
                                     "data and the function that scores them")
        return scores

    def loss(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """The training loss of the whole training set in training mode, with a fresh trial
        state that is thrown away: a pure function of ``params`` (for probes and the LR range
        test; the training loop uses ``batch_loss``). In-memory tensors are one batch; loaded
        data are the batches of epoch 0, their losses averaged over rows."""
        device = device_of(params)
        train = self._sources["train"]
        batches = (train.whole(device) if isinstance(train, Tensors)
                   else train.batches(0, device, self.seed))
        state = self.start_trial(device)
        self._set_mode(True)
        losses, rows = [], []
        for raw in batches:
            with _drawing_from(state.generator):
                losses.append(self._loss({**state.buffers, **params}, raw))
            rows.append(batch_rows(raw))
        return _row_mean(losses, rows)

    def arguments(self) -> dict[str, Any]:
        """The arguments given at construction (logged with the sweep)."""
        return dict(self._arguments)

    def with_autocast(self, dtype: torch.dtype | None) -> DatasetObjective:
        """A copy of this objective whose module runs under ``torch.autocast`` at ``dtype``
        (``torch.bfloat16`` or ``torch.float16``; None: as given); this one is unchanged. The
        module's parameters must be float32 (autocast leaves float64 as it is)."""
        if dtype not in (None, torch.bfloat16, torch.float16):
            raise ObjectiveError("autocast", dtype, "use torch.bfloat16, torch.float16 or None")
        kinds = {p.dtype for p in self._initial.values() if p.is_floating_point()}
        if dtype is not None and kinds != {torch.float32}:
            names = ", ".join(sorted(str(k).removeprefix("torch.") for k in kinds))
            raise ObjectiveError(f"{self.name} parameters", names, "autocast takes a float32 "
                                 "module: use float32 parameters, or fp32 precision")
        other = copy.copy(self)
        other._by_vmap = dict(self._by_vmap)
        other.autocast = dtype
        return other

    # -- one loss, held-out scores ---------------------------------------------------------

    def _loss(self, tensors: dict[str, torch.Tensor], raw: Any) -> torch.Tensor:
        """The loss of batch ``raw`` under ``tensors`` (parameters and buffers), in the
        module's current mode. Under autocast the module runs at ``autocast`` and
        ``loss_fn`` takes its outputs as float32 (a ``step`` hook runs under autocast
        whole, its loss returned as float32)."""
        if self._step is not None:
            with self._autocasting(tensors):
                loss = scalar("step", self._step(Bound(self._module, tensors), raw))
            return self._widened(loss)
        inputs, targets = self._pair(raw, "train")
        assert self._loss_fn is not None
        outputs = self._module_call(tensors, inputs)
        return scalar("loss_fn", self._loss_fn(outputs, targets))

    def _module_call(self, tensors: dict[str, torch.Tensor], inputs: torch.Tensor
                     ) -> torch.Tensor:
        """The module's outputs for ``inputs`` under ``tensors`` (under autocast, if set;
        the outputs as float32)."""
        with self._autocasting(tensors):
            outputs = functional_call(self._module, tensors, (inputs,))
        return self._widened(outputs)

    def _stacked_call(self, tensors: dict[str, torch.Tensor], inputs: torch.Tensor,
                      training: bool) -> torch.Tensor:
        """Every row's outputs by the stacked lowering (under autocast, if set; the outputs
        as float32)."""
        assert self._stacked is not None
        with self._autocasting(tensors):
            outputs = self._stacked(tensors, inputs, training)
        return self._widened(outputs)

    def _lowered(self, tensors: dict[str, torch.Tensor], inputs: torch.Tensor) -> bool:
        """Whether stacked ``tensors`` run by the stacked lowering. At its first use it is
        checked against ``vmap`` in eval mode (no buffer changes, no random draws) on
        ``inputs``; where it fails or disagrees, stacks run under ``vmap`` from then on."""
        if self._stacked is None or self._stacked_checked:
            return self._stacked is not None
        self._stacked_checked = True
        training = self._module.training
        self._set_mode(False)
        try:
            with torch.no_grad():
                lowered = self._stacked_call(tensors, inputs, False)
                by_vmap = torch.func.vmap(lambda t: self._module_call(t, inputs))(tensors)
            tolerance = 1e-10 if lowered.dtype == torch.float64 else 1e-4
            agree = (lowered.shape == by_vmap.shape
                     and torch.allclose(lowered, by_vmap, rtol=tolerance, atol=tolerance))
            why = "its outputs differ from vmap's"
        except Exception as exc:  # a shape the lowering does not follow: vmap says it
            agree, why = False, f"{type(exc).__name__}: {exc}"
        finally:
            self._set_mode(training)
        if not agree:
            log.info("%s: stacked trials run under vmap (the stacked network: %s)",
                     self.name, why)
            self._stacked = None
        return agree

    def _autocasting(self, tensors: dict[str, torch.Tensor]) -> AbstractContextManager[Any]:
        """``torch.autocast`` at ``autocast`` on the device of ``tensors``, if it is set."""
        if self.autocast is None:
            return nullcontext()
        return torch.autocast(device_of(tensors).type, dtype=self.autocast)

    def _widened(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` computed under autocast back in float32 (the parameters' dtype)."""
        if (self.autocast is not None and isinstance(value, torch.Tensor)
                and value.dtype == self.autocast):
            return value.to(torch.float32)
        return value

    def _scores(self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
                split: str, rows: bool = False) -> dict[str, torch.Tensor]:
        """The scores of ``params`` and ``buffers`` on held-out ``split`` (eval mode: no
        randomness, no buffer updates), named ``val_*`` or ``test_*``; with ``rows``, of each
        row of stacked ones (one value per row)."""
        prefix = "val" if split == "validation" else split
        batches = self._sources[split].held_out(device_of(params), self.seed)
        self._set_mode(False)
        if self._step is not None:
            return {f"{prefix}_loss": self._mean_step(params, buffers, batches, rows)}
        outputs, targets = [], []
        tensors = {**buffers, **params}
        for raw in batches:
            inputs, target = self._pair(raw, split)

            def forward(p: _Stacked, b: _Stacked, inputs: torch.Tensor = inputs
                        ) -> torch.Tensor:
                return self._module_call({**b, **p}, inputs)

            if rows and self._lowered(tensors, inputs):
                outputs.append(self._stacked_call(tensors, inputs, False))
            else:
                outputs.append(self._by_rows("forward", forward, params, buffers) if rows
                               else forward(params, buffers))
            targets.append(target)
        together = torch.cat(targets)

        def score(out: torch.Tensor) -> dict[str, torch.Tensor]:
            assert self._loss_fn is not None
            scores = {f"{prefix}_loss": self._loss_fn(out, together)}
            for key, fn in self._metrics.items():
                scores[f"{prefix}_{key}"] = torch.as_tensor(fn(out, together),
                                                            device=out.device)
            return scores

        if not rows:
            return score(torch.cat(outputs))
        return self._by_rows("score", score, torch.cat(outputs, dim=1))

    def _mean_step(self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
                   batches: Iterable[Any], rows: bool) -> torch.Tensor:
        """``step``'s loss over ``batches``, the mean over their rows (per stacked row with
        ``rows``)."""
        losses, sizes = [], []
        for raw in batches:

            def one(p: _Stacked, b: _Stacked, raw: Any = raw) -> torch.Tensor:
                return self._loss({**b, **p}, raw)

            losses.append(self._by_rows("forward", one, params, buffers) if rows
                          else one(params, buffers))
            sizes.append(batch_rows(raw))
        return _row_mean(losses, sizes)

    def _by_rows(self, kind: str, fn: Callable[..., Any], *stacked: Any) -> Any:
        """``fn`` of each row of ``stacked`` (tensors or dicts of them, rows along the first
        dimension), stacked: one ``vmap`` while ``kind`` allows it, else row by row."""
        if self._by_vmap[kind]:
            try:
                return torch.func.vmap(fn)(*stacked)
            except RuntimeError:
                self._by_vmap[kind] = False  # e.g. a metric calling .item(): row by row
        first = stacked[0]
        count = len(next(iter(first.values())) if isinstance(first, dict) else first)
        each = [fn(*(_row(s, i) for s in stacked)) for i in range(count)]
        if isinstance(each[0], dict):
            return {key: torch.stack([torch.as_tensor(r[key]) for r in each]) for key in each[0]}
        return torch.stack(each)

    # -- data --------------------------------------------------------------------------------

    def _pair(self, raw: Any, split: str) -> _Pair:
        """``raw`` as (inputs, targets); ``ObjectiveError`` if it is not a pair of tensors."""
        if (isinstance(raw, (tuple, list)) and len(raw) == 2
                and all(isinstance(t, torch.Tensor) for t in raw)):
            return raw[0], raw[1]
        raise ObjectiveError(f"{split} batch", describe(raw), "yield (inputs, targets) "
                             "pairs of tensors, or give a step(model, batch) hook")

    def _check(self, device: torch.device) -> None:
        """Without a step hook: the first batch of each loaded split is a pair of tensors,
        and held-out rows are shaped like training rows, of the same dtypes (as tensors are
        checked at construction)."""
        splits = self._sources
        if self._step is None and len(splits) > 1 and any(isinstance(s, Loaded)
                                                          for s in splits.values()):
            first = {split: self._pair(_first(s, device, self.seed), split)
                     for split, s in splits.items()}
            for split, pair in first.items():
                if split != "train":
                    check_like(split, pair, *first["train"])
        self._checked = True

    def _forward(self, params: dict[str, torch.Tensor], state: TrialState,
                 inputs: torch.Tensor, *, training: bool) -> torch.Tensor:
        self._set_mode(training)
        with _drawing_from(state.generator):
            return self._module_call({**state.buffers, **params}, inputs)

    def _set_mode(self, training: bool) -> None:
        if self._module.training != training:
            self._module.train(training)


def _first(data: Source, device: torch.device, seed: int) -> Any:
    """The first batch ``data`` trains or is scored with."""
    if isinstance(data, Tensors):
        return data.inputs, data.targets
    return next(iter(data.batches(0, device, seed) if data.field == "train"
                     else data.held_out(device, seed)))


def _row_mean(losses: list[torch.Tensor], rows: list[int]) -> torch.Tensor:
    """The mean of batch ``losses`` (each a mean over its batch's ``rows``) over all rows;
    one batch's loss as it is."""
    if len(losses) == 1:
        return losses[0]
    return sum((loss * count for loss, count in zip(losses, rows)),
               torch.zeros_like(losses[0])) / sum(rows)


def _row(stacked: Any, i: int) -> Any:
    if isinstance(stacked, dict):
        return {key: value[i] for key, value in stacked.items()}
    return stacked[i]


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
