"""What the per-tensor statistics say: which parameter tensors stall while others move
(``stalled_tensors``) and what the gradients say, layer by layer (``layer_faults``).

Where the statistics have each tensor's mean |grad| (``EpochStats.tensors``), ``layer_faults``
reads them over the last third of the run, against the largest tensor's: none at all (dead
units, a frozen or detached layer), orders of magnitude smaller (a blind layer: the input
scale, the initialisation; it is named even under Adam, whose normalised steps still move it),
shrinking layer by layer (vanishing gradients), a bias that only a normalisation after it
cancels (harmless), and a gradient that explodes (its size and growth). The reason names the
tensors, and ``Verdict.tensors`` lists the dead, blind and vanishing ones with the ones that
stall while others move. The inputs of a small MLP scaled by 1e-6, trained with Adam
(``tests.sweeps.diagnostics.faults``), are judged::

    flat: the loss stays at chance (1.39, ln 4 = 1.39: a uniform guess over 4 classes): a
    layer gets no useful gradient, which no learning rate fixes; 0.weight gets a mean |grad|
    of 2.0e-08, under 0.001 of the largest (6.5e-02 in 2.bias): nearly blind to the loss,
    though an adaptive optimizer's normalised steps still move it; check the input scale (it
    is the first layer), its initialisation, saturated or dead units below it
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sweeps.training.stats import EpochStats
from sweeps.training.verdicts.readings import finite_median
from sweeps.training.verdicts.thresholds import Thresholds
from sweeps.training.verdicts.verdict import Verdict

__all__ = ["LayerFault", "layer_faults", "stalled_tensors", "with_faults"]


@dataclass(frozen=True)
class LayerFault:
    """What the per-tensor gradients of a run say is wrong, and its likely causes."""

    kind: str  # dead, blind, vanishing, cancelled or exploding
    tensors: tuple[str, ...]  # the tensors it names (none: the whole network)
    reason: str  # what it looks like and its likely causes, one clause
    structural: bool  # the network cannot learn through these tensors at any learning rate


def stalled_tensors(verdict: Verdict, stats: EpochStats, t: Thresholds = Thresholds(),
                    *, named: int = 3) -> Verdict:
    """``verdict`` with the parameter tensors that stall while others move.

    A tensor stalls when its median update ratio is below ``stalled_ratio`` (an infinite
    ratio, a step away from all zeros, counts as moving); none is named when all or none do
    (the overall ratio tells that). The reason names the ``named`` slowest, compares them
    with the fastest tensor, and says whether the slowest one's gradient is tiny next to the
    fastest one's (then no single lr fixes both: look at what scales the gradient) or its
    values are large for their updates.
    """
    ratios = {name: finite_median(np.where(values == np.inf, np.finfo(float).max, values))
              for name, values in stats.per_tensor("update_ratio").items()}
    stuck = sorted((n for n, r in ratios.items() if r < t.stalled_ratio), key=ratios.__getitem__)
    if not stuck or len(stuck) == len(ratios):
        return verdict
    finite = [n for n, r in ratios.items() if r < np.finfo(float).max] or list(ratios)
    fastest = max(finite, key=ratios.__getitem__)
    slowest = stuck[0]
    entries = [f"{slowest} moves {ratios[slowest]:.1e} of its size per step"
               if ratios[slowest] > 0 else f"{slowest} does not move at all"]
    entries += [f"{n} {ratios[n]:.1e}" if ratios[n] > 0 else f"{n} not at all"
                for n in stuck[1:named]]
    more = f" and {len(stuck) - named} more" if len(stuck) > named else ""
    reason = (f"{verdict.reason}; {len(stuck)} of {len(ratios)} tensors stalled: "
              f"{', '.join(entries)}{more} while {fastest} moves {ratios[fastest]:.1e}")
    grads = stats.per_tensor("grad_abs_mean")
    if slowest in grads and fastest in grads:
        low, high = finite_median(grads[slowest]), finite_median(grads[fastest])
        hint = ("check what scales that gradient, e.g. inputs, initialisation, dead units, "
                "a bias before a normalisation" if low < 1e-3 * high
                else "its values are large for their updates; check its initialisation")
        reason += f" ({slowest}: mean |grad| {low:.1e} against {high:.1e}; {hint})"
    return Verdict(verdict.name, reason, tuple(stuck))


def layer_faults(stats: EpochStats, t: Thresholds = Thresholds()) -> tuple[LayerFault, ...]:
    """What the gradients say, layer by layer: an explosion (from the overall mean |grad|),
    then, from each tensor's mean |grad| over the last third of the run against the largest
    tensor's, tensors with none at all, blind or vanishing ones, and biases a normalisation
    cancels."""
    faults = [f for f in (_exploding(stats, t),) if f is not None]
    grads = stats.per_tensor("grad_abs_mean")
    if len(grads) < 2 or not len(stats):
        return tuple(faults)
    tail = max(1, len(stats) // 3)
    level = {n: finite_median(v[-tail:]) for n, v in grads.items()}
    top = max(level, key=level.__getitem__)
    if not level[top] > 0:
        return tuple(faults)
    peak = {n: float(np.nanmax(np.abs(v[-tail:]), initial=0.0)) for n, v in grads.items()}
    zero = [n for n in grads if peak[n] <= t.dead_grad * level[top]]
    blind = [n for n in grads if n not in zero and level[n] < t.blind_grad * level[top]]
    weak = set(zero) | set(blind)
    cancelled = [n for n in weak if n.endswith("bias") and _partner(n, "weight") in grads
                 and _partner(n, "weight") not in weak]
    zero = [n for n in zero if n not in cancelled]
    blind = [n for n in blind if n not in cancelled]
    names = list(grads)
    if zero:
        faults.append(_dead(zero, names, grads, stats, t.dead_grad * level[top]))
    if blind:
        faults.append(_vanishing(blind, names, level, t)
                      or _blind(blind, names, level, top, t))
    if cancelled:
        faults.append(LayerFault(
            "cancelled", tuple(n for n in names if n in cancelled),
            f"{_listed([n for n in names if n in cancelled])} {_get(cancelled)} next to no "
            f"gradient while {'its weight does' if len(cancelled) == 1 else 'their weights do'}"
            f": {'a bias' if len(cancelled) == 1 else 'biases'} before a normalisation, which "
            f"cancels {'it' if len(cancelled) == 1 else 'them'} (harmless; bias=False drops "
            f"{'it' if len(cancelled) == 1 else 'them'})", structural=False))
    return tuple(faults)


def with_faults(verdict: Verdict, faults: Sequence[LayerFault]) -> Verdict:
    """``verdict`` with each fault's reason added and the tensors of the structural ones named
    (blind tensors that the stalled-tensor part already names, with the same advice, are not
    repeated)."""
    reason, named = verdict.reason, list(verdict.tensors)
    for fault in faults:
        if fault.kind == "blind" and set(fault.tensors) <= set(named):
            continue
        reason += f"; {fault.reason}"
        if fault.structural:
            named += [n for n in fault.tensors if n not in named]
    return Verdict(verdict.name, reason, tuple(named))


def _dead(zero: list[str], names: list[str], grads: dict[str, np.ndarray],
          stats: EpochStats, none: float) -> LayerFault:
    """Tensors without any gradient (at most ``none``): dead units below a layer whose bias
    still learns, else a frozen or detached layer."""
    ordered = [n for n in names if n in zero]
    since = _since(ordered, grads, stats, none)
    fed = [n for n in ordered if n.endswith("weight") and _partner(n, "bias") in grads
           and _partner(n, "bias") not in zero]
    if fed:
        weight = fed[0]
        below = ordered[: ordered.index(weight)]
        feeding = ([n for n in below if n.rsplit(".", 1)[0] == below[-1].rsplit(".", 1)[0]]
                   if below else [])
        reason = (f"no gradient at all in {_listed(ordered)}{since}: {weight}'s inputs are zero "
                  f"for every example while {_partner(weight, 'bias')} still learns, so the "
                  "units feeding it are dead (ReLUs off for every input); check the "
                  "initialisation and bias of "
                  f"{_listed(feeding) if feeding else 'the layer below'} and the input scale")
    else:
        reason = (f"no gradient at all in {_listed(ordered)}{since} while the rest learns: a "
                  "frozen or detached layer (.detach(), torch.no_grad() or requires_grad=False "
                  "in forward), or dead units after it")
    return LayerFault("dead", tuple(ordered), reason, structural=True)


def _vanishing(blind: list[str], names: list[str], level: dict[str, float],
               t: Thresholds) -> LayerFault | None:
    """Blind tensors in a network whose weights' gradients shrink layer by layer toward the
    input, by more than ``blind_grad`` from the last weight to the first."""
    weights = [n for n in names if n.endswith("weight")] or names
    values = np.array([level[n] for n in weights])
    if len(weights) < 3 or not 0 < values[0] < t.blind_grad * values[-1]:
        return None
    if np.mean(np.diff(values) >= 0) < 0.8:
        return None
    ordered = [n for n in names if n in blind]
    return LayerFault(
        "vanishing", tuple(ordered),
        f"the gradient shrinks layer by layer toward the input, from {values[-1]:.1e} "
        f"({weights[-1]}) to {values[0]:.1e} ({weights[0]}): vanishing gradients; "
        f"{_listed(ordered)} {_get(ordered)} under {t.blind_grad:g} of the largest; use "
        "ReLU-like activations instead of saturating ones (sigmoid, tanh), normalisation, "
        "residual connections or an initialisation scaled for depth", structural=True)


def _blind(blind: list[str], names: list[str], level: dict[str, float], top: str,
           t: Thresholds) -> LayerFault:
    """Tensors whose gradient is orders of magnitude below the largest one's."""
    ordered = [n for n in names if n in blind]
    one = len(ordered) == 1
    it, its = ("it", "its") if one else ("them", "their")
    where = ("the input scale (it is the first layer)" if ordered[0] == names[0]
             else f"the scale of {its} inputs")
    return LayerFault(
        "blind", tuple(ordered),
        f"{_listed(ordered)} {_get(ordered)} a mean |grad| of {'' if one else 'at most '}"
        f"{max(level[n] for n in ordered):.1e}, under {t.blind_grad:g} of the largest "
        f"({level[top]:.1e} in {top}): nearly blind to the loss, though an adaptive "
        f"optimizer's normalised steps still move {it}; check {where}, {its} initialisation, "
        f"saturated or dead units below {it}", structural=True)


