"""A sweep's plots as PNG files: loss and update-ratio curves, final loss against learning rate,
the optimisation history, the parameter importances, the trials in parallel coordinates
(``tracking.parallel_plot``), and the best trial's update ratio per
parameter tensor (for objectives of several tensors).

Every plotting function is pure: it takes typed data and returns a ``matplotlib.figure.Figure``
built without ``pyplot`` (no global figure state, no GUI backend); ``save`` writes it. At the
end of a sweep::

    curves = histories_by_run(client, top_run_ids(study, k=5))
    write_sweep_plots(study, curves, {"seed: sgd lr=1e-2": seed_history}, out_dir, frame,
                      tensors=next(iter(curves.items())))
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, Union

import numpy as np

from sweeps.training.verdicts import Thresholds
from tracking.parallel_plot import parallel_coordinates
from tracking.scales import spans_decades

if TYPE_CHECKING:
    import optuna
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from mlflow import MlflowClient

__all__ = ["FILES", "TENSOR_FILE", "Curve", "History", "histories_by_run",
           "histories_from_mlflow", "loss_curves", "loss_vs_lr", "optimization_history",
           "optimizer_colors", "param_importances", "save", "series", "tensor_histories",
           "tensor_series", "tensor_update_ratios", "top_run_ids", "trial_label",
           "update_ratio_curves", "write_sweep_plots"]

# File names written by ``write_sweep_plots``, in order.
FILES = ("loss_curves.png", "update_ratio.png", "loss_vs_lr.png", "optimization_history.png",
         "param_importances.png", "parallel_coordinates.png")
# ... and after them, where the best trial has per-tensor statistics:
TENSOR_FILE = "tensor_update_ratio.png"
STALLED_BELOW = Thresholds.stalled_ratio  # update ratios below this barely move the parameters
TARGET_RATIO = Thresholds.target_ratio  # a healthy update ratio, the usual rule of thumb
_TENSOR_STYLES = ("-", "--", ":", "-.")  # with 20 colours: 80 tensors told apart
PLOTTED = ("loss", "update_ratio")  # the per-epoch metrics the curve plots read
_SIZE = (9.0, 5.0)  # figure size in inches
_DPI = 120
_STATES = ("COMPLETE", "PRUNED", "FAIL")  # finished trial states drawn by loss_vs_lr
_MLFLOW_INF = np.finfo(np.float64).max  # how MLflow stores an infinite value


class Curve(NamedTuple):
    """One metric against the epoch."""

    epochs: np.ndarray
    values: np.ndarray


class HasEpochs(Protocol):
    """``EpochStats`` or anything with ``epochs`` and one array attribute per metric."""

    @property
    def epochs(self) -> np.ndarray: ...


# One run's history: EpochStats-like, {metric: Curve}, or (for one metric) an (epochs, values)
# pair.
History = Union[HasEpochs, Mapping[str, Curve], tuple[Any, Any]]


def series(history: History, metric: str) -> Curve:
    """``metric`` of ``history`` as float arrays."""
    if isinstance(history, Mapping):
        epochs, values = history[metric]
    elif isinstance(history, tuple):
        epochs, values = history
    else:
        pick = getattr(history, "metric", None)  # EpochStats: its extra metrics too
        epochs, values = history.epochs, pick(metric) if pick else getattr(history, metric)
    x = np.asarray(epochs, dtype=float)
    y = np.asarray(values, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"{metric}: {len(x)} epochs but {len(y)} values")
    return Curve(x, y)


def loss_curves(curves: Mapping[str, History],
                reference: Mapping[str, History] | None = None, metric: str = "loss") -> Figure:
    """The study's ``metric`` (the training loss by default) against epoch for each
    labelled trial, log y where every value is positive; ``reference`` dashed black."""
    fig, ax = _figure()
    drawn = _draw_curves(ax, curves, reference, metric)
    values = np.concatenate([c.values for c in drawn]) if drawn else np.empty(0)
    if len(values) and spans_decades(values[np.isfinite(values)]):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    title = "Training loss" if metric == "loss" else metric
    ax.set_title(f"{title} of the top trials")
    _legend_outside(ax)
    return fig


def update_ratio_curves(curves: Mapping[str, History],
                        reference: Mapping[str, History] | None = None, *,
                        stalled_below: float = STALLED_BELOW,
                        target: float = TARGET_RATIO) -> Figure:
    """Update ratio against epoch (log y), the stalled band shaded, the target as a line."""
    fig, ax = _figure()
    data = _draw_curves(ax, curves, reference, "update_ratio")
    _ratio_axes(ax, data, stalled_below, target)
    ax.set_title("Update ratio of the top trials")
    _legend_outside(ax)
    return fig


def tensor_series(history: History, metric: str = "update_ratio") -> dict[str, Curve]:
    """``metric`` of each parameter tensor of ``history`` (its ``<metric>/<tensor>``
    metrics), by tensor, in the order recorded; empty where it has none."""
    prefix = f"{metric}/"
    if isinstance(history, tuple):
        return {}
    names = history if isinstance(history, Mapping) else getattr(history, "extra", {})
    return {k[len(prefix):]: series(history, k) for k in names if k.startswith(prefix)}


def tensor_update_ratios(history: History, label: str = "", *,
                         stalled_below: float = STALLED_BELOW,
                         target: float = TARGET_RATIO) -> Figure:
    """Each parameter tensor's update ratio against epoch (log y), one line per tensor, the
    stalled band shaded and the target as a line: which tensors of one run (``label``, the
    best trial) move and which do not. A tensor whose median ratio is in the band is marked
    so in the legend."""
    curves = tensor_series(history, "update_ratio")
    columns = 1 + (len(curves) + 1) // 26  # legend columns: 26 entries fit the height
    fig, ax = _figure(size=(_SIZE[0] + 2.6 * (columns - 1), _SIZE[1]))
    for i, (tensor, curve) in enumerate(curves.items()):
        finite = curve.values[np.isfinite(curve.values)]
        median = float(np.median(finite)) if len(finite) else math.nan
        mark = (" (does not move)" if median == 0 else
                " (stalled)" if median < stalled_below else "")
        ax.plot(curve.epochs, curve.values, color=_tab20(i), lw=2.2 if mark else 1.4,
                ls=_TENSOR_STYLES[(i // 20) % len(_TENSOR_STYLES)], label=tensor + mark)
    if not curves:
        _note(ax, "no per-tensor statistics (one tensor, or turned off)")
        return fig
    _ratio_axes(ax, list(curves.values()), stalled_below, target)
    ax.set_title(f"Update ratio per parameter tensor{': ' + label if label else ''}")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small",
                  frameon=False, ncol=columns)
    return fig


def loss_vs_lr(frame: pd.DataFrame, order: Sequence[str] = (), metric: str = "loss") -> Figure:
    """Each trial's value of the study's ``metric`` against its learning rate (log x; log y
    where the values are positive and span decades), one colour per optimizer (``order``: see
    ``optimizer_colors``).

    ``frame`` has the columns optimizer, lr, value and state (``trials_frame``). Completed
    trials are filled circles, pruned ones hollow circles at the value where they stopped,
    failed ones crosses drawn above the highest value (they have none).
    """
    import pandas as pd
    from matplotlib.lines import Line2D

    fig, ax = _figure()
    rows = frame[frame["state"].isin(_STATES)].copy()
    rows["lr"] = pd.to_numeric(rows["lr"], errors="coerce")
    rows["value"] = pd.to_numeric(rows["value"], errors="coerce")
    rows = rows[np.isfinite(rows["lr"]) & (rows["lr"] > 0)]
    values = rows["value"][np.isfinite(rows["value"])].to_numpy()
    log_y = spans_decades(values)
    failed_y = _beyond(values, log_y)
    colors = optimizer_colors(rows["optimizer"].dropna().unique(), order)
    handles: list[Line2D] = []
    for name, color in colors.items():
        mine = rows[rows["optimizer"] == name]
        done = mine[(mine["state"] == "COMPLETE") & np.isfinite(mine["value"])]
        pruned = mine[(mine["state"] == "PRUNED") & np.isfinite(mine["value"])]
        failed = mine[mine["state"] == "FAIL"]
        ax.scatter(done["lr"], done["value"], color=color, s=36, zorder=3, label=name)
        ax.scatter(pruned["lr"], pruned["value"], facecolors="none", edgecolors=color,
                   s=36, zorder=3, label=f"_{name} pruned")
        ax.scatter(failed["lr"], np.full(len(failed), failed_y), marker="x", color=color,
                   s=40, zorder=3, label=f"_{name} failed")
        handles.append(Line2D([], [], ls="", marker="o", color=color, label=name))
    states = set(rows["state"])
    if "PRUNED" in states:
        handles.append(Line2D([], [], ls="", marker="o", markerfacecolor="none",
                              color="grey", label="pruned (value when stopped)"))
    if "FAIL" in states:
        handles.append(Line2D([], [], ls="", marker="x", color="grey",
                              label="failed (no value; drawn above the others)"))
    if rows.empty:
        _note(ax, "no finished trial yet")
    else:
        ax.set_xscale("log")
        if log_y:
            ax.set_yscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("final loss" if metric == "loss" else metric)
    ax.set_title(f"{'Final loss' if metric == 'loss' else metric} against learning rate")
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  fontsize="small", frameon=False)
    return fig


def optimization_history(study: optuna.Study, metric: str = "final loss") -> Figure:
    """Each completed trial's value (the study's ``metric``) against its number, with the
    best value so far."""
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    fig, ax = _figure()
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.value is not None and math.isfinite(t.value)]
    pruned = [t for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
              if t.intermediate_values]
    ax.set_xlabel("trial number")
    ax.set_ylabel(f"{metric} (objective value)")
    ax.set_title(f"Optimization history of study {study.study_name!r}")
    if not complete:
        _note(ax, "no completed trial yet")
        return fig
    numbers = np.array([t.number for t in complete], dtype=float)
    values = np.array([t.value for t in complete], dtype=float)
    maximize = study.direction == StudyDirection.MAXIMIZE
    best = np.maximum.accumulate(values) if maximize else np.minimum.accumulate(values)
    ax.scatter(numbers, values, color="C0", s=30, zorder=3, label="completed trial")
    if pruned:
        last = [(t.number, t.intermediate_values[max(t.intermediate_values)]) for t in pruned]
        last = [(n, v) for n, v in last if math.isfinite(v)]
        ax.scatter([n for n, _ in last], [v for _, v in last], facecolors="none",
                   edgecolors="grey", s=30, zorder=2, label="pruned (last reported value)")
    ax.step(numbers, best, where="post", color="C3", lw=1.8, label="best so far")
    if all(y > 0 for y in _offsets_y(ax)) and spans_decades(values):
        ax.set_yscale("log")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    return fig


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

    fig, ax = _figure(size=(8.0, 4.0))
    ax.set_xlabel("importance for the final loss (fraction of the total)")
    ax.set_title(f"Parameter importances of study {study.study_name!r}")
    merged = _merged_lr_study(study)
    n = len(merged.trials)
    if n < 2:
        _note(ax, f"parameter importances need at least 2 completed trials (this study has {n})")
        return fig
    try:
        with warnings.catch_warnings():  # "may be inaccurate" for small regimes: see the label
            warnings.simplefilter("ignore", UserWarning)
            importances = get_param_importances(merged, evaluator=evaluator)
    except (ValueError, RuntimeError) as exc:  # e.g. nothing varies between the trials
        _note(ax, f"Optuna could not rank the parameters: {exc}")
        return fig
    if not importances:
        _note(ax, "no parameter was sampled in every completed trial")
        return fig
    names = list(importances)[::-1]  # most important on top
    scores = [float(importances[k]) for k in names]
    bars = ax.barh(names, scores, color="C0")
    ax.bar_label(bars, labels=[f"{s:.2f}" for s in scores], padding=3, fontsize="small")
    ax.set_xlim(0, max(1.0, max(scores) * 1.15))
    ax.set_ylabel("parameter")
    ax.set_xlabel(f"importance for the final loss (fraction of the total; {n} completed trials)")
    return fig


def write_sweep_plots(study: optuna.Study, curves: Mapping[str, History],
                      reference: Mapping[str, History] | None, out_dir: str | Path,
                      frame: pd.DataFrame, order: Sequence[str] = (), *,
                      tensors: tuple[str, History] | None = None,
                      metric: str = "loss") -> list[Path]:
    """Write the six plots (``FILES``) into ``out_dir``, then ``TENSOR_FILE`` where
    ``tensors`` (label and history of the best trial) has per-tensor update ratios; return
    their paths in that order.

    ``curves`` and ``reference`` need both ``metric`` (the study's) and ``update_ratio``
    (``EpochStats``, or ``{metric: Curve}`` from ``histories_by_run``); ``frame`` is the
    study's trials, one row each (columns as ``loss_vs_lr`` reads them); ``order`` fixes the
    optimizers' colours.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = (
        loss_curves(curves, reference, metric),
        update_ratio_curves(curves, reference),
        loss_vs_lr(frame, order, metric),
        optimization_history(study, "final loss" if metric == "loss" else metric),
        param_importances(study),
        parallel_coordinates(frame, order, metric=metric,
                             maximize=study.direction.name == "MAXIMIZE"),
    )
    paths = [save(fig, out / name) for fig, name in zip(figures, FILES)]
    if tensors is not None and tensor_series(tensors[1]):
        paths.append(save(tensor_update_ratios(tensors[1], tensors[0]), out / TENSOR_FILE))
    return paths


