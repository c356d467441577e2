"""``torch.optim``'s update rules over stacked trials: one row per trial, per-row hyperparameters.

Each rule repeats, operation for operation, the single-tensor code path of its ``torch.optim``
class (defaults as ``sweeps.optimizers`` sets them), with each per-trial scalar (lr, momentum,
weight decay) as a column so that all trials of a batch update in a few tensor operations.
Elementwise results are bit-identical to the sequential optimizer;
``tests/sweeps/test_batched.py`` checks every rule against ``torch.optim``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sweeps.optim.optimizers import DEFAULT_SUBPARAMS

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["RULES", "StackedRule"]


class StackedRule:
    """Updates the rows ``rows`` of stacked parameters; keeps that slice's optimizer state."""

    def __init__(self, rows: slice, options: list[dict[str, float]], like: Tensor) -> None:
        self.rows = rows
        self.step_count = 0
        self.state: list[Any] = []  # per parameter tensor: the rule's buffers, or None
        self.columns = {key: _column([o.get(key, DEFAULT_SUBPARAMS[key]) for o in options],
                                     like) for key in self.uses}

    uses: tuple[str, ...] = ()

    def step(self, params: list[Tensor], grads: list[Tensor], lr: Tensor) -> None:
        """One step of every parameter (row slices of the stacked tensors); ``lr``: a column."""
        self.step_count += 1
        if not self.state:
            self.state = [None] * len(params)
        for k, (p, g) in enumerate(zip(params, grads)):
            self.update(k, p[self.rows], g[self.rows], lr)

    def update(self, k: int, p: Tensor, g: Tensor, lr: Tensor) -> None:
        raise NotImplementedError


def _column(values: list[float], like: Tensor) -> Tensor:
    import torch

    return torch.tensor(values, dtype=like.dtype, device=like.device)


def _expand(column: Tensor, like: Tensor) -> Tensor:
    return column.view(-1, *([1] * (like.dim() - 1)))


class _SGD(StackedRule):
    """SGD; with ``momentum`` (and ``nesterov``) for the momentum variants."""

    def __init__(self, rows: slice, options: list[dict[str, float]], like: Tensor,
                 momentum: bool = False, nesterov: bool = False) -> None:
        self.uses = ("momentum",) if momentum else ()
        super().__init__(rows, options, like)
        self.nesterov = nesterov

    def update(self, k: int, p: Tensor, g: Tensor, lr: Tensor) -> None:
        import torch

        if self.uses:
            m = _expand(self.columns["momentum"], g)
            buf = self.state[k]
            if buf is None:
                buf = self.state[k] = g.detach().clone()
            else:
                buf.mul_(m).add_(g)
            g = torch.addcmul(g, buf, m) if self.nesterov else buf
        p.addcmul_(g, _expand(-lr, g))


class _Adam(StackedRule):
    """Adam, or AdamW with decoupled weight decay."""

    beta1, beta2, eps = 0.9, 0.999, 1e-8

    def __init__(self, rows: slice, options: list[dict[str, float]], like: Tensor,
                 decoupled: bool = False) -> None:
        self.uses = ("weight_decay",) if decoupled else ()
        super().__init__(rows, options, like)

    def update(self, k: int, p: Tensor, g: Tensor, lr: Tensor) -> None:
        import torch

        if self.state[k] is None:
            self.state[k] = (torch.zeros_like(p), torch.zeros_like(p))  # type: ignore[assignment]
        exp_avg, exp_avg_sq = self.state[k]  # type: ignore[misc]
        step = float(self.step_count)
        if self.uses:
            p.mul_(_expand(1 - lr * self.columns["weight_decay"], p))
        exp_avg.lerp_(g, 1 - self.beta1)
        exp_avg_sq.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
        bias_correction1 = 1 - self.beta1**step
        bias_correction2 = 1 - self.beta2**step
        step_size = lr / bias_correction1
        denom = (exp_avg_sq.sqrt() / bias_correction2**0.5).add_(self.eps)
        p.addcdiv_(exp_avg * _expand(-step_size, p), denom)


class _RMSprop(StackedRule):
    alpha, eps = 0.99, 1e-8
    uses = ("momentum",)

    def update(self, k: int, p: Tensor, g: Tensor, lr: Tensor) -> None:
        import torch

        if self.state[k] is None:
            self.state[k] = (torch.zeros_like(p), torch.zeros_like(p))  # type: ignore[assignment]
        square_avg, buf = self.state[k]  # type: ignore[misc]
        square_avg.mul_(self.alpha).addcmul_(g, g, value=1 - self.alpha)
        avg = square_avg.sqrt().add_(self.eps)
        m = self.columns["momentum"]
        if bool((m <= 0).any()):  # torch takes another path without momentum
            raise ValueError("stacked RMSprop needs momentum > 0 in every row")
        buf.mul_(_expand(m, p)).addcdiv_(g, avg)
        p.addcmul_(buf, _expand(-lr, p))


class _Adagrad(StackedRule):
    eps = 1e-10

    def update(self, k: int, p: Tensor, g: Tensor, lr: Tensor) -> None:
        import torch

        if self.state[k] is None:
            self.state[k] = torch.zeros_like(p)
        state_sum = self.state[k]
        state_sum.addcmul_(g, g, value=1)  # type: ignore[union-attr]
        std = state_sum.sqrt().add_(self.eps)  # type: ignore[union-attr]
        clr = lr / 1.0  # lr / (1 + (step - 1) * lr_decay) with lr_decay = 0
        p.addcdiv_(g * _expand(-clr, p), std)


RULES: dict[str, Callable[[slice, list[dict[str, float]], Tensor], StackedRule]] = {
    "sgd": _SGD,
    "momentum": lambda rows, options, like: _SGD(rows, options, like, momentum=True),
    "nesterov": lambda rows, options, like: _SGD(rows, options, like, True, nesterov=True),
    "adam": _Adam,
    "adamw": lambda rows, options, like: _Adam(rows, options, like, decoupled=True),
    "rmsprop": _RMSprop,
    "adagrad": _Adagrad,
}
