"""Replay: a float32 trial re-runs from its export to the value its sweep recorded, as its
row of the same stack, whichever rows left that stack early and whatever its width."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from objectives.dataset import DatasetObjective
from sweeps.batched import train_batch
from sweeps.batched.replay import StackRecord, replay
from sweeps.cli import run, train
from sweeps.study.results import best_documents
from sweeps.training.hparams import Hyperparams
from sweeps.training.loop import TrainResult
from sweeps.training.stats import EpochStats

try:
    from test_float32_parity import conv_net
except ImportError:  # pragma: no cover
    from tests.sweeps.batched.test_float32_parity import conv_net

EPOCHS = 5
ROWS = [Hyperparams("sgd", 0.5), Hyperparams("momentum", 0.3, "onecycle", {"momentum": 0.9}),
        Hyperparams("adam", 0.01, "cosine"), Hyperparams("adam", 0.03),
        Hyperparams("rmsprop", 0.003, "none", {"momentum": 0.5})]
LEAVE = [None, 2, None, 1, None]  # epochs after which a row is pruned


class ConvNet(DatasetObjective):
    """``conv_net`` as a class: an export names it, and ``sweeps.train`` builds it."""

    def __init__(self) -> None:
        self.__dict__.update(conv_net().__dict__)
        self.name = "tests.sweeps.batched.test_replay:ConvNet"


class PruneAfter:
    def __init__(self, epochs: int | None) -> None:
        self.epochs = epochs

    def on_chunk(self, stats: EpochStats) -> bool:
        return self.epochs is not None and stats.start + len(stats) >= self.epochs

    def on_end(self, result: TrainResult) -> None:
        return None


def assert_identical(again: TrainResult, first: TrainResult) -> None:
    assert (again.status, again.epochs_run) == (first.status, first.epochs_run)
    for name in first.history.names:
        np.testing.assert_array_equal(again.history.metric(name), first.history.metric(name),
                                      err_msg=name)
    assert again.final_loss == first.final_loss


@pytest.mark.parametrize("width", [2, None])
def test_every_row_replays_bit_for_bit_in_float32(width: int | None) -> None:
    """Five rows (two pruned early) in stacks of two rows or one stack of five: each row,
    replayed from its stack's record (and pruned where it was), repeats its statistics
    exactly."""
    objective = conv_net()
    groups: list[list[int]] = []
    first = train_batch(objective, ROWS, EPOCHS, width=width, on_stacks=groups.extend,
                        observers=[(PruneAfter(n),) for n in LEAVE])
    assert [r.status for r in first] == ["complete", "pruned", "complete", "pruned", "complete"]
    assert [len(g) for g in groups] == ([2, 2, 1] if width == 2 else [5])
    for group in groups:
        rows = tuple((ROWS[b], LEAVE[b]) for b in group)
        for row, b in enumerate(group):
            again = replay(objective, StackRecord(rows, row, 2), EPOCHS,
                           observers=(PruneAfter(LEAVE[b]),))
            assert again is not None
            assert_identical(again, first[b])


@pytest.mark.parametrize("trials", [8, 12])
def test_a_float32_sweeps_trials_reproduce_from_their_export(
        trials: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A sweep with lockstep halving of a float32 CNN with BatchNorm and dropout: every
    complete trial's export replays its stack and re-runs to the recorded validation loss
    within 1e-6 relative (the acceptance bar; on the same machine it is exact). With 12
    trials in batches of 8, the last 4 join the running batch as its rows are pruned, in
    stacks of their own, and reproduce the same way."""
    monkeypatch.chdir(tmp_path)
    storage = f"sqlite:///{tmp_path}/optuna.db"
    assert run.main(["--objective", "tests.sweeps.batched.test_replay:ConvNet",
                     "--n-trials", str(trials), "--epochs", "6", "--batch", "8", "--study",
                     "f32", "--storage", storage,
                     "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db",
                     "--lr-min", "0.01", "--lr-max", "1", "--no-prune-stalled", "--quiet",
                     "--no-plots"]) == 0
    study = optuna.load_study(study_name="f32", storage=storage)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert complete and any(t.state == TrialState.PRUNED for t in study.trials)
    first = [t for t in study.trials if t.number < 8]
    joined = [t for t in study.trials if t.number >= 8]
    assert len(joined) == trials - 8
    for trial in joined:  # started while the first batch still trained, in its own stack
        assert trial.datetime_start < max(t.datetime_complete for t in first)
        assert all(row.get("trial", 8) >= 8 for row in trial.user_attrs["stack"]["rows"])
    assert trials == 8 or any(t.number >= 8 for t in complete)
    documents = best_documents(study, top=len(complete))
    assert all(doc["stack"] is not None for doc in documents)
    capsys.readouterr()
    for doc in documents:
        path = tmp_path / f"trial-{doc['trial']}.json"
        path.write_text(json.dumps(doc))
        assert train.main(["--params", str(path), "--no-track", "--quiet"]) == 0
        line = next(x for x in capsys.readouterr().out.splitlines()
                    if x.startswith("exported value"))
        relative = float(re.search(r"relative difference (\S+)$", line).group(1))
        assert relative <= 1e-6, (doc["trial"], line)
