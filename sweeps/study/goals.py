"""What a study optimises: one metric or several (a Pareto front), and constraints.

The first metric is a per-epoch one (``sweeps.study.metric``): it is what the pruner hears,
what the progress line shows and what ``sweeps.train`` checks an exported trial against.
The ones after it may also be a trial's cost, known when it ends:

    trial_seconds   wall time from the trial's start to its end (the rows of a stack train
                    together, so a trial in a stack is timed with its stack)
    trial_epochs    epochs it trained (fewer where it was stopped early)
    param_count     the objective's trainable parameters

A constraint bounds any of these metrics, or any per-epoch metric (read at the study's
``metric_at`` epoch): ``trial_seconds<=30``, ``val_accuracy>=0.9``. A trial that breaks one
stays in the study, marked infeasible (its ``violation`` is the largest excess), and is never
chosen as best nor put on the front. Each constraint is also set on the Optuna trial
(``Trial.set_constraint``), so samplers that take constraints (TPE, NSGA-II) learn from them;
the others only sample.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sweeps import checks
from sweeps.errors import UsageError
from sweeps.study.metric import DIRECTIONS, READ_AT, StudyMetric, default_direction, study_metric

if TYPE_CHECKING:
    from sweeps.training.loop import TrainResult

__all__ = ["COSTS", "Constraint", "Goals", "pareto_front", "parse_constraint", "study_goals"]

COSTS = ("trial_seconds", "trial_epochs", "param_count")
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_/.]*)\s*(<=|>=)\s*(\S+)\s*\Z")
CONSTRAINT_RULE = "use METRIC<=NUMBER or METRIC>=NUMBER, e.g. trial_seconds<=30"


@dataclass(frozen=True)
class Constraint:
    """``metric op bound``: a trial is feasible where its value keeps it."""

    metric: str
    op: str  # <= or >=
    bound: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.bound:g}"

    def violation(self, value: float) -> float:
        """How far ``value`` breaks the bound (<= 0: kept; a non-finite value breaks it)."""
        if not math.isfinite(value):
            return math.inf
        return value - self.bound if self.op == "<=" else self.bound - value


@dataclass(frozen=True)
class Goals:
    metrics: tuple[StudyMetric, ...]
    constraints: tuple[Constraint, ...] = ()

    @property
    def primary(self) -> StudyMetric:
        return self.metrics[0]

    @property
    def multi(self) -> bool:
        return len(self.metrics) > 1

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metrics)

    @property
    def directions(self) -> tuple[str, ...]:
        return tuple(m.direction for m in self.metrics)

    @property
    def costs(self) -> tuple[str, ...]:
        """The costs the goals read (a sweep measures only these)."""
        named = {*self.names, *(c.metric for c in self.constraints)}
        return tuple(c for c in COSTS if c in named)

    def settings(self) -> dict[str, object]:
        """As a study's fixed settings (resumed only with the same goals); a single metric
        is stored as before there were several."""
        settings: dict[str, object] = dict(self.primary.settings())
        if self.multi:
            settings.update(metric=list(self.names), direction=list(self.directions))
        settings["constraints"] = [str(c) for c in self.constraints]
        return settings

    def params(self) -> dict[str, str]:
        """As the parent run's params (strings: several names joined with commas)."""
        out = {"metric": ",".join(self.names), "direction": ",".join(self.directions),
               "metric_at": self.primary.at}
        if self.constraints:
            out["constraints"] = ",".join(str(c) for c in self.constraints)
        return out

    def read(self, name: str, result: TrainResult, costs: Mapping[str, float]) -> float:
        """Metric ``name`` of a trial that ended with ``result`` and ``costs``."""
        if name in costs:
            return float(costs[name])
        for metric in self.metrics:
            if metric.name == name:
                return metric.value(result)
        return StudyMetric(name, default_direction(name), self.primary.at).value(result)

    def values(self, result: TrainResult, costs: Mapping[str, float]) -> list[float]:
        return [self.read(m.name, result, costs) for m in self.metrics]

    def violations(self, result: TrainResult, costs: Mapping[str, float]) -> list[float]:
        return [c.violation(self.read(c.metric, result, costs)) for c in self.constraints]

    def dominates(self, a: Sequence[float], b: Sequence[float]) -> bool:
        """``a`` is at least as good as ``b`` in every metric and better in one."""
        better = False
        for metric, x, y in zip(self.metrics, a, b, strict=True):
            if metric.better(y, x):
                return False
            better = better or metric.better(x, y)
        return better


def pareto_front(goals: Goals, points: Mapping[int, Sequence[float]]) -> list[int]:
    """The keys of ``points`` (trial number -> values) that no other point dominates, in
    order of the first metric (then the key)."""
    front = [k for k, v in points.items()
             if not any(goals.dominates(w, v) for j, w in points.items() if j != k)]
    sign = -1.0 if goals.primary.maximize else 1.0
    return sorted(front, key=lambda k: (sign * points[k][0], k))


def parse_constraint(text: str, offered: tuple[str, ...] | None = None) -> Constraint:
    """``METRIC<=NUMBER`` or ``METRIC>=NUMBER`` on a metric a trial logs (``offered``; None:
    any, for a constraint a study stored)."""
    match = _CONSTRAINT.match(text)
    if match is None:
        raise UsageError("constraint", text, CONSTRAINT_RULE)
    name, op, number = match.groups()
    try:
        bound = float(number)
    except ValueError:
        bound = math.nan
    if not math.isfinite(bound):
        raise UsageError("constraint", text, f"{CONSTRAINT_RULE} (a finite number)")
    if offered is not None and name not in offered:
        raise UsageError("constraint", text, f"bound a metric trials log: {', '.join(offered)}")
    return Constraint(name, op, bound)


def study_goals(names: tuple[str, ...] | None, directions: tuple[str, ...] | None, at: str,
                constraints: tuple[str, ...], reported: tuple[str, ...]) -> Goals:
    """The goals of a sweep, checked against the per-epoch metrics the objective reports
    (``reported``) and the costs; ``None`` picks the defaults."""
    checks.choice("metric-at", at, READ_AT)
    if not names:
        if directions and len(directions) > 1:
            raise UsageError("direction", ",".join(directions),
                             "give one direction per --metric (1 metric: the default)")
        metrics = (study_metric(None, directions[0] if directions else None, at, reported),)
    else:
        if len(set(names)) != len(names):
            raise UsageError("metric", ",".join(names), "name each metric once")
        if directions and len(directions) != len(names):
            raise UsageError("direction", ",".join(directions),
                             f"give one direction per metric ({len(names)}: "
                             f"{', '.join(names)})")
        if names[0] in COSTS:
            raise UsageError("metric", ",".join(names),
                             f"name a per-epoch metric first ({names[0]} is a cost; "
                             "costs may follow it)")
        for name in names:
            checks.choice("metric", name, reported + COSTS)
        metrics = tuple(
            StudyMetric(name, directions[i] if directions else default_direction(name), at)
            if name in COSTS else
            study_metric(name, directions[i] if directions else None, at, reported)
            for i, name in enumerate(names))
        for metric in metrics:
            checks.choice("direction", metric.direction, DIRECTIONS)
    offered = reported + COSTS
    return Goals(metrics, tuple(parse_constraint(c, offered) for c in constraints))
