"""The metric writer process dying: the sweep's process hears of it and still exits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# A chunk far bigger than a pipe holds is queued for a writer that is stopped, then killed,
# before it reads any of it: closing reports the death, and the interpreter's exit must not
# wait to send the chunk.
_SCRIPT = """
import multiprocessing, os, signal, sys
import numpy as np
from sweeps.training.stats import EPOCH_METRICS, EpochStats
from tracking.metric_process import MetricProcess

writer = MetricProcess(sys.argv[1])
(child,) = multiprocessing.active_children()
os.kill(child.pid, signal.SIGSTOP)
n = 200_000
writer.put("run", EpochStats(0, *[np.zeros(n) for _ in EPOCH_METRICS]), 1, EPOCH_METRICS, 0)
os.kill(child.pid, signal.SIGKILL)
child.join()
print(writer.close())
"""


def test_a_dead_writer_is_reported_and_the_process_still_exits(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", _SCRIPT, f"sqlite:///{tmp_path}/mlflow.db"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "['the metric writer process died']"
