"""A bf16 sweep end to end: the precision is one of the study's fixed settings (a resume at
another is refused, nothing written), its export records it, and ``sweeps.train --params``
re-runs the exported trial at it to the exported value."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from torch import nn

from objectives.dataset import DatasetObjective, accuracy
from sweeps.cli import run, train
from sweeps.study.results import SETTINGS_ATTR, load_study

try:
    from minibatch_objectives import HELD_OUT, data
except ImportError:  # pragma: no cover
    from tests.minibatch_objectives import HELD_OUT, data

NAME = f"{__name__}:objective"


def _float32(pair: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return pair[0].float(), pair[1]


def _net() -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2),
                             nn.Linear(8, 3))


objective = DatasetObjective(_net(), _float32(data(0)), batch_size=8,
                             loss_fn=nn.functional.cross_entropy,
                             validation=_float32(data(1, HELD_OUT)),
                             metrics={"accuracy": accuracy}, name=NAME, default_epochs=4,
                             lr_ranges={"adam": (1e-3, 1e-1), "sgd": (1e-2, 1.0)})

SWEEP = ["--objective", NAME, "--study", "mixed", "--optimizers", "adam,sgd", "--schedulers",
         "none,cosine", "--batch", "3", "--quiet", "--no-plots"]


def listing(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_bf16_sweep_keeps_its_precision_and_its_export_reruns_at_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert run.main([*SWEEP, "--n-trials", "3", "--precision", "bf16",
                     "--export", "best.json"]) == 0
    study = load_study("sqlite:///mlruns/optuna.db", "mixed")
    assert study.user_attrs[SETTINGS_ATTR]["precision"] == "bf16"
    exported = json.loads(Path("best.json").read_text(encoding="utf-8"))
    assert exported["precision"] == "bf16" and exported["stack"] is not None
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    assert client.get_run(exported["mlflow_run_id"]).data.params["precision"] == "bf16"

    capsys.readouterr()
    assert train.main(["--params", "best.json", "--no-track"]) == 0
    out = capsys.readouterr().out
    assert float(re.search(r"relative difference (\S+)", out).group(1)) <= 1e-6

    before = listing(tmp_path)
    assert run.main([*SWEEP, "--n-trials", "4"]) == 2  # resumed at fp32, the default
    line = capsys.readouterr().err.strip()
    assert line.startswith("sweeps.run: error: precision: 'fp32' is not valid; study "
                           "'mixed' was created with precision='bf16'")
    assert "\n" not in line
    assert listing(tmp_path) == before
