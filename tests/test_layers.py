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

Two more rules of the layout: no module of ``sweeps`` or ``tracking`` is over ``MAX_LINES``
lines (a module that grows past it splits along its concepts), and no docstring holds a
measurement (a time, a speed-up, a share measured on some machine): figures go in the
README, with the bench command that produced them.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("objectives", "sweeps", "tracking")
MAX_LINES = 400  # the most lines a module of sweeps or tracking may have
SIZED = ("sweeps", "tracking")  # the packages whose modules MAX_LINES bounds

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


_NUM = r"\d+(?:[.,]\d+)*"
_WORDNUM = (r"(?:one|two|three|four|five|six|seven|eight|nine|ten|a few|several|tens of"
            r"|hundreds of)")
# A measurement in prose: a time, a size in bytes, a speed-up or a measured share, and
# "measured" followed by a number in the same sentence.
MEASUREMENT = re.compile("|".join([
    rf"\b{_NUM}\s?(?:ns|us|µs|ms|s|secs?|seconds?|min|minutes?|h|hours?)\b",  # 50 ms, 2 s
    rf"\b{_NUM}\s?(?:nano|micro|milli)seconds?\b",  # 60 microseconds
    rf"\b{_WORDNUM}(?:\s+to\s+{_WORDNUM})?\s+(?:nano|micro|milli)?seconds\b",  # one to two
    rf"\b(?:{_NUM}|{_WORDNUM})\s?(?:KiB|MiB|GiB|KB|MB|GB)\b",  # 4.2 MiB, tens of MiB
    rf"\b{_NUM}\s?x\s+(?:faster|slower|quicker|cheaper|speed-?up|the speed)",  # 5x faster
    r"\b\d+\.\d+\s?x\b",  # 1.25x
    rf"\b(?:{_WORDNUM}|{_NUM})\s+times\s+(?:faster|slower|quicker|cheaper|worse|better)\b",
    r"\b(?:a|one)\s+(?:half|third|quarter|fifth|tenth)\s+(?:less|more|faster|slower|cheaper)\b",
    rf"\b{_NUM}\s?-\s?{_NUM}\s?%",  # 0.1-0.4%
    rf"(?:about|~|roughly|around|nearly|almost|only|saves?|costs?)\s*{_NUM}\s?%",  # about 13%
    rf"\b{_NUM}\s?%\s+(?:faster|slower|less|more|fewer|over|of the (?:time|cost|CPU|run))",
    r"\bmeasured\b[^.;]*?\d",  # "measured on the seed case: 2.1e5"
]), re.IGNORECASE)


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


def docstrings(path: Path) -> Iterator[tuple[int, str]]:
    """(line, text) of the docstring of the module and of each of its classes and functions,
    its lines joined by single spaces."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            text = ast.get_docstring(node)
            if text:
                yield getattr(node, "lineno", 1), " ".join(text.split())


def measurements(path: Path) -> list[str]:
    """``line: "text"`` for each measurement in the docstrings of ``path``."""
    return [f"{line}: {found.group(0)!r}" for line, text in docstrings(path)
            for found in MEASUREMENT.finditer(text)]


def test_no_module_of_sweeps_or_tracking_is_over_the_line_limit() -> None:
    sizes = {module: len(path.read_text(encoding="utf-8").splitlines())
             for path, module in modules() if module.split(".")[0] in SIZED}
    over = sorted(f"{module} ({n} lines)" for module, n in sizes.items() if n > MAX_LINES)
    assert over == [], f"over {MAX_LINES} lines, split along their concepts: {over}"


@pytest.mark.parametrize(("path", "module"), modules(), ids=[m for _, m in modules()])
def test_no_docstring_holds_a_measurement(path: Path, module: str) -> None:
    found = measurements(path)
    assert found == [], (f"{module}: measurements in docstrings (the README states figures, "
                         f"with their bench command): {found}")


def test_the_check_catches_a_measurement_in_a_docstring(tmp_path: Path) -> None:
    """Figures that once crept into docstrings are caught; the numbers that docstrings do
    need (constants, examples of output, definitions) are not."""
    caught = ["On the CPU ``abs`` then ``sum`` is about five times faster than the norm.",
              "The child's exit (about 50 ms of interpreter teardown) is not waited for.",
              "``log_batch`` costs about 60 microseconds of CPU per value.",
              "Its garbage collection took one to two seconds after the work was done.",
              "Building one imports ``torch._dynamo`` (seconds of CPU and tens of MiB).",
              "One commit for all of them costs about a third less per row.",
              "Batched, the seed sweep runs 10.0x as many trials.",
              "The plots cost about 13% over the bare loop.",
              "Measured on the seed case: valley 2.1e5 and edge 3.9e6 give 9.1e5."]
    kept = ["A rise counts beyond ``noise_z`` (3) standard errors.",
            "Verdict('stalled', 'parameters move 4.8e-09 of their size; try ~2e+05x larger lr')",
            "Epochs needed to move it by 1% of its size.",
            "The width is measured, and changes only the speed.",
            "After ``_PROBE_SECONDS``, widths 1, 4 and 8 step in turn; 2 / largest curvature."]
    module = tmp_path / "planted.py"
    for text in caught:
        module.write_text(f'def f() -> None:\n    """{text}"""\n')
        assert len(measurements(module)) == 1, text
    module.write_text('"""' + "\n\n".join(kept) + '"""\n')
    assert measurements(module) == []


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules of ``graph`` (module -> modules it imports) that import each
    other, directly or round a longer circle: its strongly connected components of more than
    one module."""
    reach: dict[str, set[str]] = {}
    for start in graph:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        reach[start] = seen
    groups = {frozenset(m for m in graph if m in reach[n] and n in reach[m]) | {n}
              for n in graph if n in reach[n]}
    return sorted(sorted(g) for g in groups if len(g) > 1)


def test_no_modules_import_each_other() -> None:
    """Every import counts (also inside a function): a circle means two concepts that
    cannot be read apart (the full-batch and mini-batch loops were one)."""
    names = {m for _, m in modules()}
    graph = {m: (project_imports(p, m) & names) - {m} for p, m in modules()}
    assert import_cycles(graph) == []


def test_the_cycle_check_finds_a_circle_of_three() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(graph) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []
