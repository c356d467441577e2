"""Verdicts: why a run went the way it did, from its per-epoch statistics alone.

Each rule is a small pure function of the statistics and the thresholds that returns a
``Verdict`` or None; ``judge`` applies them in order (diverged, stalled, unstable, slow) and
falls back to healthy. Nothing here imports torch. On the seed case (SGD at lr 0.01 on
``rebalance``) ``judge(result.history)`` is::

    Verdict(name='stalled', reason='parameters move 4.8e-09 of their size per step
            (update ratio); try ~2e+05x larger lr')

The verdict names what happened to the run as a whole. Where the statistics have per-tensor
update ratios (``EpochStats.tensors``) and some tensors stall while others move, the reason
goes on to name them (``stalled_tensors``), and ``Verdict.tensors`` lists them::

    healthy: the loss fell 30.2% (1.19 -> 0.831); median update ratio 1.3e-02; 1 of 4
    tensors stalled: first.weight moves 8.0e-14 of its size per step while last.weight
    moves 2.4e-02 (first.weight: mean |grad| 3.6e-14 against 1.5e-02; check what scales
    that gradient, e.g. inputs, initialisation, dead units, a bias before a normalisation)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sweeps.training.stats import EpochStats

__all__ = ["RULES", "VERDICTS", "Thresholds", "Verdict", "judge", "ratio_factor", "ratio_rule",
           "stalled_tensors"]

VERDICTS = ("stalled", "slow", "healthy", "unstable", "diverged")


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

    def __post_init__(self) -> None:
        for name in ("target_ratio", "stalled_ratio", "slow_ratio", "diverge_factor"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0 but got {value!r}.")
        for name in ("stalled_change", "slow_converged", "slow_improvement", "rise_tolerance",
                     "oscillation", "rise_noise"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0 but got {value!r}.")


@dataclass(frozen=True)
class Verdict:
    name: str  # one of VERDICTS
    reason: str  # one line a person understands
    tensors: tuple[str, ...] = ()  # parameter tensors that stalled while others moved


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
    if verdict.name == "diverged":  # a smaller lr comes first; per-tensor ratios can wait
        return verdict
    return stalled_tensors(verdict, stats, thresholds)


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
    """The parameters barely move and neither does the loss."""
    ratio = _median_ratio(stats)
    change = abs(_improvement(stats))
    if not (ratio < t.stalled_ratio and change < t.stalled_change):
        return None
    if ratio == 0:
        return Verdict("stalled", "parameters do not move at all (update ratio 0); "
                                  "check that the loss depends on them")
    return Verdict("stalled", f"parameters move {ratio:.1e} of their size per step "
                              f"(update ratio); {_advice(ratio, t)}")


def unstable(stats: EpochStats, failed: str | None, t: Thresholds) -> Verdict | None:
    """The loss ends higher than it started, or goes up in many epochs."""
    first, last = _ends(stats)
    if last > first + t.rise_tolerance * abs(first):
        rise = (last - first) / max(abs(first), 1e-300)
        return Verdict("unstable", f"the loss rose {rise:.1%} over the run "
                                   f"({first:.3g} -> {last:.3g}); try a smaller lr")
    ups = _rise_fraction(stats, t.rise_noise)
    if ups > t.oscillation:
        return Verdict("unstable", f"the loss went up in {ups:.0%} of epochs; "
                                   "try a smaller lr or less momentum")
    return None


def slow(stats: EpochStats, failed: str | None, t: Thresholds) -> Verdict | None:
    """The loss fell little, or the parameters crawl and the loss is far from converged."""
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
RULES: tuple[Rule, ...] = (diverged, stalled, unstable, slow)


def stalled_tensors(verdict: Verdict, stats: EpochStats, t: Thresholds = Thresholds(),
                    *, named: int = 3) -> Verdict:
    """``verdict`` with the parameter tensors that stall while others move.

    A tensor stalls when its median update ratio is below ``stalled_ratio``; none is named
    when all or none do (the overall ratio tells that). The reason names the ``named``
    slowest, compares them with the fastest tensor, and says whether the slowest one's
    gradient is tiny next to the fastest one's (then no single lr fixes both: look at what
    scales the gradient) or its values are large for their updates.
    """
    ratios = {name: _median(values)
              for name, values in stats.per_tensor("update_ratio").items()}
    stuck = sorted((n for n, r in ratios.items() if r < t.stalled_ratio), key=ratios.__getitem__)
    if not stuck or len(stuck) == len(ratios):
        return verdict
    fastest = max(ratios, key=ratios.__getitem__)
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




def _rise_fraction(stats: EpochStats, noise: float) -> float:
    """Fraction of epoch-to-epoch steps where the loss rose by more than noise * |initial|."""
    if len(stats) < 2:
        return 0.0
    steps = np.diff(stats.loss)
    return float(np.mean(steps > noise * abs(stats.first_loss)))


def _advice(ratio: float, t: Thresholds) -> str:
    factor = ratio_factor(ratio, t.target_ratio)
    if factor > 1:
        return f"try ~{factor:.0e}x larger lr"
    return "the lr is already large: try another optimizer, a schedule or more epochs"
