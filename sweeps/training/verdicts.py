"""Verdicts: why a run went the way it did, from its per-epoch statistics alone.

Each rule is a small pure function of the statistics and the thresholds that returns a
``Verdict`` or None; ``judge`` applies them in order and falls back to healthy:

- ``diverged``: a non-finite loss or gradient, or a final loss ``diverge_factor`` times the
  first;
- ``stalled``: the parameters barely move and neither does the loss (a far too small lr);
- ``unstable``: the loss rises beyond what the batches' own noise explains (a too large lr);
- ``flat``: the loss stays near its starting level, or at chance, while the parameters move
  or a layer is blind or dead: no learning rate fixes that;
- ``memorizing``: the training loss falls, the validation loss never does (data or labels);
- ``overfitting``: the validation loss falls, then gives much of it back as training goes on;
- ``slow``: the loss fell little, or the parameters crawl;
- ``healthy``: none of these.

``NOT_THE_LR`` names the verdicts whose cause is not the learning rate. Nothing here imports
torch. On the seed case (SGD at lr 0.01 on ``rebalance``) ``judge(result.history)`` is::

    Verdict(name='stalled', reason='parameters move 4.8e-09 of their size per step
            (update ratio); try ~2e+05x larger lr')

Noise. A mini-batch run's epoch loss is the mean of its steps' losses: ``EpochStats.loss_std``
is their spread and ``loss_noise`` the standard error of that mean. A change between epochs
counts only beyond ``noise_z`` standard errors of the epochs compared (3: a rise that the
batches' noise alone makes about once in 700 epochs). The first loss is one batch's, before the
first step: its noise is one batch's spread, epoch 0's, capped at ``start_noise`` of the loss
(epoch 0's spread also holds its own descent or blow-up). A full-batch run has no noise: its
rules are the exact ones.

Layers. Where the statistics have each tensor's mean |grad| (``EpochStats.tensors``),
``layer_faults`` reads them over the last third of the run, against the largest tensor's:
none at all (dead units, a frozen or detached layer), orders of magnitude smaller (a blind
layer: the input scale, the initialisation; it is named even under Adam, whose normalised
steps still move it), shrinking layer by layer (vanishing gradients), a bias that only a
normalisation after it cancels (harmless), and a gradient that explodes (its size and
growth). The reason names the tensors, and ``Verdict.tensors`` lists the dead, blind and
vanishing ones with the ones that stall while others move (``stalled_tensors``). The inputs
of a small MLP scaled by 1e-6, trained with Adam (``tests.sweeps.diagnostics.faults``)::

    flat: the loss stays at chance (1.39, ln 4 = 1.39: a uniform guess over 4 classes): a
    layer gets no useful gradient, which no learning rate fixes; 0.weight gets a mean |grad|
    of 2.0e-08, under 0.001 of the largest (6.5e-02 in 2.bias): nearly blind to the loss,
    though an adaptive optimizer's normalised steps still move it; check the input scale (it
    is the first layer), its initialisation, saturated or dead units below it
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from sweeps.training.stats import EpochStats

__all__ = ["NOT_THE_LR", "RULES", "VERDICTS", "LayerFault", "Thresholds", "Verdict", "judge",
           "layer_faults", "ratio_factor", "ratio_rule", "stalled_tensors"]

VERDICTS = ("stalled", "slow", "flat", "healthy", "overfitting", "memorizing", "unstable",
            "diverged")
NOT_THE_LR = ("flat", "memorizing", "overfitting")  # no learning rate is the cure for these


@dataclass(frozen=True)
class Thresholds:
    """When each verdict applies. Ratios are ``update_ratio`` values (SPEC section 5)."""

    target_ratio: float = 1e-3  # update ratio a suggested lr aims at (|delta theta| / |theta|)
    stalled_ratio: float = 1e-6  # stalled: median update ratio below this ...
    stalled_change: float = 1e-3  # ... and |relative loss change| over the run below this
    slow_ratio: float = 1e-4  # slow: median update ratio below this ...
    slow_converged: float = 0.99  # ... unless the loss fell by at least this fraction
    slow_improvement: float = 0.1  # slow, whatever the ratio: the loss fell by less than this
    diverge_factor: float = 1e3  # diverged: final loss above this many times the initial loss
    rise_tolerance: float = 0.01  # unstable: final loss above initial * (1 + this)
    oscillation: float = 0.3  # unstable: the loss went up in more than this fraction of epochs
    rise_noise: float = 1e-6  # a rise counts only above this fraction of |initial loss|
    noise_z: float = 3.0  # ... and above this many standard errors of the batches' noise
    start_noise: float = 0.1  # the first loss's noise: epoch 0's spread, at most this part of it
    giveback: float = 0.25  # unstable (mini-batch): the loss climbs back this part of its fall
    recover: float = 0.2  # ... not above its start if it later falls this part below the start
    flat_fall: float = 0.15  # flat: the loss fell less than this fraction of its start, or ...
    chance_tolerance: float = 0.01  # ... a layer is dead or blind and it sits this near ln C
    max_classes: int = 20  # the largest C that chance is looked for at
    memorize: float = 0.1  # memorizing: validation gained less than this part of training's gain
    overfit: float = 0.25  # overfitting: validation gave back more than this part of its gain
    blind_grad: float = 1e-3  # a tensor's mean |grad| below this part of the largest's: blind
    dead_grad: float = 1e-15  # ... below this part (all of the last third): no gradient at all
    explode_growth: float = 1e3  # exploding: mean |grad| grew by this factor in the run, or ...
    explode_ratio: float = 10.0  # ... started at this many times the parameters' mean |theta|

    def __post_init__(self) -> None:
        for name in ("target_ratio", "stalled_ratio", "slow_ratio", "diverge_factor", "noise_z",
                     "blind_grad", "dead_grad", "explode_growth", "explode_ratio"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0 but got {value!r}.")
        for name in ("stalled_change", "slow_converged", "slow_improvement", "rise_tolerance",
                     "oscillation", "rise_noise", "start_noise", "giveback", "recover",
                     "flat_fall", "chance_tolerance", "memorize", "overfit"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0 but got {value!r}.")
        if not (isinstance(self.max_classes, int) and self.max_classes >= 2):
            raise ValueError(f"max_classes must be an integer >= 2 but got "
                             f"{self.max_classes!r}.")


@dataclass(frozen=True)
class Verdict:
    name: str  # one of VERDICTS
    reason: str  # one line a person understands
    tensors: tuple[str, ...] = ()  # parameter tensors the reason names: stalled or faulty


@dataclass(frozen=True)
class LayerFault:
    """What the per-tensor gradients of a run say is wrong, and its likely causes."""

    kind: str  # dead, blind, vanishing, cancelled or exploding
    tensors: tuple[str, ...]  # the tensors it names (none: the whole network)
    reason: str  # what it looks like and its likely causes, one clause
    structural: bool  # the network cannot learn through these tensors at any learning rate


def ratio_factor(update_ratio: float, target_ratio: float = 1e-3) -> float:
    """How many times larger the lr should be for the update ratio to reach ``target_ratio``.

    For SGD-like optimizers the update ratio is proportional to the lr; for adaptive ones it
    is roughly lr / |theta|, so the same factor is a first-order rule for both.
    Infinite when the parameters do not move at all.
    """
    return target_ratio / update_ratio if update_ratio > 0 else math.inf


def ratio_rule(lr: float, update_ratio: float, target_ratio: float = 1e-3) -> float:
    """The update-ratio rule: the lr at which ``update_ratio`` (seen at ``lr``) hits the target."""
    return lr * ratio_factor(update_ratio, target_ratio)


def judge(
    stats: EpochStats, *, failed: str | None = None, thresholds: Thresholds = Thresholds()
) -> Verdict:
    """The verdict on a run from its per-epoch statistics.

    ``failed`` is the failure reason of a run that ended with a non-finite loss or gradient
    (``TrainResult.failure``); such a run is diverged whatever its statistics.
    """
    if failed is None and len(stats) == 0:
        raise ValueError("no epochs to judge: the statistics are empty and the run did not fail.")
    for rule in RULES:
        verdict = rule(stats, failed, thresholds)
        if verdict is not None:
            break
    else:
        verdict = healthy(stats, thresholds)
    faults = layer_faults(stats, thresholds)
    if verdict.name == "diverged":  # a smaller lr comes first; of the layers, only an explosion
        return with_faults(verdict, [f for f in faults if f.kind == "exploding"])
    return with_faults(stalled_tensors(verdict, stats, thresholds), faults)


# -- the rules, in the order judge applies them ---------------------------------------------

def diverged(stats: EpochStats, failed: str | None, t: Thresholds) -> Verdict | None:
    """A non-finite loss or gradient, or a final loss ``diverge_factor`` times the initial."""
    if failed is not None:
        return Verdict("diverged", f"the run failed: {failed}; try a smaller lr")
    bad = stats.first_nonfinite()
    if bad is not None:
        return Verdict("diverged", f"non-finite {bad[1]} at epoch {bad[0]}; try a smaller lr")
    first, last = _ends(stats)
    if abs(last) > t.diverge_factor * abs(first):
        return Verdict("diverged", f"the loss grew {abs(last) / max(abs(first), 1e-300):.1e}x "
                                   f"({first:.3g} -> {last:.3g}); try a smaller lr")
    return None


def stalled(stats: EpochStats, failed: str | None, t: Thresholds) -> Verdict | None:
    """The parameters barely move and neither does the loss (beyond the first batch's noise),
    and no layer is dead or blind (a larger lr would not move those)."""
    ratio = _median_ratio(stats)
    first, last = _ends(stats)
    still = abs(last - first) < max(t.stalled_change * abs(first),
                                    t.noise_z * _start_noise(stats, t))
    if not (ratio < t.stalled_ratio and still):
        return None
    if any(f.structural for f in layer_faults(stats, t)):
        return None
    if ratio == 0:
        return Verdict("stalled", "parameters do not move at all (update ratio 0); "
                                  "check that the loss depends on them")
    return Verdict("stalled", f"parameters move {ratio:.1e} of their size per step "
                              f"(update ratio); {_advice(ratio, t)}")


def unstable(stats: EpochStats, failed: str | None, t: Thresholds) -> Verdict | None:
    """The loss ends higher than it started, goes up in many epochs, or (mini-batch) climbs
    back much of its fall; each rise beyond the batches' noise."""
    first, last = _ends(stats)
    if last - first > max(t.rise_tolerance * abs(first), t.noise_z * _start_noise(stats, t)):
        rise = (last - first) / max(abs(first), 1e-300)
        return Verdict("unstable", f"the loss rose {rise:.1%} over the run "
                                   f"({first:.3g} -> {last:.3g}); try a smaller lr")
    ups = _rise_fraction(stats, t)
    if ups > t.oscillation:
        beyond = " beyond the batches' noise" if stats.loss_std is not None else ""
        return Verdict("unstable", f"the loss went up in {ups:.0%} of epochs{beyond}; "
                                   "try a smaller lr or less momentum")
    climb = _climb(stats, t)
    if climb is None:
        return None
    epoch, low, since, share = climb
    value = float(stats.loss[epoch - stats.start])
    if since is None:
        return Verdict("unstable", f"the loss rose above its start ({low:.3g} -> {value:.3g} "
                                   f"at epoch {epoch}) beyond the batches' noise and never fell "
                                   "far below it again; try a smaller lr or less momentum")
    return Verdict("unstable", f"the loss climbed back from {low:.3g} (epoch {since}) to "
                               f"{value:.3g} at epoch {epoch}, {share:.0%} of its fall so far, "
                               "beyond the batches' noise; try a smaller lr or less momentum")


def flat(stats: EpochStats, failed: str | None, t: Thresholds) -> Verdict | None:
    """The loss stays near its starting level (within ``flat_fall``: a classifier's loss at
    initialisation is a little above chance, ln C, and falls to it by learning the classes'
    frequencies alone), or a layer is dead or blind and the loss sits at chance, and in either
    case it does not descend in the last third, while the parameters move or a layer is dead
    or blind: the lr is not the problem."""
    if len(stats) < 3:
        return None
    first = stats.first_loss
    thirds = np.array_split(np.arange(len(stats)), 3)
    level = float(np.mean(stats.loss[thirds[2]]))
    structural = any(f.structural for f in layer_faults(stats, t))
    classes = _chance(level, t)
    fell = first - float(np.min(stats.loss))
    at_start = fell < max(t.flat_fall * abs(first), t.noise_z * _start_noise(stats, t))
    if not (at_start or (structural and classes)):
        return None
    noise = stats.loss_noise
    descent = float(np.mean(stats.loss[thirds[1]]) - level)
    spread = math.sqrt(sum(float(np.sum(noise[k] ** 2)) / len(k) ** 2 for k in thirds[1:]))
    if descent > max(t.noise_z * spread, t.stalled_change * abs(first)):
        return None  # still going down: slow, not flat
    ratio = _median_ratio(stats)
    if ratio < t.slow_ratio and not structural:
        return None  # the parameters hardly move: that is the lr's doing (slow)
    where = (f"at chance ({level:.3g}, ln {classes} = {math.log(classes):.3g}: a uniform "
             f"guess over {classes} classes)" if classes
             else f"at its starting level ({first:.3g} -> {level:.3g})")
    if structural:
        return Verdict("flat", f"the loss stays {where}: a layer gets no useful gradient, "
                               "which no learning rate fixes")
    return Verdict("flat", f"the loss stays {where} while the parameters move ({ratio:.1e} of "
                           "their size per step): no learning rate fixes that; check that the "
                           "inputs reach the model (their scale, not all zeros), that the "
                           "labels match their inputs and that the output feeds the loss")


def memorizing(stats: EpochStats, failed: str | None, t: Thresholds) -> Verdict | None:
    """The training loss falls; the validation loss never gets far below where training
    started (a model of the initial parameters scores about the first loss)."""
    val = _validation_loss(stats)
    if val is None:
        return None
    first, last = _ends(stats)
    gain = first - float(np.min(stats.loss))
    if gain < t.slow_improvement * abs(first) or first - float(np.min(val)) >= t.memorize * gain:
        return None
    return Verdict("memorizing", f"the training loss fell {gain / abs(first):.0%} ({first:.3g} "
                                 f"-> {last:.3g}) but the validation loss stays near or above "
                                 f"that start (best {np.min(val):.3g}, last {val[-1]:.3g}"
                                 f"{_scores(stats)}): the model fits noise, nothing that holds "
                                 "on new data; check that the labels match their inputs and "
                                 "that both splits go through the same pipeline")


def overfitting(stats: EpochStats, failed: str | None, t: Thresholds) -> Verdict | None:
    """The validation loss fell, then gave back more than ``overfit`` of that fall while the
    gap to the training loss grew."""
    val = _validation_loss(stats)
    if val is None:
        return None
    first, last = _ends(stats)
    if first - float(np.min(stats.loss)) < t.slow_improvement * abs(first):
        return None
    best = int(np.argmin(val))
    gain, back = first - float(val[best]), float(val[-1] - val[best])
    if not (gain > 0 and back > t.overfit * gain):
        return None
    if val[-1] - last <= val[best] - stats.loss[best]:
        return None  # the gap did not grow: both got worse (unstable, not overfitting)
    epoch = stats.start + best
    return Verdict("overfitting", f"the validation loss rose from its best {val[best]:.3g} "
                                  f"(epoch {epoch}) to {val[-1]:.3g}, {back / gain:.0%} of its "
                                  f"fall, while the training loss went to {last:.3g}: the gap "
                                  f"grows; stop near epoch {epoch} or regularise (weight decay, "
                                  "dropout, augmentation, more data)")


def slow(stats: EpochStats, failed: str | None, t: Thresholds) -> Verdict | None:
    """The loss fell little, or the parameters crawl and the loss is far from converged, over
    at least 3 epochs (a trial pruned after one or two has not shown its pace)."""
    if len(stats) < 3:
        return None
    ratio = _median_ratio(stats)
    improvement = _improvement(stats)
    crawling = ratio < t.slow_ratio and improvement < t.slow_converged
    if not (crawling or improvement < t.slow_improvement):
        return None
    fell = (f"the loss fell only {improvement:.1%}" if improvement > 0
            else "the loss did not fall")
    return Verdict("slow", f"{fell} in {len(stats)} epochs; parameters move {ratio:.1e} of "
                           f"their size per step (update ratio); {_advice(ratio, t)}")


def healthy(stats: EpochStats, t: Thresholds) -> Verdict:
    """None of the other rules applies."""
    first, last = _ends(stats)
    improvement = _improvement(stats)
    fell = (f"{first / last:.1e}x" if improvement > 0.99 and last > 0
            else f"{improvement:.1%}")
    return Verdict("healthy", f"the loss fell {fell} ({first:.3g} -> {last:.3g}); "
                              f"median update ratio {_median_ratio(stats):.1e}")


Rule = Callable[[EpochStats, str | None, Thresholds], Verdict | None]
RULES: tuple[Rule, ...] = (diverged, stalled, unstable, flat, memorizing, overfitting, slow)


# -- the tensors ----------------------------------------------------------------------------

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
    ratios = {name: _median(np.where(values == np.inf, np.finfo(float).max, values))
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
        low, high = _median(grads[slowest]), _median(grads[fastest])
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
    level = {n: _median(v[-tail:]) for n, v in grads.items()}
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


# -- helpers --------------------------------------------------------------------------------

def _ends(stats: EpochStats) -> tuple[float, float]:
    """The first and the last loss of the run."""
    return stats.first_loss, float(stats.loss[-1])


def _improvement(stats: EpochStats) -> float:
    """Fraction by which the loss fell over the run (negative if it rose; 1.0 if both are 0)."""
    first, last = _ends(stats)
    if first == 0:
        return 1.0 if last == 0 else -math.inf
    return (first - last) / abs(first)


def _median_ratio(stats: EpochStats) -> float:
    return _median(stats.update_ratio)


def _median(values: np.ndarray) -> float:
    """Median of the finite values (0.0 if none is finite)."""
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if len(finite) else 0.0


def _start_noise(stats: EpochStats, t: Thresholds) -> float:
    """The noise of the first loss (one batch's): epoch 0's spread of step losses, at most
    ``start_noise`` of the loss; 0 where the spread is not recorded (full-batch)."""
    if stats.loss_std is None or not len(stats) or not math.isfinite(stats.loss_std[0]):
        return 0.0
    return min(float(stats.loss_std[0]), t.start_noise * abs(stats.first_loss))


def _rise_fraction(stats: EpochStats, t: Thresholds) -> float:
    """Fraction of epoch-to-epoch steps where the loss rose by more than ``rise_noise`` of
    |initial| and by more than ``noise_z`` standard errors of the two epochs' means."""
    if len(stats) < 2:
        return 0.0
    noise = stats.loss_noise
    bar = np.maximum(t.rise_noise * abs(stats.first_loss),
                     t.noise_z * np.sqrt(noise[1:] ** 2 + noise[:-1] ** 2))
    return float(np.mean(np.diff(stats.loss) > bar))


def _climb(stats: EpochStats, t: Thresholds) -> tuple[int, float, int | None, float] | None:
    """The largest climb of a mini-batch run's loss above its lowest level so far, where it
    exceeds ``giveback`` of the fall to that level, ``rise_tolerance`` of the first loss and
    ``noise_z`` times the noise of the lowest level (an epoch's, or the first batch's):
    (epoch, lowest level, its epoch or None for the start, share of the fall). A rise above
    the start is forgiven where the loss later fell ``recover`` below it. None for a
    full-batch run: its ups and downs are the oscillation rule's."""
    if stats.loss_std is None:
        return None
    first, noise = stats.first_loss, stats.loss_noise
    recovered = float(np.min(stats.loss)) < first - t.recover * abs(first)
    low, low_at, low_noise = first, None, _start_noise(stats, t)
    found: tuple[int, float, int | None, float] | None = None
    worst = 0.0
    for i, value in enumerate(stats.loss):
        climb, fall = float(value) - low, first - low
        forgiven = low_at is None and recovered  # a blow-up at the start, then it learned
        if not forgiven and climb > worst and climb > max(
                t.giveback * fall, t.rise_tolerance * abs(first), t.noise_z * low_noise):
            share = climb / fall if fall > 0 else math.inf
            found, worst = (stats.start + i, low, low_at, share), climb
        if value < low:
            low, low_at, low_noise = float(value), stats.start + i, math.sqrt(2) * noise[i]
    return found


def _chance(level: float, t: Thresholds) -> int | None:
    """C where ``level`` is within ``chance_tolerance`` of ln C, the cross-entropy of a
    uniform guess over C classes (2 <= C <= ``max_classes``); else None."""
    if not (math.isfinite(level) and 0 < level < math.log(t.max_classes + 0.5)):
        return None
    classes = round(math.exp(level))
    return classes if classes >= 2 and abs(level - math.log(classes)) <= t.chance_tolerance \
        else None


def _validation_loss(stats: EpochStats) -> np.ndarray | None:
    """The validation loss of each epoch, where every one is finite."""
    val = stats.extra.get("val_loss")
    return val if val is not None and len(val) and np.isfinite(val).all() else None


def _scores(stats: EpochStats) -> str:
    """", val_accuracy 0.18 -> 0.24" for each further validation metric."""
    return "".join(f", {name} {values[0]:.3g} -> {values[-1]:.3g}"
                   for name, values in stats.extra.items()
                   if name.startswith("val_") and name != "val_loss" and len(values))


def _advice(ratio: float, t: Thresholds) -> str:
    factor = ratio_factor(ratio, t.target_ratio)
    if factor > 1:
        return f"try ~{factor:.0e}x larger lr"
    return "the lr is already large: try another optimizer, a schedule or more epochs"
