"""Trials stacked as channels: an ``nn.Sequential`` of standard layers run for every row of
stacked parameters as one ordinary network, without ``vmap``.

``vmap`` of ``functional_call`` runs a stack's rows as one program, but its lowering of
convolution and batch norm takes extra passes over the activations (each row's scale and
shift applied apart, the batch dimension moved around). Here the rows of a stack are ``K``
copies of the same network on the same batch, so they are laid out as one wider network:

- while no layer has parameters, the rows share the batch's tensor (``shared``);
- a convolution's output keeps the rows side by side as channels, ``[B, K*C, H, W]``
  (``spatial``): the first convolution is one convolution with ``K*C`` filters over the
  shared input, the next ones grouped convolutions with ``K`` groups (times their own);
  batch norm is one ``batch_norm`` over the ``K*C`` channels, its running statistics updated
  in place in each row's buffers; pooling and activations act per channel as they are;
- after ``Flatten``, and from a ``Linear`` on, the rows are the first dimension,
  ``[K, B, F]`` (``rows``): a ``Linear`` is one batched matrix product (``baddbmm``), a
  ``BatchNorm1d`` one ``batch_norm`` over ``K*F`` features;
- ``Dropout`` draws one mask in a row's shape and multiplies every row by it: the draw a row
  makes on its own, which ``vmap(randomness="same")`` makes too.

Every row computes what it computes alone, in another order of float operations: float64
agrees to rounding, float32 within the tolerance of the batched tests. A network with any
other layer (or a layer option this does not follow) is not lowered (``lowering`` returns
None) and runs under ``vmap``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["StackedNet", "lowering"]

Layout = Literal["shared", "spatial", "rows"]
_ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid,
                nn.Identity)
_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


@dataclass
class _Flow:
    """The activations of ``rows`` rows in a ``layout``."""

    value: torch.Tensor
    layout: Layout
    rows: int

    def spatial(self) -> torch.Tensor:
        """As ``[B, K*C, H, W]`` (a shared batch repeated for every row)."""
        if self.layout == "shared":
            b, c, *rest = self.value.shape
            return self.value.unsqueeze(1).expand(b, self.rows, c, *rest).reshape(
                b, self.rows * c, *rest)
        if self.layout != "spatial":
            raise _NotLowered("a 4-d layer after Flatten or Linear")
        return self.value

    def by_rows(self) -> torch.Tensor:
        """As ``[K, B, F...]``."""
        if self.layout == "shared":
            return self.value.unsqueeze(0).expand(self.rows, *self.value.shape)
        if self.layout == "spatial":
            b, kc, *rest = self.value.shape
            return self.value.reshape(b, self.rows, kc // self.rows, *rest).transpose(0, 1)
        return self.value


class _NotLowered(Exception):
    """The network leaves what ``StackedNet`` follows."""


class StackedNet:
    """``module`` (an ``nn.Sequential``, ``lowering`` checked) for stacked tensors."""

    def __init__(self, module: nn.Sequential) -> None:
        self.layers = _layers(module, "")

    def __call__(self, tensors: dict[str, torch.Tensor], inputs: torch.Tensor,
                 training: bool) -> torch.Tensor:
        """The outputs of every row of ``tensors`` (parameters and buffers by the module's
        names, stacked along a new first dimension) for the same ``inputs``: ``[K, B, ...]``.
        In training mode batch norm updates the rows' running statistics in place and
        dropout draws from the default generator."""
        rows = len(next(iter(tensors.values())))
        flow = _Flow(inputs, "shared", rows)
        for prefix, layer in self.layers:
            flow = _apply(layer, prefix, tensors, flow, training)
        return flow.by_rows()


def lowering(module: nn.Module) -> StackedNet | None:
    """A ``StackedNet`` of ``module``, or None where it has a layer this does not follow."""
    if not isinstance(module, nn.Sequential):
        return None
    try:
        return StackedNet(module)
    except _NotLowered:
        return None


def _layers(module: nn.Sequential, prefix: str) -> list[tuple[str, nn.Module]]:
    """The leaf layers of ``module`` (nested ``Sequential``s opened), each with the prefix of
    its tensors' names; ``_NotLowered`` at the first layer not followed."""
    out: list[tuple[str, nn.Module]] = []
    for name, layer in module.named_children():
        if isinstance(layer, nn.Sequential):
            out.extend(_layers(layer, f"{prefix}{name}."))
            continue
        _check(layer)
        out.append((f"{prefix}{name}.", layer))
    return out


def _check(layer: nn.Module) -> None:
    if isinstance(layer, nn.Conv2d):
        if layer.padding_mode != "zeros" or isinstance(layer.padding, str):
            raise _NotLowered("a Conv2d padding mode")
    elif isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
        if layer.track_running_stats and layer.momentum is None:
            raise _NotLowered("a cumulative BatchNorm")
    elif isinstance(layer, nn.Flatten):
        if (layer.start_dim, layer.end_dim) != (1, -1):
            raise _NotLowered("a Flatten of other dimensions")
    elif isinstance(layer, _POOLS):
        if getattr(layer, "return_indices", False):
            raise _NotLowered("a pool returning indices")
    elif type(layer) not in (*_ELEMENTWISE, nn.Dropout, nn.Linear):
        raise _NotLowered(type(layer).__name__)