def save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG (or the format the suffix names) and return the path."""
    target = Path(path)
    fig.savefig(target, dpi=_DPI)
    return target


def trial_label(number: int, hparams: Mapping[str, Any]) -> str:
    """``#7 adam lr=3.2e-3 cosine``: a trial as a legend entry."""
    lr = hparams.get("lr")
    text = f"#{number} {hparams.get('optimizer', '?')}"
    if lr is not None:
        text += f" lr={_sci(float(lr))}"
    scheduler = hparams.get("scheduler")
    if scheduler and scheduler != "none":
        text += f" {scheduler}"
    return text


def top_run_ids(study: optuna.Study, k: int = 5) -> dict[str, str]:
    """The ``k`` best completed trials, best first, as {``trial_label``: MLflow run id}."""
    from optuna.trial import TrialState

    if k < 1:
        raise ValueError(f"k must be at least 1 but got {k}.")
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.value is not None and math.isfinite(t.value)
                and "mlflow_run_id" in t.user_attrs]
    sign = -1.0 if study.direction.name == "MAXIMIZE" else 1.0
    complete.sort(key=lambda t: (sign * t.value, t.number))
    return {trial_label(t.number, t.user_attrs.get("hparams", {})): t.user_attrs["mlflow_run_id"]
            for t in complete[:k]}


