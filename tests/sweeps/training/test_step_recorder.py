"""``StepRecorder`` on its own: each epoch's means of the per-step statistics equal a direct
float64 computation, also for a tensor without a gradient and one of all zeros (its first
update ratio is x/0: infinite, as dividing the sums directly gives); its buffers are one copy
of the parameters and a few scalars per tensor."""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import pytest
import torch

from sweeps.training.recorder import StepRecorder

NAMES = ("weight", "bias", "unused", "zero")
SHAPES = ((6, 4), (6,), (3,), (2, 2))
STEPS = (3, 2)  # steps in each of two epochs


def _params() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    params = [torch.randn(s, generator=generator, dtype=torch.float64) for s in SHAPES]
    params[3].zero_()
    return params


def _direct(before: list[torch.Tensor], after: list[torch.Tensor],
            grads: list[torch.Tensor | None], loss: float) -> list[float]:
    """One step's row, computed directly: the overall four, then per tensor."""
    g = [torch.zeros_like(b) if x is None else x for b, x in zip(before, grads)]
    grad_l1 = [x.abs().sum().item() for x in g]
    update_l1 = [(a - b).abs().sum().item() for a, b in zip(after, before)]
    size_l1 = [b.abs().sum().item() for b in before]
    numel = sum(b.numel() for b in before)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = list(np.divide(update_l1, size_l1))
    return [loss, sum(grad_l1) / numel, sum(update_l1) / numel, sum(update_l1) / sum(size_l1),
            *[s / b.numel() for s, b in zip(grad_l1, before)], *ratios]


@pytest.mark.parametrize("per_tensor", [True, False])
def test_epoch_means_equal_a_direct_float64_computation(per_tensor: bool) -> None:
    params = _params()
    recorder = StepRecorder(params, 2, NAMES if per_tensor else ())
    generator = torch.Generator().manual_seed(4)
    expected = []
    for steps in STEPS:
        rows = []
        for _ in range(steps):
            grads: list[torch.Tensor | None] = [
                None if name == "unused" else torch.randn(p.shape, generator=generator,
                                                          dtype=p.dtype)
                for name, p in zip(NAMES, params)]
            loss = torch.rand((), generator=generator, dtype=torch.float64)
            before = [p.clone() for p in params]
            recorder.before_step(loss, grads)
            for p, g in zip(params, grads):  # the step: in place, as an optimizer's
                if g is not None:
                    p.sub_(0.1 * g)
            recorder.after_step(0.1)
            rows.append(_direct(before, [p.clone() for p in params], grads, loss.item()))
        recorder.end_epoch({})
        expected.append(np.mean(rows, axis=0))
    stats = recorder.drain()
    want = np.array(expected).T
    got = [stats.loss, stats.grad_abs_mean, stats.update_abs_mean, stats.update_ratio]
    np.testing.assert_allclose(np.array(got), want[:4], rtol=1e-12, atol=0)
    np.testing.assert_array_equal(stats.lr, [0.1, 0.1])
    if not per_tensor:
        assert stats.extra == {}
        return
    for i, name in enumerate(NAMES):
        np.testing.assert_allclose(stats.extra[f"grad_abs_mean/{name}"], want[4 + i],
                                   rtol=1e-12, atol=0, err_msg=name)
        ratio = stats.extra[f"update_ratio/{name}"]
        np.testing.assert_allclose(ratio, want[4 + len(NAMES) + i], rtol=1e-12, atol=0,
                                   err_msg=name)
    assert math.isinf(stats.extra["update_ratio/zero"][0])  # moved from all zeros: x / 0


def _held_bytes(recorder: object, own: set[int]) -> int:
    """Bytes of every tensor storage reachable from ``recorder`` (through its attributes, the
    objects of this package they hold, dicts and other collections), each storage once, less the
    storages in ``own`` (the parameters themselves)."""
    held: dict[int, int] = {}
    seen: set[int] = set()
    stack: list[object] = [recorder]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            storage = obj.untyped_storage()
            if storage.data_ptr() not in own:
                held[storage.data_ptr()] = storage.nbytes()
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, deque)):
            stack.extend(obj)
        elif type(obj).__module__.startswith("sweeps."):
            stack.extend(vars(obj).values())
    return sum(held.values())


def test_buffers_are_one_copy_of_the_parameters_and_a_few_scalars_per_tensor() -> None:
    """The recorder's tensors, counted after construction and after every step, epoch and
    drain: exactly one float64 copy of the parameters (the scratch buffer), a step's
    numerators and denominators and each epoch's sums (one per statistic: the overall four and
    two per tensor, and the squared losses), one first loss from the first step on, and one
    value per epoch of each further metric from its first ``end_epoch`` on. Nothing grows with
    the steps."""
    params = _params()
    capacity = 4
    recorder = StepRecorder(params, capacity, NAMES)
    own = {p.untyped_storage().data_ptr() for p in params}
    f64 = 8
    statistics = 4 + 2 * len(NAMES)
    copy = sum(p.numel() for p in params) * f64
    step_rows = 2 * statistics * f64  # numerators and denominators
    epoch_sums = capacity * (statistics + 1) * f64  # and the squared losses (loss_std)
    first_loss = 1 * f64
    metric = capacity * f64  # val_loss, one per epoch
    base = copy + step_rows + epoch_sums
    assert _held_bytes(recorder, own) == base
    ended = False  # the val_loss table exists from the first end_epoch on
    generator = torch.Generator().manual_seed(5)
    for _ in range(2):  # two chunks of epochs, drained between
        for steps in STEPS:
            for _ in range(steps):
                grads: list[torch.Tensor | None] = [
                    None if name == "unused" else torch.randn(p.shape, generator=generator,
                                                              dtype=p.dtype)
                    for name, p in zip(NAMES, params)]
                recorder.before_step(torch.rand((), generator=generator, dtype=torch.float64),
                                     grads)
                for p, g in zip(params, grads):
                    if g is not None:
                        p.sub_(0.1 * g)
                recorder.after_step(0.1)
                held = _held_bytes(recorder, own)
                assert held == base + first_loss + (metric if ended else 0)
            recorder.end_epoch({"val_loss": torch.tensor(0.5, dtype=torch.float64)})
            ended = True
            assert _held_bytes(recorder, own) == base + first_loss + metric
        recorder.drain()
        assert _held_bytes(recorder, own) == base + first_loss + metric
