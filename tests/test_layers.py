"""Imports go one way: each package may import only the packages below it.

    objectives                      the losses
    sweeps.errors, sweeps.checks    bad input: the error and the checks every command applies
    sweeps.storage                  storage URLs, SQLite settings, Optuna storages
    sweeps.optim                    optimizers and schedulers by name
    sweeps.training                 one training run: loop, statistics, verdicts
    sweeps.batched                  several trials as one tensor program
    sweeps.diagnostics              probes, LR range test, stalled-trial watch
    tracking                        MLflow: knows the training loop's types, never the study
    sweeps.study                    the Optuna study: ask, train, tell; never MLflow
    sweeps.parallel                 helper worker processes
    sweeps.cli                      the commands: the one place study and tracking meet

Every import counts, also one inside a function or under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("objectives", "sweeps", "tracking")

BASE = {"sweeps.errors", "sweeps.checks"}
ALLOWED: dict[str, set[str]] = {
    "objectives": set(),
    "sweeps": set(),  # the package itself: a docstring
    "sweeps.errors": set(),
    "sweeps.checks": {"sweeps.errors"},
    "sweeps.storage": BASE,
    "sweeps.optim": BASE,
    "sweeps.training": BASE | {"objectives", "sweeps.optim"},
    "sweeps.batched": BASE | {"objectives", "sweeps.optim", "sweeps.training"},
    "sweeps.diagnostics": BASE | {"objectives", "sweeps.optim", "sweeps.training"},
    "tracking": BASE | {"sweeps.storage", "sweeps.training"},
    "sweeps.study": BASE | {"objectives", "sweeps.storage", "sweeps.optim", "sweeps.training",
                            "sweeps.batched", "sweeps.diagnostics"},
    "sweeps.parallel": BASE | {"sweeps.study", "sweeps.batched", "sweeps.training"},
    "sweeps.cli": BASE | {"objectives", "sweeps", "tracking"},
    # commands: ``python -m sweeps.<command>`` sit on top
    "sweeps.run": {"sweeps.cli"}, "sweeps.train": {"sweeps.cli"},
    "sweeps.export": {"sweeps.cli"}, "sweeps.compare": {"sweeps.cli"},
    "sweeps.diagnose": {"sweeps.cli"}, "sweeps.ui": {"sweeps.cli"},
    "sweeps.api": {"sweeps.cli"},
    "sweeps.configs": set(),
}


def layer(module: str) -> str | None:
    """The entry of ``ALLOWED`` that ``module`` belongs to (the longest matching prefix)."""
    for size in range(module.count(".") + 1, 0, -1):
        prefix = ".".join(module.split(".")[:size])
        if prefix in ALLOWED:
            return prefix
    return None


def project_imports(path: Path, module: str) -> set[str]:
    """Every module of this project that ``path`` (module ``module``) imports: for
    ``from a.b import c``, ``a.b.c`` where that is a module, else ``a.b``."""
    known = {name for _, name in modules()}
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                      for a in node.names}
    return {name for name in found if name.split(".")[0] in PACKAGES}


def modules() -> list[tuple[Path, str]]:
    out = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out.append((path, ".".join(parts[:-1] if parts[-1] == "__init__" else parts)))
    return out


def allowed(importer: str, imported: str) -> bool:
    source, target = layer(importer), layer(imported)
    if source is None or target is None:
        return False
    return target == source or any(target == ok or target.startswith(ok + ".")
                                   for ok in ALLOWED[source])


def test_every_module_belongs_to_a_layer() -> None:
    assert [m for _, m in modules() if layer(m) is None] == []


@pytest.mark.parametrize(("path", "module"), modules(), ids=[m for _, m in modules()])
def test_imports_go_one_way(path: Path, module: str) -> None:
    wrong = sorted(name for name in project_imports(path, module)
                   if not allowed(module, name))
    assert wrong == [], f"{module} ({layer(module)}) imports against the layers: {wrong}"


def test_the_check_catches_an_import_against_the_layers(tmp_path: Path) -> None:
    """The study importing MLflow tracking, or tracking importing the study, is refused."""
    bad = tmp_path / "sweep.py"
    bad.write_text("def f():\n    from tracking.study_run import StudyTracker\n")
    assert [n for n in project_imports(bad, "sweeps.study.sweep")
            if not allowed("sweeps.study.sweep", n)] == ["tracking.study_run"]
    bad.write_text("import typing\nif typing.TYPE_CHECKING:\n"
                   "    from sweeps.study import results\n")
    assert [n for n in project_imports(bad, "tracking.plots")
            if not allowed("tracking.plots", n)] == ["sweeps.study.results"]
    assert allowed("sweeps.cli.run", "tracking.study_run")
