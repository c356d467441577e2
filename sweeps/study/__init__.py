"""The Optuna study: its settings, search space, samplers and pruners by name, and the sweep
that asks for trials, trains them and tells the outcomes.

It never imports MLflow tracking: a sweep is handed a tracker that fits ``SweepTracker``.
"""

from sweeps.study.config import SweepConfig
from sweeps.study.pruners import PRUNERS, build_pruner
from sweeps.study.results import counted_trials, trials_frame
from sweeps.study.samplers import SAMPLERS, build_sampler
from sweeps.study.sweep import Rider, Sweep, SweepListener, TrackingFailed, TrialOutcome
from sweeps.study.tracker import SweepTracker, TrialRecord

__all__ = ["PRUNERS", "SAMPLERS", "Rider", "Sweep", "SweepConfig", "SweepListener",
           "SweepTracker", "TrackingFailed", "TrialOutcome", "TrialRecord", "build_pruner",
           "build_sampler", "counted_trials", "trials_frame"]
