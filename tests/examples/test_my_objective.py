"""The README's own full-batch example declares no learning-rate intervals: a sweep centres
them on an LR range test of it, not on the seed's (``rebalance``'s, tuned to gradients of
about 1e-5: SGD up to 1e7, where this network's loss turns NaN)."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest

from objectives.rebalance import Rebalance
from sweeps.cli import run
from sweeps.diagnostics.auto_range import AUTO_DECADES
from sweeps.study.opening import LR_RANGES_ATTR

OPTIMIZERS = ("sgd", "momentum", "adam")


def test_a_full_batch_objective_without_intervals_gets_them_from_a_range_test(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    storage = f"sqlite:///{tmp_path}/optuna.db"
    assert run.main(["--objective", "examples.my_objective:objective", "--study", "sine",
                     "--n-trials", "1", "--epochs", "5", "--optimizers", ",".join(OPTIMIZERS),
                     "--schedulers", "none", "--batch", "1", "--storage", storage,
                     "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db",
                     "--quiet", "--no-plots"]) == 0

    ranges = optuna.load_study(study_name="sine", storage=storage).user_attrs[LR_RANGES_ATTR]
    seeds = Rebalance().lr_ranges
    assert sorted(ranges) == sorted(OPTIMIZERS)
    for name, (low, high) in ranges.items():
        assert (low, high) != seeds[name]
        assert math.log10(high / low) == pytest.approx(2 * AUTO_DECADES)  # around a suggestion
    assert ranges["sgd"][1] < 1e3 < seeds["sgd"][1]
