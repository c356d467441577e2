"""``torch.optim``'s update rules over stacked trials: one row per trial, per-row hyperparameters.

Each rule repeats the single-tensor code path of its ``torch.optim`` class. A row's settings are
those the sequential optimizer is built with (``sweeps.optim.group_options``); the ones that
differ between rows (momentum, weight decay) become columns, so that all trials of a batch
update in a few tensor operations. Weight decay is added to the gradient first, as torch does
(AdamW's, decoupled, scales the parameters). ``tests/sweeps/batched/test_batched.py`` compares every
optimizer and scheduler with the sequential loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["RULES", "StackedRule"]


class StackedRule:
    """Updates the rows ``rows`` of stacked parameters; keeps that slice's optimizer state."""

    uses: tuple[str, ...] = ()  # the settings read per row, as columns
    decoupled = False  # weight decay applied to the parameters (AdamW), not the gradient

    def __init__(self, rows: slice, settings: list[dict[str, Any]], like: Tensor) -> None:
        if not all(self.supports(s) for s in settings):
            raise ValueError(f"{type(self).__name__} cannot repeat torch for these settings")
        self.rows = rows
        self.device = like.device
        self.step_count = 0
        self.state: list[Any] = []  # per parameter tensor: the rule's buffers, or None
        # L2 weight decay, where any row has one (torch adds it to the gradient first)
        self.l2 = not self.decoupled and any(s.get("weight_decay") for s in settings)
        uses = (*self.uses, "weight_decay") if self.l2 else self.uses
        self.columns = {key: _column([s.get(key, 0.0) for s in settings], like)
                        for key in uses}

    @classmethod
    def supports(cls, settings: Mapping[str, Any]) -> bool:
        """True if this rule repeats torch's code path for a row with ``settings``."""
        return True

    def step(self, params: list[Tensor], grads: list[Tensor], lr: Tensor) -> None:
        """One step of every parameter (row slices of the stacked tensors); ``lr``: a column."""
        self.step_count += 1
        if not self.state:
            self.state = [None] * len(params)
        for k, (p, g) in enumerate(zip(params, grads)):
            mine, grad = p[self.rows], g[self.rows]
            if self.l2:  # grad.add(param, alpha=weight_decay)
                grad = grad + mine * _expand(self.columns["weight_decay"], mine)
            self.update(k, mine, grad, lr)

    def update(self, k: int, p: Tensor, g: Tensor, lr: Tensor) -> None:
        raise NotImplementedError

    def keep(self, rows: list[int], at: slice) -> None:
        """Keep the settings and state of ``rows`` only (positions in this rule's slice),
        which now lie at ``at`` of the stacked tensors (``TrialStack.compact``)."""
        import torch

        index = torch.tensor(rows, device=self.device)
        self.columns = {key: column[index] for key, column in self.columns.items()}
        self.state = [_take(s, index) for s in self.state]
        self.rows = at


def _take(state: Any, index: Tensor) -> Any:
    """The rows ``index`` of a rule's buffer (a tensor, a tuple of them, or None)."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(t.index_select(0, index) for t in state)
    return state.index_select(0, index)


def _column(values: list[float], like: Tensor) -> Tensor:
    import torch

    return torch.tensor(values, dtype=like.dtype, device=like.device)


def _expand(column: Tensor, like: Tensor) -> Tensor:
    return column.view(-1, *([1] * (like.dim() - 1)))


class _SGD(StackedRule):
    """SGD; with ``momentum`` (and ``nesterov``) for the variants whose settings have them."""

    def __init__(self, rows: slice, settings: list[dict[str, Any]], like: Tensor) -> None:
        self.uses = ("momentum",) if "momentum" in settings[0] else ()
        self.nesterov = bool(settings[0].get("nesterov", False))
        super().__init__(rows, settings, like)

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
    """Adam; its betas and eps are the rows' own (one value for all rows of a stack: a sweep
    fixes them for every trial)."""

    def __init__(self, rows: slice, settings: list[dict[str, Any]], like: Tensor) -> None:
        shared = {(tuple(s.get("betas", (0.9, 0.999))), s.get("eps", 1e-8)) for s in settings}
        if len(shared) != 1:
            raise ValueError("the rows of one stack must share the Adam betas and eps")
        (self.beta1, self.beta2), self.eps = shared.pop()
        super().__init__(rows, settings, like)

    def update(self, k: int, p: Tensor, g: Tensor, lr: Tensor) -> None:
        import torch

        if self.state[k] is None:
            self.state[k] = (torch.zeros_like(p), torch.zeros_like(p))  # type: ignore[assignment]
        exp_avg, exp_avg_sq = self.state[k]  # type: ignore[misc]
        step = float(self.step_count)
        if self.decoupled:
            p.mul_(_expand(1 - lr * self.columns["weight_decay"], p))
        exp_avg.lerp_(g, 1 - self.beta1)
        exp_avg_sq.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
        bias_correction1 = 1 - self.beta1**step
        bias_correction2 = 1 - self.beta2**step
        step_size = lr / bias_correction1
        denom = (exp_avg_sq.sqrt() / bias_correction2**0.5).add_(self.eps)
        p.addcdiv_(exp_avg * _expand(-step_size, p), denom)


class _AdamW(_Adam):
    """AdamW: Adam with decoupled weight decay."""

    decoupled = True
    uses = ("weight_decay",)


class _RMSprop(StackedRule):
    """RMSprop with momentum (torch takes another code path without)."""

    alpha, eps = 0.99, 1e-8  # torch's defaults
    uses = ("momentum",)

    @classmethod
    def supports(cls, settings: Mapping[str, Any]) -> bool:
        return bool(settings["momentum"] > 0)

    def update(self, k: int, p: Tensor, g: Tensor, lr: Tensor) -> None:
        import torch

        if self.state[k] is None:
            self.state[k] = (torch.zeros_like(p), torch.zeros_like(p))  # type: ignore[assignment]
        square_avg, buf = self.state[k]  # type: ignore[misc]
        square_avg.mul_(self.alpha).addcmul_(g, g, value=1 - self.alpha)
        avg = square_avg.sqrt().add_(self.eps)
        buf.mul_(_expand(self.columns["momentum"], p)).addcdiv_(g, avg)
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


RULES: dict[str, type[StackedRule]] = {  # by optimizer name, as in sweeps.optim.OPTIMIZERS
    "sgd": _SGD,
    "momentum": _SGD,
    "nesterov": _SGD,
    "adam": _Adam,
    "adamw": _AdamW,
    "rmsprop": _RMSprop,
    "adagrad": _Adagrad,
}