def histories_from_mlflow(client: MlflowClient, run_ids: Mapping[str, str] | Iterable[str],
                          metric: str) -> dict[str, Curve]:
    """``metric`` of each run, by step. ``run_ids`` is {label: run id} or run ids (their own
    labels)."""
    labelled = dict(run_ids) if isinstance(run_ids, Mapping) else {r: r for r in run_ids}
    out: dict[str, Curve] = {}
    for label, run_id in labelled.items():
        points = client.get_metric_history(run_id, metric)
        by_step = {m.step: m.value for m in sorted(points, key=lambda m: (m.step, m.timestamp))}
        steps = np.array(sorted(by_step), dtype=float)
        values = np.array([by_step[s] for s in sorted(by_step)], dtype=float)
        values[np.abs(values) == _MLFLOW_INF] *= np.inf  # MLflow stores +-inf as +-max double
        out[label] = Curve(steps, values)
    return out


def histories_by_run(client: MlflowClient, run_ids: Mapping[str, str] | Iterable[str],
                     metrics: Sequence[str] = PLOTTED) -> dict[str, dict[str, Curve]]:
    """{label: {metric: Curve}} for ``write_sweep_plots``, read from MLflow."""
    labelled = dict(run_ids) if isinstance(run_ids, Mapping) else {r: r for r in run_ids}
    per_metric = {m: histories_from_mlflow(client, labelled, m) for m in metrics}
    return {label: {m: per_metric[m][label] for m in metrics} for label in labelled}


