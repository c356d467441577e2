"""Trials stacked as channels: a network of standard layers applied one after another (an
``nn.Sequential``, or a module whose ``forward`` calls its layers in a chain) run for every row
of stacked parameters as one ordinary network, without ``vmap``.

``vmap`` of ``functional_call`` runs a stack's rows as one program, but its lowering of
convolution and batch norm takes extra passes over the activations (each row's scale and
shift applied apart, the batch dimension moved around). Here the rows of a stack are ``K``
copies of the same network on the same batch, so they are laid out as one wider network:

- while no layer has parameters, the rows share the batch's tensor (``shared``);
- a convolution's output keeps the rows side by side as channels, ``[B, K*C, L...]``
  (``spatial``, 1-d to 3-d): the first convolution is one convolution with ``K*C`` filters
  over the shared input, the next ones grouped convolutions with ``K`` groups (times their
  own); batch norm is one ``batch_norm`` over the ``K*C`` channels, its running statistics
  updated in place in each row's buffers; pooling and activations act per channel as they
  are;
- after ``Flatten``, and from a ``Linear`` on, the rows are the first dimension,
  ``[K, B, F]`` (``rows``): a ``Linear`` is one batched matrix product (``baddbmm``), a
  ``BatchNorm1d`` one ``batch_norm`` over ``K*F`` features;
- ``Dropout`` draws one mask in a row's shape and multiplies every row by it: the draw a row
  makes on its own, which ``vmap(randomness="same")`` makes too.

The chain is read from ``torch.fx.symbolic_trace``: every step must be a layer below, or
``torch.flatten(x, s)``, ``x.flatten(s)`` (``s >= 1``), ``torch.relu``, ``F.relu`` or ``x.relu()`` of the
step before. Every row computes
what it computes alone, in another order of float operations: float64 agrees to rounding,
float32 within the tolerance of the batched tests. A network with any other step (or a layer
option this does not follow) is not lowered (``lowering`` returns None) and runs under
``vmap``.
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
_POOLS = (nn.MaxPool1d, nn.AvgPool1d, nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d,
          nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
          nn.MaxPool3d, nn.AvgPool3d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool3d)
_CONVS = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d}
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass
class _Flow:
    """The activations of ``rows`` rows in a ``layout``."""

    value: torch.Tensor
    layout: Layout
    rows: int

    def spatial(self) -> torch.Tensor:
        """As ``[B, K*C, L...]`` (a shared batch repeated for every row)."""
        if self.layout == "shared":
            b, c, *rest = self.value.shape
            return self.value.unsqueeze(1).expand(b, self.rows, c, *rest).reshape(
                b, self.rows * c, *rest)
        if self.layout != "spatial":
            raise _NotLowered("a convolution, pool or norm of channels after Flatten or Linear")
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
    """The chain of layers of a module (``lowering``) for stacked tensors."""

    def __init__(self, layers: list[tuple[str, nn.Module]]) -> None:
        self.layers = layers

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
    """A ``StackedNet`` of ``module``, or None where it is not a chain of the layers this
    follows (or cannot be traced)."""
    import torch.fx

    try:
        graph = torch.fx.symbolic_trace(module).graph
        return StackedNet(_chain(module, list(graph.nodes)))
    except Exception:  # noqa: BLE001 -- tracing fails in many ways: vmap then
        return None


_FUNCTIONS = {torch.relu: nn.ReLU, F.relu: nn.ReLU}


def _chain(module: nn.Module, nodes: list[torch.fx.Node]) -> list[tuple[str, nn.Module]]:
    """The layers of a traced chain, each with the prefix of its tensors' names;
    ``_NotLowered`` where the graph is not one input through one layer after another."""
    if len(nodes) < 2 or nodes[0].op != "placeholder" or nodes[-1].op != "output":
        raise _NotLowered("not one input and one output")
    layers: list[tuple[str, nn.Module]] = []
    before = nodes[0]
    for node in nodes[1:-1]:
        if node.args[:1] != (before,) or node.kwargs not in ({}, {"inplace": False}):
            raise _NotLowered("not a chain")
        if node.op == "call_module":
            layer = module.get_submodule(str(node.target))
            _check(layer)
            layers.append((f"{node.target}.", layer))
        elif node.op == "call_function" and node.target in _FUNCTIONS and len(node.args) == 1:
            layers.append(("", _FUNCTIONS[node.target]()))
        elif (node.target in (torch.flatten, "flatten") and len(node.args) == 2
              and isinstance(node.args[1], int) and node.args[1] >= 1):
            layers.append(("", nn.Flatten(node.args[1])))  # torch.flatten(x, s), x.flatten(s)
        elif node.op == "call_method" and node.target == "relu" and len(node.args) == 1:
            layers.append(("", nn.ReLU()))
        else:
            raise _NotLowered(f"the step {node.op} {node.target}")
        before = node
    if nodes[-1].args != (before,):
        raise _NotLowered("not a chain")
    return layers


def _check(layer: nn.Module) -> None:
    if type(layer) in _CONVS:
        if layer.padding_mode != "zeros" or isinstance(layer.padding, str):
            raise _NotLowered("a convolution's padding mode")
    elif isinstance(layer, _NORMS):
        if layer.track_running_stats and layer.momentum is None:
            raise _NotLowered("a cumulative BatchNorm")
    elif isinstance(layer, nn.Flatten):
        if layer.start_dim < 1 or layer.end_dim != -1:
            raise _NotLowered("a Flatten of other dimensions")
    elif isinstance(layer, _POOLS):
        if getattr(layer, "return_indices", False):
            raise _NotLowered("a pool returning indices")
    elif type(layer) not in (*_ELEMENTWISE, nn.Dropout, nn.Linear):
        raise _NotLowered(type(layer).__name__)


def _apply(layer: nn.Module, prefix: str, tensors: dict[str, torch.Tensor], flow: _Flow,
           training: bool) -> _Flow:
    if type(layer) in _CONVS:
        return _conv(layer, prefix, tensors, flow)
    if isinstance(layer, nn.BatchNorm1d) and flow.layout != "spatial" and flow.value.dim() == (
            2 if flow.layout == "shared" else 3):  # features: [B, F]
        return _batch_norm_features(layer, prefix, tensors, flow, training)
    if isinstance(layer, _NORMS):  # channels: [B, C, L...]
        return _Flow(_batch_norm(layer, prefix, tensors, flow.spatial(), training),
                     "spatial", flow.rows)
    if isinstance(layer, nn.Linear):
        return _linear(prefix, tensors, flow)
    if isinstance(layer, nn.Flatten):  # from start_dim on, within a row
        start = layer.start_dim
        if flow.layout == "spatial" and start == 1:
            return _Flow(flow.by_rows().flatten(2), "rows", flow.rows)
        return _Flow(flow.value.flatten(start + (flow.layout == "rows")), flow.layout,
                     flow.rows)
    if isinstance(layer, nn.Dropout):
        return _dropout(layer, flow, training)
    if isinstance(layer, _POOLS) and flow.layout == "rows":
        raise _NotLowered("a pool after Flatten or Linear")
    return _Flow(layer(_own(layer, flow)), flow.layout, flow.rows)  # per element or channel


def _own(layer: nn.Module, flow: _Flow) -> torch.Tensor:
    """The activations for ``layer`` to take: a copy of the shared batch where it works in
    place (the batch is the data's own tensor)."""
    if flow.layout == "shared" and getattr(layer, "inplace", False):
        return flow.value.clone()
    return flow.value


def _conv(layer: nn.Conv1d | nn.Conv2d | nn.Conv3d, prefix: str,
          tensors: dict[str, torch.Tensor], flow: _Flow) -> _Flow:
    weight = tensors[prefix + "weight"]
    rows = flow.rows
    bias = tensors.get(prefix + "bias")
    merged = weight.reshape(rows * weight.shape[1], *weight.shape[2:])
    groups = layer.groups if flow.layout == "shared" else rows * layer.groups
    x = flow.value if flow.layout == "shared" else flow.spatial()
    out = _CONVS[type(layer)](x, merged, None if bias is None else bias.reshape(-1), layer.stride,
                   layer.padding, layer.dilation, groups)
    return _Flow(out, "spatial", rows)


def _batch_norm(layer: nn.modules.batchnorm._BatchNorm, prefix: str,
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


def _batch_norm_features(layer: nn.BatchNorm1d, prefix: str,
                         tensors: dict[str, torch.Tensor], flow: _Flow,
                         training: bool) -> _Flow:
    """``layer`` over the features of ``[B, F]`` rows, as ``K*F`` features."""
    x = flow.by_rows()  # [K, B, F]
    rows, batch, features = x.shape
    side = x.transpose(0, 1).reshape(batch, rows * features)
    out = _batch_norm(layer, prefix, tensors, side, training)
    return _Flow(out.reshape(batch, rows, features).transpose(0, 1), "rows", rows)


def _linear(prefix: str, tensors: dict[str, torch.Tensor], flow: _Flow) -> _Flow:
    if flow.layout == "spatial":
        raise _NotLowered("a Linear of a convolution's channels")
    weight, bias = tensors[prefix + "weight"], tensors.get(prefix + "bias")  # [K, O, F]
    x = flow.by_rows()
    if x.dim() != 3:
        raise _NotLowered("a Linear of several feature dimensions")
    out = (torch.bmm(x, weight.transpose(1, 2)) if bias is None
           else torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2)))
    return _Flow(out, "rows", flow.rows)


def _dropout(layer: nn.Dropout, flow: _Flow, training: bool) -> _Flow:
    if not training or layer.p == 0:
        return flow
    if flow.layout == "shared":
        return _Flow(layer(_own(layer, flow)), "shared", flow.rows)
    x = flow.value
    if flow.layout == "spatial":  # a row's shape: [B, C, L...]
        b, kc, *rest = x.shape
        mask = F.dropout(x.new_ones(b, kc // flow.rows, *rest), layer.p, True)
        out = (x.reshape(b, flow.rows, kc // flow.rows, *rest) * mask.unsqueeze(1)
               ).reshape(x.shape)
        return _Flow(out, "spatial", flow.rows)
    mask = F.dropout(x.new_ones(x.shape[1:]), layer.p, True)
    return _Flow(x * mask, "rows", flow.rows)
