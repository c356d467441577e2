"""Where a ``DatasetObjective``'s data come from: tensors in memory, or a ``Dataset`` or
``DataLoader`` iterated every epoch.

- ``Tensors``: a pair (inputs, targets). An epoch's batches are index tensors into them, in an
  order drawn from a generator seeded by (seed, epoch); the rows are moved once to each device.
- ``Loaded``: a ``Dataset`` (wrapped in a ``DataLoader`` of the objective's ``batch_size``,
  ``shuffle`` and ``drop_last``), a ``DataLoader`` (its own batch size, sampler, ``collate_fn``
  and workers), or a function of no arguments returning one (called when the data are first
  needed). An epoch's batches are loaded as they are iterated (``LoaderEpoch``), with every
  draw seeded by (seed, epoch): the loader's generators (its shuffle, its workers' base seed)
  are seeded with it, and the main process draws from ``SeededDraws``, so random transforms
  draw afresh each epoch and the same epoch draws the same in every trial and re-run. A
  ``Dataset``'s order is drawn as the tensors' order is. Workers seed torch, numpy and
  ``random`` from the base seed and their id (as torch does), so a loader with workers is as
  reproducible, though its draws differ from those made in the main process.

Held-out data are iterated each time they are scored (a ``Dataset`` in order, a
``DataLoader`` as it is), with the draws seeded the same every time (``held_out``): every
trial and epoch is scored on the same inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

from ._errors import ObjectiveError
from .seeding import SeededDraws, draw_seed

__all__ = ["Batching", "Data", "LoaderEpoch", "Loaded", "Source", "Tensors", "batch_rows",
           "check_like", "describe", "source", "to_device"]

Data = (tuple[torch.Tensor, torch.Tensor] | Dataset | DataLoader
        | Callable[[], Dataset | DataLoader])
STREAMS = {"train": 0, "validation": 1, "test": 2}  # each split draws from its own stream


@dataclass(frozen=True)
class Batching:
    """How a split is cut into batches, unless it is a ``DataLoader`` (which keeps its own)."""

    batch_size: int | None  # rows a batch (None: only a DataLoader may be given)
    shuffle: bool = False  # a new order each epoch, seeded by (seed, epoch)
    drop_last: bool = False  # drop the last batch when it is smaller


class Tensors:
    """(inputs, targets) in memory, cut into batches of index tensors."""

    def __init__(self, field: str, inputs: torch.Tensor, targets: torch.Tensor,
                 batching: Batching) -> None:
        if (inputs.ndim == 0 or targets.ndim == 0 or len(inputs) != len(targets)
                or not len(inputs)):
            raise ObjectiveError(field, f"{tuple(inputs.shape)} and {tuple(targets.shape)}",
                                 "use inputs and targets with the same number of rows, at "
                                 "least 1")
        size = _batch_size(field, batching)
        if batching.drop_last and size > len(inputs):
            raise ObjectiveError("batch_size", size, f"with drop_last use at most the "
                                 f"{len(inputs)} {field} rows")
        self.inputs, self.targets = inputs.detach(), targets.detach()
        self.batch_size = size
        self.batching = batching
        self._on_device: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def rows(self) -> int:
        return len(self.inputs)

    def steps(self) -> int:
        """ceil(rows / batch_size), or the floor with ``drop_last``."""
        whole, part = divmod(self.rows, self.batch_size)
        return whole + (1 if part and not self.batching.drop_last else 0)

    def batches(self, epoch: int, device: torch.device, seed: int) -> list[torch.Tensor]:
        """The index tensors of ``epoch``'s batches, on ``device``; the order is drawn on the
        CPU, so it is the same on every device."""
        if self.batching.shuffle:
            generator = torch.Generator().manual_seed(draw_seed(seed, epoch))
            order = torch.randperm(self.rows, generator=generator)
        else:
            order = torch.arange(self.rows)
        parts = list(order.to(device).split(self.batch_size))
        if self.batching.drop_last and len(parts[-1]) < self.batch_size:
            parts.pop()
        return parts

    def take(self, batch: torch.Tensor, device: torch.device
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows of index tensor ``batch``."""
        inputs, targets = self.on(device)
        return inputs.index_select(0, batch), targets.index_select(0, batch)

    def held_out(self, device: torch.device, seed: int
                 ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """All rows in order, in chunks of ``batch_size``."""
        inputs, targets = self.on(device)
        return list(zip(inputs.split(self.batch_size), targets.split(self.batch_size)))

    def whole(self, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """All rows as one batch."""
        return [self.on(device)]

    def on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows on ``device``, moved there once."""
        if device not in self._on_device:
            self._on_device[device] = (self.inputs.to(device), self.targets.to(device))
        return self._on_device[device]


class Loaded:
    """A ``Dataset`` or ``DataLoader`` (or a function returning one, called when first needed),
    loaded batch by batch each epoch."""

    def __init__(self, field: str, data: Data, batching: Batching) -> None:
        self.field = field
        self.batching = batching
        self._factory = None if isinstance(data, (Dataset, DataLoader)) else data
        self._loader = None if self._factory is not None else self._wrap(data)

    @property
    def loader(self) -> DataLoader:
        """The ``DataLoader`` (the factory called on first use)."""
        if self._loader is None:
            assert self._factory is not None
            made = self._factory()
            if not isinstance(made, (Dataset, DataLoader)):
                raise ObjectiveError(self.field, f"{_name(self._factory)}() returning "
                                     f"{type(made).__name__}", "a function given as data "
                                     "returns a Dataset or a DataLoader")
            self._loader = self._wrap(made)
        return self._loader

    @property
    def rows(self) -> int:
        """Rows of the data set (of an epoch, unless a sampler draws fewer or more)."""
        return len(self.loader.dataset)  # type: ignore[arg-type]

    def steps(self) -> int:
        """Batches an epoch: the loader's length."""
        return len(self.loader)

    def batches(self, epoch: int, device: torch.device, seed: int) -> LoaderEpoch:
        """``epoch``'s batches, loaded as they are iterated."""
        return LoaderEpoch(self.loader, draw_seed(seed, epoch, STREAMS[self.field]), device)

    def take(self, batch: Any, device: torch.device) -> Any:
        """The batch as loaded (already on ``device``)."""
        return batch

    def held_out(self, device: torch.device, seed: int) -> LoaderEpoch:
        """Every batch in order, drawn the same way each time."""
        return LoaderEpoch(self.loader, draw_seed(seed, 0, STREAMS[self.field]), device)

    def _wrap(self, data: Dataset | DataLoader) -> DataLoader:
        """``data`` as a ``DataLoader`` with a length of at least one batch."""
        if isinstance(data, DataLoader):
            loader = data
            if loader.persistent_workers:
                raise ObjectiveError(f"{self.field} persistent_workers", True,
                                     "use False: workers start each epoch, seeded by "
                                     "(seed, epoch)")
        else:
            size = _batch_size(self.field, self.batching)
            try:
                rows = len(data)  # type: ignore[arg-type]
            except TypeError:
                raise ObjectiveError(self.field, type(data).__name__, "use a Dataset with a "
                                     "length (__len__), or a DataLoader") from None
            if self.batching.drop_last and size > rows:
                raise ObjectiveError("batch_size", size, f"with drop_last use at most the "
                                     f"{rows} {self.field} rows")
            try:  # the order drawn by a generator of its own: as the tensors' order
                order = (RandomSampler(data, generator=torch.Generator())  # type: ignore[arg-type]
                         if self.batching.shuffle else None)
                loader = DataLoader(data, batch_size=size, sampler=order,
                                    drop_last=self.batching.drop_last,
                                    generator=torch.Generator())
            except (TypeError, ValueError) as exc:
                raise ObjectiveError(self.field, type(data).__name__, str(exc)) from None
        try:
            steps = len(loader)
        except TypeError:
            raise ObjectiveError(self.field, type(loader.dataset).__name__,
                                 "use data with a length (__len__): an epoch's batches are "
                                 "counted before it starts") from None
        if steps < 1:
            raise ObjectiveError(self.field, f"{type(loader.dataset).__name__} of no batches",
                                 "use data of at least one batch")
        return loader


Source = Tensors | Loaded


class LoaderEpoch:
    """One pass over ``loader``, its draws seeded with ``seed``; each batch loaded as it is
    reached and moved to ``device``. Each iteration starts afresh from the same seed."""

    def __init__(self, loader: DataLoader, seed: int, device: torch.device) -> None:
        self.loader, self.seed, self.device = loader, seed, device

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        draws = SeededDraws(self.seed)
        for generator in _generators(self.loader):
            generator.manual_seed(self.seed)
        batches = draws.call(iter, self.loader)
        while True:
            try:
                batch = draws.call(next, batches)
            except StopIteration:
                return
            yield to_device(batch, self.device)


def source(field: str, data: Data, batching: Batching) -> Source:
    """``data`` of split ``field`` as a source, checked as far as it can be without loading."""
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, torch.Tensor)
                                                          for t in data):
        return Tensors(field, data[0], data[1], batching)
    if isinstance(data, (Dataset, DataLoader)) or callable(data):
        return Loaded(field, data, batching)
    raise ObjectiveError(field, type(data).__name__, "use a pair of tensors (inputs, "
                         "targets), a Dataset, a DataLoader, or a function returning one")