def _exploding(stats: EpochStats, t: Thresholds) -> LayerFault | None:
    """The mean |grad| grew ``explode_growth`` times within the run, or started at
    ``explode_ratio`` times the parameters' mean |theta|."""
    grad = stats.grad_abs_mean
    if not len(grad) or not (math.isfinite(grad[0]) and grad[0] > 0):
        return None
    finite = np.where(np.isfinite(grad), grad, 0.0)
    peak = int(np.argmax(finite))
    growth = finite[peak] / grad[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = float(stats.update_abs_mean[0] / stats.update_ratio[0])
    if growth >= t.explode_growth:
        what = (f"mean |grad| grew {growth:.0e}x in {peak} epochs ({grad[0]:.2g} -> "
                f"{finite[peak]:.2g} at epoch {stats.start + peak})")
    elif math.isfinite(theta) and theta > 0 and grad[0] >= t.explode_ratio * theta:
        peak = 0
        what = (f"mean |grad| {grad[0]:.2g} at epoch {stats.start}, {grad[0] / theta:.0f} "
                f"times the parameters' mean size ({theta:.2g})")
    else:
        return None
    tensors = {n: float(v[peak]) for n, v in stats.per_tensor("grad_abs_mean").items()
               if math.isfinite(v[peak])}
    largest = (f", largest in {max(tensors, key=tensors.__getitem__)}" if tensors else "")
    return LayerFault("exploding", (), f"exploding gradients: {what}{largest}; check the "
                                       "initialisation scale, add normalisation or clip the "
                                       "gradient norm", structural=False)


def _since(tensors: list[str], grads: dict[str, np.ndarray], stats: EpochStats,
           none: float) -> str:
    """" since epoch k" where the tensors had a gradient (above ``none``) before epoch k."""
    alive = np.any([np.abs(grads[n]) > none for n in tensors], axis=0)
    if not alive.any():
        return ""
    return f" since epoch {stats.start + int(np.flatnonzero(alive)[-1]) + 1}"


def _partner(name: str, kind: str) -> str:
    """The ``weight`` or ``bias`` of the module that owns tensor ``name``."""
    return f"{name.rsplit('.', 1)[0]}.{kind}" if "." in name else kind


def _get(names: Sequence[str]) -> str:
    return "gets" if len(names) == 1 else "get"


def _listed(names: Sequence[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return f"{shown} and {len(names) - limit} more" if len(names) > limit else shown
