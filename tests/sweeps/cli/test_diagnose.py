"""``python -m sweeps.diagnose``: the seed case, a user nn.Module objective, a mini-batch
objective, faults that no learning rate fixes, bad input.

``tests.minibatch_objectives:tiny`` scores its held-out rows with labels drawn from another
rule than its training rows' (``data(1, ...)`` draws its own class scores), so its probe is
``memorizing`` and no learning rate is suggested; that test used to expect a combined lr, the
wrong reading of a run whose validation loss never falls. The combined lr of a mini-batch
objective is checked on the catalogue's healthy one instead.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sweeps.cli import diagnose

FAST = ["--epochs", "20", "--range-steps", "60"]
TINY = ["--objective", "tests.minibatch_objectives:tiny", "--optimizer", "adam",
        "--range-steps", "60"]
FAULTS = "tests.sweeps.diagnostics.faults"


def run(argv: list[str]) -> int:
    """``main(argv)``; an argparse error's SystemExit becomes its status."""
    try:
        return diagnose.main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def test_seed_case_is_stalled_and_the_suggestion_is_near_the_best_sgd_lr(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert run([]) == 0
    out = capsys.readouterr().out
    assert "verdict: stalled: parameters move 4.8e-09 of their size per step (update ratio)" in out
    assert re.search(r"^shares\s+16\s+24\.56\s+1\.184e-05\s+1\.184e-07\s+4\.82e-09", out,
                     re.MULTILINE)
    assert "update-ratio rule (target ratio 0.001, seen 4.8e-09 at lr 0.01): 2.1e+03" in out
    assert re.search(r"range test \(1e-06 \.\. 1e\+08, \d+ steps, stopped early \(diverging\)\): "
                     r"steepest \S+, valley \S+, edge \S+", out)
    # A 30-trial sgd sweep over 10,000 epochs found its best lr at ~2e6 (see
    # sweeps.range_test.combine); the combined suggestion must lie within one decade of it.
    combined = float(re.search(r"combined: lr (\S+)", out).group(1))
    assert 2e5 <= combined <= 2e7


def test_user_module_objective_gets_one_row_per_tensor(capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    assert run(["--objective", "examples.my_objective:objective", "--optimizer", "adam", *FAST]
               ) == 0
    out = capsys.readouterr().out
    rows = {m.group(1): m.group(2) for m in
            re.finditer(r"^(\d\.(?:weight|bias))\s+(\S+)\s", out, re.MULTILINE)}
    assert rows == {"0.weight": "16x1", "0.bias": "16", "2.weight": "1x16", "2.bias": "1"}
    assert re.search(r"^verdict: (stalled|slow|healthy|unstable|diverged): ", out, re.MULTILINE)
    assert "combined: lr " in out


def test_plot_is_written_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(["--objective", "tests.toy_objectives:Quadratic", *FAST, "--no-track"]) == 0
    assert list(tmp_path.iterdir()) == []
    assert run(["--objective", "tests.toy_objectives:Quadratic", *FAST, "--no-track",
                "--plot", "r.png"]) == 0
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    assert "range test plot: r.png" in capsys.readouterr().out


def test_minibatch_objective_is_diagnosed_from_its_training_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from sweeps.training.hparams import Hyperparams
    from sweeps.training.loop import train

    try:
        from minibatch_objectives import tiny
    except ImportError:  # pragma: no cover
        from tests.minibatch_objectives import tiny

    monkeypatch.chdir(tmp_path)
    assert run([*TINY, "--no-track", "--plot", "r.png"]) == 0
    out = capsys.readouterr().out
    trained = train(tiny(), Hyperparams("adam", 0.01), 6)  # the objective's own 6 epochs
    history = trained.history
    assert ("probe: tests.minibatch_objectives:tiny, adam lr=0.01 scheduler=none, 6 epochs of "
            "5 batches\n") in out
    assert re.findall(r"^(\d\.(?:weight|bias))\s", out, re.MULTILINE) == [
        "0.weight", "0.bias", "1.weight", "1.bias", "4.weight", "4.bias"]
    val_loss, val_accuracy = history.extra["val_loss"], history.extra["val_accuracy"]
    assert (f"validation (after epoch 0 -> 5): val_loss {val_loss[0]:.4g} -> "
            f"{val_loss[-1]:.4g}, val_accuracy {val_accuracy[0]:.4g} -> "
            f"{val_accuracy[-1]:.4g}\n") in out
    assert trained.verdict is not None and trained.verdict.name == "memorizing"
    assert f"verdict: {trained.verdict.name}: {trained.verdict.reason}\n" in out
    assert ("suggested learning rates for adam: none, the learning rate is not the problem "
            "(verdict memorizing); fix what the verdict names first\n") in out
    assert re.search(r"^  range test \(1e-06 \.\. 1000, \d+ steps of one batch, smoothed 0\.98"
                     r"(, stopped early \(diverging\))?\): ", out, re.MULTILINE)
    assert "combined: lr " not in out and "update-ratio rule" not in out
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_a_healthy_minibatch_objective_gets_a_combined_lr(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--objective", f"{FAULTS}:healthy", "--optimizer", "adam", "--range-steps",
                "60", "--no-track"]) == 0
    out = capsys.readouterr().out
    assert "verdict: healthy: " in out
    assert re.search(r"^  range test \(.*\): steepest \S+, valley \S+, edge \S+$", out,
                     re.MULTILINE)
    assert re.search(r"^  combined: lr \S+ \(valley of the smoothed loss\)", out, re.MULTILINE)


@pytest.mark.parametrize(("fault", "optimizer", "lr", "verdict"), [
    ("dead_relu", "adam", "0.01", "flat"),
    ("input_scale", "sgd", "0.1", "flat"),
    ("shuffled_labels", "adam", "0.01", "memorizing"),
])
def test_no_lr_is_suggested_where_the_lr_is_not_the_problem(
        fault: str, optimizer: str, lr: str, verdict: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--objective", f"{FAULTS}:{fault}", "--optimizer", optimizer, "--lr", lr,
                "--range-steps", "60", "--no-track"]) == 0
    out = capsys.readouterr().out
    assert f"verdict: {verdict}: " in out
    assert (f"suggested learning rates for {optimizer}: none, the learning rate is not the "
            f"problem (verdict {verdict}); fix what the verdict names first\n") in out
    assert "combined" not in out and "update-ratio rule" not in out


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_loss_that_falls_at_no_lr_has_no_real_descent(
        optimizer: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Dead ReLUs below the output layer: the range test's loss stays within its noise at
    every lr it tries, and the line says so instead of reading lrs off the noise."""
    assert run(["--objective", f"{FAULTS}:dead_relu", "--optimizer", optimizer,
                "--range-steps", "60", "--no-track"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  range test \(.*\): no real descent: the smoothed loss fell \S+, less "
                     r"than 3x its noise \(\S+\) or 1% of the loss$", out, re.MULTILINE)
    assert "steepest" not in out


def test_a_range_test_that_diverges_from_its_first_lr_says_to_start_lower(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--objective", "tests.toy_objectives:Quadratic", *FAST, "--range-min", "10",
                "--no-track"]) == 0
    out = capsys.readouterr().out
    assert ("suggested learning rates for sgd: none, the loss did not fall at any lr the range "
            "test tried (10 .. 13): it diverged from the start; lower --range-min\n") in out
    assert re.search(r"^  range test \(10 \.\. 1e\+08, 2 steps, stopped early \(diverging\)\): "
                     r"no real descent: the smoothed loss fell 0, less than 1% of the loss$",
                     out, re.MULTILINE)


def test_a_minibatch_diagnosis_logs_the_validation_metrics(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert run([*TINY, "--epochs", "3", "--tracking-uri", uri]) == 0
    run_id = re.search(r"mlflow run: (\w+)", capsys.readouterr().out).group(1)
    client = MlflowClient(tracking_uri=uri)
    assert client.get_run(run_id).data.params["epochs"] == "3"
    for metric in ("loss", "val_loss", "val_accuracy"):
        assert [m.step for m in client.get_metric_history(run_id, metric)] == [0, 1, 2]


@pytest.mark.parametrize(("argv", "names"), [
    (["--lr", "0"], "lr: 0.0"),
    (["--lr", "nan"], "lr: nan"),
    (["--lr", "abc"], "--lr"),
    (["--optimizer", "lbfgs"], "optimizer: 'lbfgs'"),
    (["--scheduler", "warmup"], "scheduler: 'warmup'"),
    (["--device", "tpu"], "device: 'tpu'"),
    (["--epochs", "0"], "epochs: 0"),
    (["--range-steps", "1"], "range-steps: 1"),
    (["--range-min", "10", "--range-max", "1"], "range-min: 10.0"),
    (["--target-ratio", "-1"], "target-ratio: -1.0"),
    (["--objective", "nope"], "objective: 'nope'"),
    (["--objective-arg", "size"], "objective-arg: 'size'"),
    (["--objective-arg", "size=abc"], "objective-arg size: 'abc'"),
    (["--option", "momentum=fast"], "option momentum: 'fast'"),
    (["--plot", "no/such/folder/r.png"], "plot: 'no/such/folder/r.png'"),
    (["--plot", "r.svg"], "plot: 'r.svg'"),
])
def test_bad_input_is_one_stderr_line_and_status_2(
        argv: list[str], names: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("sweeps.diagnose: error: ")
    assert names in captured.err
    assert "Traceback" not in captured.err
    assert list(tmp_path.iterdir()) == []


def test_the_diagnosis_is_logged_to_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert run([*FAST, "--tracking-uri", uri]) == 0
    run_id = re.search(r"mlflow run: (\w+)", capsys.readouterr().out).group(1)
    client = MlflowClient(tracking_uri=uri)
    logged = client.get_run(run_id)
    assert logged.info.status == "FINISHED"
    assert logged.data.tags["verdict"] == "stalled"
    assert "update ratio" in logged.data.tags["verdict_reason"]
    assert {"ratio_rule_lr", "suggested_lr"} <= set(logged.data.metrics)
    assert {a.path for a in client.list_artifacts(run_id)} == {"range_test.png",
                                                               "range_test.csv"}
    history = client.get_metric_history(run_id, "update_ratio")
    assert sorted(m.step for m in history) == list(range(len(history))) and history
