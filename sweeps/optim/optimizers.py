"""Optimizers by name, each a small typed builder over ``torch.optim``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = ["OPTIMIZERS", "OptimizerSpec", "build_grouped", "build_optimizer", "group_options"]


@dataclass(frozen=True)
class OptimizerSpec:
    """How to build one optimizer and which learning rates suit it."""

    torch_name: str  # class in torch.optim
    lr_range: tuple[float, float]  # default search interval (log scale)
    fixed: tuple[tuple[str, Any], ...] = ()  # constructor arguments that define the variant
    searched: tuple[str, ...] = ()  # sub-parameters the search space samples


_SGD_LR = (1e-3, 1e7)  # plain gradient steps: the right scale depends on the gradient's
_ADAPTIVE_LR = (1e-5, 1e2)  # per-element normalised steps: about a parameter change per step

OPTIMIZERS: dict[str, OptimizerSpec] = {
    "sgd": OptimizerSpec("SGD", _SGD_LR),
    "momentum": OptimizerSpec("SGD", _SGD_LR, searched=("momentum",)),
    "nesterov": OptimizerSpec("SGD", _SGD_LR, (("nesterov", True),), ("momentum",)),
    "adam": OptimizerSpec("Adam", _ADAPTIVE_LR),
    "adamw": OptimizerSpec("AdamW", _ADAPTIVE_LR, searched=("weight_decay",)),
    "rmsprop": OptimizerSpec("RMSprop", _ADAPTIVE_LR, searched=("momentum",)),
    "adagrad": OptimizerSpec("Adagrad", _ADAPTIVE_LR),
}

DEFAULT_SUBPARAMS: dict[str, float] = {"momentum": 0.9, "weight_decay": 0.01}


def group_options(name: str, lr: float, options: dict[str, float]) -> dict[str, Any]:
    """The parameter-group settings of optimizer ``name`` (lr, the variant, sub-parameters)."""
    spec = OPTIMIZERS[name]
    kwargs: dict[str, Any] = {"lr": lr, **dict(spec.fixed)}
    for key in spec.searched:
        kwargs[key] = options.get(key, DEFAULT_SUBPARAMS[key])
    return kwargs


def build_optimizer(
    name: str, params: Iterable[torch.Tensor], lr: float, options: dict[str, float]
) -> torch.optim.Optimizer:
    """``torch.optim`` optimizer ``name`` over ``params`` with its searched sub-parameters."""
    return build_grouped(name, [(list(params), group_options(name, lr, options))])


def build_grouped(
    name: str, groups: list[tuple[list[torch.Tensor], dict[str, Any]]]
) -> torch.optim.Optimizer:
    """One ``torch.optim`` optimizer of ``name``'s class with a parameter group per entry."""
    import torch

    cls: Callable[..., torch.optim.Optimizer] = getattr(torch.optim, OPTIMIZERS[name].torch_name)
    param_groups = [{"params": params, **kwargs} for params, kwargs in groups]
    return cls(param_groups, **groups[0][1])  # the first group validates the settings