def tensor_histories(client: MlflowClient, run_id: str,
                     metric: str = "update_ratio") -> dict[str, Curve]:
    """The per-tensor ``metric`` of run ``run_id`` (``{"<metric>/<tensor>": Curve}``, as
    ``tensor_series`` reads them), read from MLflow; empty where it has none. MLflow keeps
    no order: the tensors come sorted with their numbers as numbers (``layers.2`` before
    ``layers.10``)."""
    names = sorted((k for k in client.get_run(run_id).data.metrics
                    if k.startswith(f"{metric}/")), key=_natural)
    return {name: histories_from_mlflow(client, [run_id], name)[run_id] for name in names}


def optimizer_colors(names: Iterable[str], order: Sequence[str] = ()) -> dict[str, str]:
    """A colour per optimizer: the ``i``-th name of ``order`` always gets colour ``i``, so
    with the same ``order`` (the tool's list of optimizers) every plot and study agree;
    names not in it follow, sorted."""
    known = list(order)
    wanted = set(names)
    ordered = [n for n in known if n in wanted] + sorted(wanted - set(known))
    slot = {n: i for i, n in enumerate(known)}
    extra = iter(range(len(known), len(known) + len(ordered)))
    return {n: f"C{(slot[n] if n in slot else next(extra)) % 10}" for n in ordered}


