"""A sweep stores its objective under a name that loads it back: the README's
``ModuleObjective``, pasted into a module as it stands (and with a ``name`` that is no import
path), sweeps, exports, and ``sweeps.train --params`` in a new process re-runs the export to
its value."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sweeps.cli import run

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "README.md"
SNIPPET = re.compile(r"with `ModuleObjective`:\n\n```python\n(.*?)```", re.DOTALL)
SWEEP = ["--n-trials", "2", "--epochs", "20", "--optimizers", "adam", "--schedulers", "none",
         "--pruner", "none", "--no-plots", "--quiet", "--export", "best.json"]


def readme_snippet() -> str:
    found = SNIPPET.search(README.read_text(encoding="utf-8"))
    assert found, "README.md has no ```python block after 'with `ModuleObjective`:'"
    return found.group(1)


@pytest.mark.parametrize(("module", "edit"), [
    ("pasted_as_is", lambda code: code),
    ("named_my_objective", lambda code: re.sub(r"name=[^,]+,", 'name="my_objective",', code)),
], ids=["readme", "name-my_objective"])
def test_the_readme_objective_sweeps_exports_and_trains_from_its_export(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, edit: object) -> None:
    assert callable(edit)
    (tmp_path / f"{module}.py").write_text(edit(readme_snippet()), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)

    assert run.main(["--objective", f"{module}:objective", "--study", module, *SWEEP]) == 0
    exported = json.loads((tmp_path / "best.json").read_text(encoding="utf-8"))
    assert exported["objective"]["name"] == f"{module}:objective"

    path = os.pathsep.join(filter(None, [str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-m", "sweeps.train", "--params", "best.json",
                           "--no-track", "--quiet"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": path})
    assert done.returncode == 0, done.stderr
    assert "relative difference 0.0e+00" in done.stdout, done.stdout
