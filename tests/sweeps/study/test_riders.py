"""A rider (the plots' reference run) trains as one more row of the sweep's first batch, also
when trials join that batch while it runs: its statistics come back to it, and the plots never
train it again at the sweep's end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sweeps.cli import run
from sweeps.cli.session import open_session
from sweeps.study.sweep import Rider
from sweeps.training.hparams import Hyperparams
from sweeps.training.loop import train

try:
    from test_replay import ConvNet
except ImportError:  # pragma: no cover
    from tests.sweeps.batched.test_replay import ConvNet

EPOCHS = 4


def test_the_rider_keeps_its_statistics_when_trials_join_its_batch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = run.build_parser().parse_args([
        "--objective", "tests.sweeps.batched.test_replay:ConvNet", "--n-trials", "12",
        "--epochs", str(EPOCHS), "--batch", "8", "--storage", f"sqlite:///{tmp_path}/o.db",
        "--tracking-uri", f"sqlite:///{tmp_path}/m.db", "--lr-min", "0.01", "--lr-max", "1",
        "--no-prune-stalled", "--quiet", "--no-plots"])
    session = open_session(run.config_from_args(args))
    rider = Rider(Hyperparams("sgd", 0.01))
    session.sweep.riders.append(rider)
    try:
        session.sweep.run()
    finally:
        session.finish("FINISHED")
        session.close_stores()
    study = session.sweep.study
    first_end = max(t.datetime_complete for t in study.trials if t.number < 8)
    assert any(t.datetime_start < first_end for t in study.trials if t.number >= 8)  # joined
    assert rider.history is not None
    alone = train(ConvNet(), rider.hparams, EPOCHS).history
    np.testing.assert_allclose(rider.history.loss, alone.loss, rtol=1e-5)