def to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor in it (in tuples, lists and mappings) on ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return {key: to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a named tuple
        return type(batch)(*(to_device(value, device) for value in batch))
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(value, device) for value in batch)
    return batch


def batch_rows(batch: Any) -> int:
    """Rows of ``batch``: the length of the first tensor in it with a dimension (1 if none)."""
    if isinstance(batch, torch.Tensor):
        return len(batch) if batch.ndim else 1
    values = (batch.values() if isinstance(batch, Mapping)
              else batch if isinstance(batch, (tuple, list)) else ())
    for value in values:
        if isinstance(value, (torch.Tensor, Mapping, tuple, list)):
            return batch_rows(value)
    return 1


def describe(value: Any, depth: int = 0) -> str:
    """A short description of a batch or a loss: tensors as dtype[shape], containers by
    their items."""
    if isinstance(value, torch.Tensor):
        return f"{str(value.dtype).removeprefix('torch.')}{list(value.shape)}"
    if depth < 2 and isinstance(value, Mapping):
        items = list(value.items())
        text = ", ".join(f"{key!r}: {describe(v, depth + 1)}" for key, v in items[:6])
        return "{" + text + (", ..." if len(items) > 6 else "") + "}"
    if depth < 2 and isinstance(value, (tuple, list)):
        text = ", ".join(describe(v, depth + 1) for v in value[:6])
        return f"({text}{', ...' if len(value) > 6 else ''})"
    return type(value).__name__


def check_like(split: str, held_out: tuple[torch.Tensor, torch.Tensor], inputs: torch.Tensor,
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


def _batch_size(field: str, batching: Batching) -> int:
    if batching.batch_size is None:
        raise ObjectiveError("batch_size", None, f"give a batch size for the {field} data "
                             "(only a DataLoader keeps its own)")
    return batching.batch_size


def _generators(loader: DataLoader) -> list[torch.Generator]:
    """The generators ``loader`` draws from (its own, its sampler's), each once."""
    found: list[torch.Generator] = []
    for owner in (loader, loader.sampler, getattr(loader.batch_sampler, "sampler", None)):
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator) and all(generator is not g for g in found):
            found.append(generator)
    return found


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", type(fn).__name__)
