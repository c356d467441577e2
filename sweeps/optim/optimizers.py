"""Optimizers by name, each a small typed entry over ``torch.optim``: its class, the learning
rates that suit it and the sub-parameters it searches, with their defaults."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sweeps.optim.subparams import SubParam, settings

if TYPE_CHECKING:
    import torch

__all__ = ["ADAM_SETTINGS", "COMMON", "OPTIMIZERS", "OptimizerSpec", "build_grouped",
           "build_optimizer", "clip_gradients", "group_options", "takes"]


@dataclass(frozen=True)
class OptimizerSpec:
    """How to build one optimizer, which learning rates suit it and what else is searched."""

    torch_name: str  # class in torch.optim
    lr_range: tuple[float, float]  # default search interval (log scale)
    fixed: tuple[tuple[str, Any], ...] = ()  # constructor arguments that define the variant
    params: tuple[SubParam, ...] = ()  # sub-parameters the search samples (constant defaults)

    @property
    def searched(self) -> tuple[str, ...]:
        """The names of the sub-parameters the search samples."""
        return tuple(p.name for p in self.params)


_SGD_LR = (1e-3, 1e7)  # plain gradient steps: the right scale depends on the gradient's
_ADAPTIVE_LR = (1e-5, 1e2)  # per-element normalised steps: about a parameter change per step

MOMENTUM = SubParam("momentum", 0.9, 0.5, 0.99)
WEIGHT_DECAY = SubParam("weight_decay", 0.01, 1e-6, 1e-1, log=True)

OPTIMIZERS: dict[str, OptimizerSpec] = {
    "sgd": OptimizerSpec("SGD", _SGD_LR),
    "momentum": OptimizerSpec("SGD", _SGD_LR, params=(MOMENTUM,)),
    "nesterov": OptimizerSpec("SGD", _SGD_LR, (("nesterov", True),), (MOMENTUM,)),
    "adam": OptimizerSpec("Adam", _ADAPTIVE_LR),
    "adamw": OptimizerSpec("AdamW", _ADAPTIVE_LR, params=(WEIGHT_DECAY,)),
    "rmsprop": OptimizerSpec("RMSprop", _ADAPTIVE_LR, params=(MOMENTUM,)),
    "adagrad": OptimizerSpec("Adagrad", _ADAPTIVE_LR),
}


COMMON = ("weight_decay", "grad_clip")  # settings every optimizer takes (fixed for a sweep):
# weight decay (L2 added to the gradient; AdamW's is decoupled) and the largest gradient norm
# (the trial's gradient is scaled down to it before the step, as clip_grad_norm_ does)
ADAM_FAMILY = ("adam", "adamw")
ADAM_SETTINGS = {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}  # the Adam family's, fixed for a
# sweep where given; torch's defaults


def takes(name: str, setting: str) -> bool:
    """True if optimizer ``name`` takes the fixed ``setting`` (``COMMON``, ``ADAM_SETTINGS``)."""
    return setting in COMMON or (setting in ADAM_SETTINGS and name in ADAM_FAMILY)


def group_options(name: str, lr: float, options: Mapping[str, float]) -> dict[str, Any]:
    """The parameter-group settings of optimizer ``name``: lr, the variant's fixed arguments,
    every sub-parameter (from ``options``, else its default) and the weight decay where
    ``options`` sets one."""
    spec = OPTIMIZERS[name]
    decay = {"weight_decay": options["weight_decay"]} if "weight_decay" in options else {}
    adam = {}
    if name in ADAM_FAMILY and any(k in options for k in ADAM_SETTINGS):
        given = {k: options.get(k, default) for k, default in ADAM_SETTINGS.items()}
        adam = {"betas": (given["beta1"], given["beta2"]), "eps": given["eps"]}
    return {"lr": lr, **dict(spec.fixed), **decay, **adam, **settings(spec.params, options)}


def clip_gradients(params: Iterable[torch.Tensor], options: Mapping[str, float]) -> None:
    """Scale the gradients of ``params`` down to the norm ``options["grad_clip"]``, if set
    (``torch.nn.utils.clip_grad_norm_``)."""
    import torch

    if "grad_clip" in options:
        torch.nn.utils.clip_grad_norm_(list(params), options["grad_clip"])


def build_optimizer(
    name: str, params: Iterable[torch.Tensor], lr: float, options: Mapping[str, float]
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
