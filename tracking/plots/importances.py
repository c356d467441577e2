"""Optuna's parameter importances as horizontal bars, the learning rate counted as one
parameter however many optimizers the search space names it for."""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

from tracking.plots.figures import figure, note

if TYPE_CHECKING:
    import optuna
    from matplotlib.figure import Figure

__all__ = ["param_importances"]


def param_importances(study: optuna.Study,
                      evaluator: optuna.importance.BaseImportanceEvaluator | None = None
                      ) -> Figure:
    """Optuna's parameter importances for the final loss, as horizontal bars.

    The search space names each optimizer's learning rate ``lr_<optimizer>``, which would split
    the learning rate into one bar per optimizer, each seen by a few trials only; they are
    merged into one ``lr`` first. ``evaluator`` defaults to Optuna's (PED-ANOVA in Optuna 5;
    fANOVA ranks only the parameters every completed trial has). With fewer than two completed
    trials the figure says so instead of ranking.
    """
    from optuna.importance import get_param_importances

    fig, ax = figure(size=(8.0, 4.0))
    ax.set_xlabel("importance for the final loss (fraction of the total)")
    ax.set_title(f"Parameter importances of study {study.study_name!r}")
    merged = _merged_lr_study(study)
    n = len(merged.trials)
    if n < 2:
        note(ax, f"parameter importances need at least 2 completed trials (this study has {n})")
        return fig
    try:
        with warnings.catch_warnings():  # "may be inaccurate" for small regimes: see the label
            warnings.simplefilter("ignore", UserWarning)
            importances = get_param_importances(merged, evaluator=evaluator)
    except (ValueError, RuntimeError) as exc:  # e.g. nothing varies between the trials
        note(ax, f"Optuna could not rank the parameters: {exc}")
        return fig
    if not importances:
        note(ax, "no parameter was sampled in every completed trial")
        return fig
    names = list(importances)[::-1]  # most important on top
    scores = [float(importances[k]) for k in names]
    bars = ax.barh(names, scores, color="C0")
    ax.bar_label(bars, labels=[f"{s:.2f}" for s in scores], padding=3, fontsize="small")
    ax.set_xlim(0, max(1.0, max(scores) * 1.15))
    ax.set_ylabel("parameter")
    ax.set_xlabel(f"importance for the final loss (fraction of the total; {n} completed trials)")
    return fig


def _merged_lr_study(study: optuna.Study) -> optuna.Study:
    """The completed trials in an in-memory study where every ``lr_<optimizer>`` is ``lr``."""
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.values and math.isfinite(t.values[0])]
    lows, highs = [], []
    for t in complete:
        for name, dist in t.distributions.items():
            if _is_lr(name, dist):
                lows.append(dist.low)  # type: ignore[attr-defined]  # a FloatDistribution
                highs.append(dist.high)  # type: ignore[attr-defined]
    merged_dist = FloatDistribution(min(lows), max(highs), log=True) if lows else None
    trials = []
    for t in complete:
        params, dists = {}, {}
        for name, value in t.params.items():
            dist = t.distributions[name]
            if merged_dist is not None and _is_lr(name, dist):
                name, dist = "lr", merged_dist
            params[name], dists[name] = value, dist
        trials.append(create_trial(value=t.values[0], params=params, distributions=dists))
    storage = optuna.storages.InMemoryStorage()
    merged = optuna.create_study(storage=storage, direction=study.directions[0],
                                 study_name=study.study_name)
    merged.add_trials(trials)
    return merged


def _is_lr(name: str, dist: object) -> bool:
    from optuna.distributions import FloatDistribution

    return (name.startswith("lr_") and isinstance(dist, FloatDistribution)
            and bool(dist.log))
