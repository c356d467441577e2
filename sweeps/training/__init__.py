"""One training run: the loop, its per-epoch statistics, hyperparameters and verdicts.

The loop knows nothing of Optuna or MLflow: observers receive its statistics in chunks
(``Observer``) and its result (``TrainResult``).
"""

from sweeps.training.hparams import Hyperparams
from sweeps.training.loop import ObjectiveStartError, Observer, TrainResult, default_chunk, train
from sweeps.training.stats import EPOCH_METRICS, EpochStats
from sweeps.training.verdicts import VERDICTS, Thresholds, Verdict, judge

__all__ = ["EPOCH_METRICS", "VERDICTS", "EpochStats", "Hyperparams", "ObjectiveStartError",
           "Observer", "Thresholds", "TrainResult", "Verdict", "default_chunk", "judge",
           "train"]
