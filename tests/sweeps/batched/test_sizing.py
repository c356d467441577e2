"""The batch size: stored with the study (the same study twice), halved where it runs out of
memory."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import optuna

import objectives
from sweeps.batched.sizing import CHOICE_ATTR, BatchChoice, for_study

REPO = Path(__file__).resolve().parents[3]


def test_the_choice_is_measured_once_and_kept_with_the_study(tmp_path: Path) -> None:
    """A second process of the same sweep (a resume, a ``--workers`` helper) reads the
    choice back instead of racing the clock again: the same step times, to the last digit;
    another ``--batch`` is measured anew."""
    storage = f"sqlite:///{tmp_path}/optuna.db"
    objective = objectives.build("rebalance")
    first = for_study(optuna.create_study(storage=storage, study_name="s"), objective, 8, 100,
                      "cpu")
    assert first.size == 8 and [w for w, _ in first.step_ms] == [1, 4, 8]
    assert all(ms > 0 for _, ms in first.step_ms)
    again = for_study(optuna.load_study(storage=storage, study_name="s"), objective, 8, 100,
                      "cpu")
    assert again == first
    other = for_study(optuna.load_study(storage=storage, study_name="s"), objective, 4, 100,
                      "cpu")
    assert other.wanted == 4 and [w for w, _ in other.step_ms] == [1, 4]
    stored = optuna.load_study(storage=storage, study_name="s").user_attrs[CHOICE_ATTR]
    assert stored["asked"] == 4 and BatchChoice.stored(
        {k: v for k, v in stored.items() if k != "asked"}) == other


_UNDER_A_LIMIT = textwrap.dedent("""
    import resource
    import objectives
    from sweeps.batched.sizing import choose_batch

    objective = objectives.build("tests.toy_objectives:Quadratic", {"dim": 1 << 22})
    status = open("/proc/self/status").read().splitlines()
    size = int(next(l for l in status if l.startswith("VmSize")).split()[1]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (size + (1500 << 20), resource.RLIM_INFINITY))
    choice = choose_batch(objective, 32, 10, "cpu")
    print(choice.size, max(w for w, _ in choice.step_ms), choice.reason)
""")


def test_a_batch_that_runs_out_of_memory_is_halved_until_one_fits() -> None:
    """32 rows of 4M float64 parameters (1 GiB with their gradients alone) under an address
    space limit of 1.5 GiB more than the process holds: the probe runs out of memory and
    halves the widest stack until one fits, which the choice says; 32 trials still run
    together (the study does not change)."""
    done = subprocess.run([sys.executable, "-c", _UNDER_A_LIMIT], cwd=REPO, text=True,
                          capture_output=True, timeout=300, check=False,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin",
                               "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    size, widest, reason = done.stdout.split(maxsplit=2)
    assert int(size) == 32 and 2 <= int(widest) < 32
    assert reason.strip() == "32 rows ran out of memory"