def _figure(size: tuple[float, float] = _SIZE) -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.add_subplot()


def _draw_curves(ax: Axes, curves: Mapping[str, History],
                 reference: Mapping[str, History] | None, metric: str) -> list[Curve]:
    """One line per curve (colour cycle), then the reference ones dashed black on top."""
    drawn = []
    for i, (label, history) in enumerate(curves.items()):
        curve = series(history, metric)
        ax.plot(curve.epochs, curve.values, color=f"C{i % 10}", lw=1.4, label=label)
        drawn.append(curve)
    for label, history in (reference or {}).items():
        curve = series(history, metric)
        ax.plot(curve.epochs, curve.values, color="black", ls="--", lw=1.6, zorder=4,
                label=label)
        drawn.append(curve)
    if not drawn:
        _note(ax, "no trial to draw")
    return drawn


def _ratio_axes(ax: Axes, drawn: Sequence[Curve], stalled_below: float, target: float) -> None:
    """Log y, the stalled band shaded below ``stalled_below``, the target as a dotted line,
    and limits that show them and every positive finite value drawn."""
    ax.set_yscale("log")
    values = np.concatenate([c.values for c in drawn]) if drawn else np.empty(0)
    values = values[np.isfinite(values) & (values > 0)]
    low = min(float(values.min()) if len(values) else stalled_below, stalled_below) / 10
    high = max(float(values.max()) if len(values) else target, target) * 10
    ax.axhspan(low, stalled_below, color="tab:red", alpha=0.12, lw=0,
               label=f"stalled (< {_sci(stalled_below, 1)})")
    ax.axhline(target, color="dimgrey", ls=":", lw=1.5, label=f"target (~{_sci(target, 1)})")
    ax.set_ylim(low, high)
    ax.set_xlabel("epoch")
    ax.set_ylabel("update ratio (|Δθ| / |θ| per step)")


def _natural(name: str) -> list[tuple[int, int | str]]:
    """Sort key: the digit runs of ``name`` as numbers."""
    return [(0, int(part)) if part.isdigit() else (1, part)
            for part in re.split(r"(\d+)", name) if part]


def _tab20(i: int) -> tuple[float, ...]:
    from matplotlib import colormaps

    return tuple(colormaps["tab20"](i % 20))


def _legend_outside(ax: Axes) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small",
                  frameon=False)


def _beyond(values: np.ndarray, log: bool) -> float:
    """A y beyond the largest of ``values`` (where the failed trials are drawn)."""
    if not len(values):
        return 1.0
    high, low = float(values.max()), float(values.min())
    return high * 3 if log else high + 0.1 * max(high - low, abs(high), 1e-12)


def _note(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", wrap=True,
            color="dimgrey")
    ax.set_xticks([])
    ax.set_yticks([])


def _offsets_y(ax: Axes) -> list[float]:
    return [float(y) for c in ax.collections for y in np.asarray(c.get_offsets())[:, 1]]


def _sci(x: float, digits: int = 2) -> str:
    """``3.2e-3``, ``0.27``, ``20``: ``digits`` significant digits, short exponents."""
    if x == 0 or not math.isfinite(x) or 1e-2 <= abs(x) < 1e3:
        return f"{x:.{digits}g}"
    mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _merged_lr_study(study: optuna.Study) -> optuna.Study:
    """The completed trials in an in-memory study where every ``lr_<optimizer>`` is ``lr``."""
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.value is not None and math.isfinite(t.value)]
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
        trials.append(create_trial(value=t.value, params=params, distributions=dists))
    storage = optuna.storages.InMemoryStorage()
    merged = optuna.create_study(storage=storage, direction=study.direction,
                                 study_name=study.study_name)
    merged.add_trials(trials)
    return merged


def _is_lr(name: str, dist: object) -> bool:
    from optuna.distributions import FloatDistribution

    return (name.startswith("lr_") and isinstance(dist, FloatDistribution)
            and bool(dist.log))