def _apply(layer: nn.Module, prefix: str, tensors: dict[str, torch.Tensor], flow: _Flow,
           training: bool) -> _Flow:
    if isinstance(layer, nn.Conv2d):
        return _conv(layer, prefix, tensors, flow)
    if isinstance(layer, nn.BatchNorm2d):
        return _Flow(_batch_norm(layer, prefix, tensors, flow.spatial(), training),
                     "spatial", flow.rows)
    if isinstance(layer, nn.BatchNorm1d):
        return _batch_norm_1d(layer, prefix, tensors, flow, training)
    if isinstance(layer, nn.Linear):
        return _linear(prefix, tensors, flow)
    if isinstance(layer, nn.Flatten):
        if flow.layout == "spatial":
            return _Flow(flow.by_rows().flatten(2), "rows", flow.rows)
        return _Flow(flow.value.flatten(1 if flow.layout == "shared" else 2), flow.layout,
                     flow.rows)
    if isinstance(layer, nn.Dropout):
        return _dropout(layer, flow, training)
    if isinstance(layer, _POOLS) and flow.layout == "rows":
        raise _NotLowered("a 2-d pool after Flatten or Linear")
    return _Flow(layer(flow.value), flow.layout, flow.rows)  # per element or per channel


def _conv(layer: nn.Conv2d, prefix: str, tensors: dict[str, torch.Tensor],
          flow: _Flow) -> _Flow:
    weight = tensors[prefix + "weight"]
    rows = flow.rows
    bias = tensors.get(prefix + "bias")
    merged = weight.reshape(rows * weight.shape[1], *weight.shape[2:])
    groups = layer.groups if flow.layout == "shared" else rows * layer.groups
    x = flow.value if flow.layout == "shared" else flow.spatial()
    out = F.conv2d(x, merged, None if bias is None else bias.reshape(-1), layer.stride,
                   layer.padding, layer.dilation, groups)
    return _Flow(out, "spatial", rows)


def _batch_norm(layer: nn.BatchNorm1d | nn.BatchNorm2d, prefix: str,
                tensors: dict[str, torch.Tensor], x: torch.Tensor,
                training: bool) -> torch.Tensor:
    """``layer`` over the ``K*C`` channels of ``x`` (dimension 1)."""
    mean, var = tensors.get(prefix + "running_mean"), tensors.get(prefix + "running_var")
    batch_stats = training or mean is None
    if training and mean is not None:
        tensors[prefix + "num_batches_tracked"].add_(1)
    weight, bias = tensors.get(prefix + "weight"), tensors.get(prefix + "bias")
    return F.batch_norm(x, _flat(mean), _flat(var), _flat(weight), _flat(bias), batch_stats,
                        layer.momentum or 0.0, layer.eps)


def _flat(t: torch.Tensor | None) -> torch.Tensor | None:
    """``t`` (``[K, C]``) as ``[K*C]``, a view (so that in-place updates reach the rows)."""
    return None if t is None else t.view(-1)


def _batch_norm_1d(layer: nn.BatchNorm1d, prefix: str, tensors: dict[str, torch.Tensor],
                   flow: _Flow, training: bool) -> _Flow:
    if flow.layout == "spatial" or flow.value.dim() != (2 if flow.layout == "shared" else 3):
        raise _NotLowered("a BatchNorm1d of a 3-d input")
    x = flow.by_rows()  # [K, B, F]
    rows, batch, features = x.shape
    side = x.transpose(0, 1).reshape(batch, rows * features)
    out = _batch_norm(layer, prefix, tensors, side, training)
    return _Flow(out.reshape(batch, rows, features).transpose(0, 1), "rows", rows)


def _linear(prefix: str, tensors: dict[str, torch.Tensor], flow: _Flow) -> _Flow:
    if flow.layout == "spatial":
        raise _NotLowered("a Linear of a 4-d input")
    weight, bias = tensors[prefix + "weight"], tensors.get(prefix + "bias")  # [K, O, F]
    x = flow.by_rows()
    if x.dim() != 3:
        raise _NotLowered("a Linear of a 3-d input")
    out = (torch.bmm(x, weight.transpose(1, 2)) if bias is None
           else torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2)))
    return _Flow(out, "rows", flow.rows)


def _dropout(layer: nn.Dropout, flow: _Flow, training: bool) -> _Flow:
    if not training or layer.p == 0:
        return flow
    if flow.layout == "shared":
        return _Flow(layer(flow.value), "shared", flow.rows)
    x = flow.value
    if flow.layout == "spatial":  # a row's shape: [B, C, H, W]
        b, kc, *rest = x.shape
        mask = F.dropout(x.new_ones(b, kc // flow.rows, *rest), layer.p, True)
        out = (x.reshape(b, flow.rows, kc // flow.rows, *rest) * mask.unsqueeze(1)
               ).reshape(x.shape)
        return _Flow(out, "spatial", flow.rows)
    mask = F.dropout(x.new_ones(x.shape[1:]), layer.p, True)
    return _Flow(x * mask, "rows", flow.rows)
