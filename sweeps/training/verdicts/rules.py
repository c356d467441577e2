"""The whole-run rules, in the order ``judge`` applies them. Each is a small pure function of the
statistics, the failure (if any) and the thresholds that returns a ``Verdict`` or None:

- ``diverged``: a non-finite loss or gradient, or a final loss ``diverge_factor`` times the
  first;
- ``stalled``: the parameters barely move and neither does the loss (a far too small lr);
- ``unstable``: the loss rises beyond what the batches' own noise explains (a too large lr);
- ``flat``: the loss stays near its starting level, or at chance, while the parameters move
  or a layer is blind or dead: no learning rate fixes that;
- ``memorizing``: the training loss falls, the validation loss never does (data or labels);
- ``overfitting``: the validation loss falls, then gives much of it back as training goes on;
- ``slow``: the loss fell little, or the parameters crawl;
- ``healthy``: none of these (not a rule: ``judge``'s fallback).

Noise. A mini-batch run's epoch loss is the mean of its steps' losses: ``EpochStats.loss_std``
is their spread and ``loss_noise`` the standard error of that mean. A change between epochs
counts only beyond ``noise_z`` standard errors of the epochs compared (3: a rise that the
batches' noise alone makes about once in 700 epochs). The first loss is one batch's, before the
first step: its noise is one batch's spread, epoch 0's, capped at ``start_noise`` of the loss
(epoch 0's spread also holds its own descent or blow-up). A full-batch run has no noise: its
rules are the exact ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from sweeps.training.stats import EpochStats
from sweeps.training.verdicts.ratio_rule import lr_advice
from sweeps.training.verdicts.readings import ends, fall_fraction, median_ratio, start_noise
from sweeps.training.verdicts.tensors import layer_faults
from sweeps.training.verdicts.thresholds import Thresholds
from sweeps.training.verdicts.verdict import Verdict

__all__ = ["RULES", "Rule", "diverged", "flat", "healthy", "memorizing", "overfitting", "slow",
           "stalled", "unstable"]


def diverged(stats: EpochStats, failed: str | None, t: Thresholds) -> Verdict | None:
    """A non-finite loss or gradient, or a final loss ``diverge_factor`` times the initial."""
    if failed is not None:
        return Verdict("diverged", f"the run failed: {failed}; try a smaller lr")
    bad = stats.first_nonfinite()
    if bad is not None:
        return Verdict("diverged", f"non-finite {bad[1]} at epoch {bad[0]}; try a smaller lr")
    first, last = ends(stats)
    if abs(last) > t.diverge_factor * abs(first):
        return Verdict("diverged", f"the loss grew {abs(last) / max(abs(first), 1e-300):.1e}x "
                                   f"({first:.3g} -> {last:.3g}); try a smaller lr")
    return None


def stalled(stats: EpochStats, failed: str | None, t: Thresholds) -> Verdict | None:
    """The parameters barely move and neither does the loss (beyond the first batch's noise),
    and no layer is dead or blind (a larger lr would not move those)."""
    ratio = median_ratio(stats)
    first, last = ends(stats)
    still = abs(last - first) < max(t.stalled_change * abs(first),
                                    t.noise_z * start_noise(stats, t))
    if not (ratio < t.stalled_ratio and still):
        return None
    if any(f.structural for f in layer_faults(stats, t)):
        return None
    if ratio == 0:
        return Verdict("stalled", "parameters do not move at all (update ratio 0); "
                                  "check that the loss depends on them")
    return Verdict("stalled", f"parameters move {ratio:.1e} of their size per step "
                              f"(update ratio); {lr_advice(ratio, t)}")


def unstable(stats: EpochStats, failed: str | None, t: Thresholds) -> Verdict | None:
    """The loss ends higher than it started, goes up in many epochs, or (mini-batch) climbs
    back much of its fall; each rise beyond the batches' noise."""
    first, last = ends(stats)
    if last - first > max(t.rise_tolerance * abs(first), t.noise_z * start_noise(stats, t)):
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
    at_start = fell < max(t.flat_fall * abs(first), t.noise_z * start_noise(stats, t))
    if not (at_start or (structural and classes)):
        return None
    noise = stats.loss_noise
    descent = float(np.mean(stats.loss[thirds[1]]) - level)
    spread = math.sqrt(sum(float(np.sum(noise[k] ** 2)) / len(k) ** 2 for k in thirds[1:]))
    if descent > max(t.noise_z * spread, t.stalled_change * abs(first)):
        return None  # still going down: slow, not flat
    ratio = median_ratio(stats)
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
    first, last = ends(stats)
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
    first, last = ends(stats)
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
    ratio = median_ratio(stats)
    improvement = fall_fraction(stats)
    crawling = ratio < t.slow_ratio and improvement < t.slow_converged
    if not (crawling or improvement < t.slow_improvement):
        return None
    fell = (f"the loss fell only {improvement:.1%}" if improvement > 0
            else "the loss did not fall")
    return Verdict("slow", f"{fell} in {len(stats)} epochs; parameters move {ratio:.1e} of "
                           f"their size per step (update ratio); {lr_advice(ratio, t)}")


def healthy(stats: EpochStats, t: Thresholds) -> Verdict:
    """None of the other rules applies."""
    first, last = ends(stats)
    improvement = fall_fraction(stats)
    fell = (f"{first / last:.1e}x" if improvement > 0.99 and last > 0
            else f"{improvement:.1%}")
    return Verdict("healthy", f"the loss fell {fell} ({first:.3g} -> {last:.3g}); "
                              f"median update ratio {median_ratio(stats):.1e}")


Rule = Callable[[EpochStats, str | None, Thresholds], Verdict | None]
RULES: tuple[Rule, ...] = (diverged, stalled, unstable, flat, memorizing, overfitting, slow)


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
    low, low_at, low_noise = first, None, start_noise(stats, t)
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
