"""The README's commands work as written.

1. Every ``python -m <project module> ...`` line in the README's ```bash blocks (and the ``$ ``
   lines of its ```console blocks) names a command that exists, every ``--option`` it uses is
   in that command's ``--help``, and its arguments parse. ```toml blocks are valid configs,
   and the example of "Configuration files" loads to the values it shows.
2. The README's test command is, verbatim, what ``.ci/run`` runs; the set-up commands pin
   the CPU build of torch and a CUDA install is documented.
3. ``python -m sweeps.run --help`` answers fast, and importing the CLIs pulls in none of
   torch, mlflow, optuna, pandas.
"""

from __future__ import annotations

import ast
import importlib
import re
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CI_RUN = ROOT / ".ci" / "run"

# The CLIs the README is expected to show; any other ``python -m`` module of these packages is
# checked the same way (so a new command in the README is never skipped silently).
CLI_MODULES = ("sweeps.run", "sweeps.train", "sweeps.export", "sweeps.compare",
               "sweeps.diagnose", "sweeps.ui")
PROJECT_PACKAGES = ("sweeps", "tracking", "objectives", "bench", "examples")
HEAVY = ("torch", "mlflow", "optuna", "pandas")
TORCH_PIN = "torch==2.13.0"
CUDA_INDEX = re.compile(r"--index-url\s+https://download\.pytorch\.org/whl/cu\d")

# Placeholder values as the README might write them, replaced before parsing (a token is
# replaced only when it is exactly one of these, so ``--state COMPLETE`` stays as written).
PLACEHOLDERS = {
    "PORT": "5001", "N": "2", "K": "5", "S": "60", "SECONDS": "60", "SEED": "0",
    "EPOCHS": "100", "N_TRIALS": "10", "LR": "0.01", "PATH": "out.json", "FILE": "my.toml",
    "JSON": "best.json", "PNG": "range.png", "URL": "http://127.0.0.1:5000",
    "HOST": "127.0.0.1", "STUDY": "rebalance",
}

SEPARATORS = {"&&", "||", ";", "|", "&"}
PYTHON = re.compile(r"(^|/)python(\d+(\.\d+)?)?$")
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


# -- reading the README ---------------------------------------------------------------------

@dataclass(frozen=True)
class Line:
    """One logical command line of a code block (continuations joined)."""

    lineno: int  # README line number where it starts
    lang: str  # bash or console
    raw: str  # as written (physical lines joined with newlines; console prompt removed)
    text: str  # continuations joined into one line, comment stripped


@dataclass(frozen=True)
class Invocation:
    line: Line
    module: str
    args: tuple[str, ...]  # as written, placeholders replaced

    @property
    def id(self) -> str:
        return f"L{self.line.lineno}:{self.module}"


def code_blocks(text: str) -> list[tuple[str, int, list[str]]]:
    """``(lang, first content line number, lines)`` for every fenced block."""
    blocks: list[tuple[str, int, list[str]]] = []
    lines, i = text.splitlines(), 0
    while i < len(lines):
        fence = re.match(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)", lines[i])
        if not fence:
            i += 1
            continue
        marker, lang, start = fence.group(2), fence.group(3).lower(), i + 2
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(marker):
            body.append(lines[i])
            i += 1
        blocks.append((lang, start, body))
        i += 1
    return blocks


def strip_comment(line: str) -> str:
    """``line`` without its shell comment (``#`` at a word start, outside quotes)."""
    quote, escaped = None, False
    for pos, char in enumerate(line):
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#" and (pos == 0 or line[pos - 1].isspace()):
            return line[:pos].rstrip()
    return line.rstrip()


def command_lines(text: str) -> list[Line]:
    """The logical command lines of the README's bash and console blocks."""
    out: list[Line] = []
    for lang, start, body in code_blocks(text):
        if lang in ("bash", "sh", "shell"):
            prompt = None
        elif lang == "console":
            prompt = "$ "
        else:
            continue
        i = 0
        while i < len(body):
            line, lineno = body[i], start + i
            i += 1
            if prompt is not None:
                if not line.startswith(prompt):
                    continue  # output
                line = line[len(prompt):]
            raw, joined = [line], strip_comment(line)
            while joined.endswith("\\") and i < len(body):  # continuation lines
                raw.append(body[i])
                joined = joined[:-1].rstrip() + " " + strip_comment(body[i]).strip()
                i += 1
            if joined.strip():
                out.append(Line(lineno, lang, "\n".join(raw), joined.strip()))
    return out


def split_commands(text: str) -> list[list[str]]:
    """Tokens of each command of a line, split at ``&&``, ``||``, ``;``, ``|``."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = ""  # comments are stripped already
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in SEPARATORS:
            commands.append([])
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


def python_module(tokens: list[str]) -> tuple[str, list[str]] | None:
    """``(module, args)`` when ``tokens`` runs ``python ... -m module args``."""
    while tokens and ENV_ASSIGNMENT.match(tokens[0]):
        tokens = tokens[1:]
    if not tokens or not PYTHON.search(tokens[0]):
        return None
    for i, token in enumerate(tokens[1:], start=1):
        if token == "-m":
            if i + 1 >= len(tokens):
                return None
            return tokens[i + 1], tokens[i + 2:]
        if token.startswith("-m") and len(token) > 2:
            return token[2:], tokens[i + 1:]
        if not token.startswith("-"):
            return None  # a script, not a module
    return None


def is_project_module(module: str) -> bool:
    return module.split(".")[0] in PROJECT_PACKAGES


def scan_readme() -> tuple[list[Line], list[Invocation], list[str]]:
    """The README's command lines, its project-module invocations, and lines it cannot read."""
    lines = command_lines(README.read_text(encoding="utf-8"))
    invocations: list[Invocation] = []
    problems: list[str] = []
    for line in lines:
        try:
            commands = split_commands(line.text)
        except ValueError as exc:  # unbalanced quotes and the like
            problems.append(f"README line {line.lineno}: cannot split {line.text!r}: {exc}")
            continue
        for tokens in commands:
            found = python_module(tokens)
            if found is None or not is_project_module(found[0]):
                continue
            module, args = found
            invocations.append(Invocation(line, module,
                                          tuple(PLACEHOLDERS.get(a, a) for a in args)))
    return lines, invocations, problems


LINES, INVOCATIONS, PROBLEMS = scan_readme()


# -- the modules ----------------------------------------------------------------------------

def entry_module(module: str) -> ModuleType:
    """The module ``python -m module`` runs (a package's ``__main__``)."""
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        pytest.fail(f"`python -m {module}` in the README: no such module ({exc})", pytrace=False)
    if hasattr(mod, "__path__"):  # a package: python -m runs its __main__
        try:
            mod = importlib.import_module(module + ".__main__")
        except ImportError as exc:
            pytest.fail(f"`python -m {module}` in the README: package without __main__ ({exc})",
                        pytrace=False)
    if not callable(getattr(mod, "main", None)):
        pytest.fail(f"`python -m {module}`: {mod.__name__} has no main(argv)", pytrace=False)
    return mod


_HELP: dict[str, str] = {}


def help_text(module: str, capsys: pytest.CaptureFixture[str]) -> str:
    """``main(["--help"])``'s output, after checking it exits 0 and prints a usage."""
    if module not in _HELP:
        mod = entry_module(module)
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            mod.main(["--help"])
        out, err = capsys.readouterr()
        assert exited.value.code in (0, None), (
            f"`python -m {module} --help` exited {exited.value.code!r}: {err.strip()}")
        assert "usage:" in out.lower(), f"`python -m {module} --help` printed no usage: {out!r}"
        _HELP[module] = out
    return _HELP[module]


def long_options(args: tuple[str, ...]) -> list[str]:
    return [a.split("=", 1)[0] for a in args if a.startswith("--") and len(a) > 2]


# -- 1. the README's commands ---------------------------------------------------------------

def test_readme_command_lines_are_readable() -> None:
    assert not PROBLEMS, "README code lines that cannot be split:\n" + "\n".join(PROBLEMS)
    assert LINES, "no command lines found in README.md's bash/console blocks"
    modules = {inv.module for inv in INVOCATIONS}
    assert "sweeps.run" in modules, (
        f"README shows no `python -m sweeps.run` line (found: {sorted(modules)}); "
        "is the code-block parsing in this test still right?")


@pytest.mark.parametrize("module", CLI_MODULES)
def test_cli_help_exits_0_with_usage(module: str, capsys: pytest.CaptureFixture[str]) -> None:
    help_text(module, capsys)


@pytest.mark.parametrize("inv", INVOCATIONS, ids=lambda inv: inv.id)
def test_readme_command_options_are_in_its_help(inv: Invocation,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    text = help_text(inv.module, capsys)
    missing = [opt for opt in long_options(inv.args)
               if not re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text)]
    assert not missing, (
        f"README line {inv.line.lineno} `{inv.line.text}`: {', '.join(missing)} not in "
        f"`python -m {inv.module} --help`")


@pytest.mark.parametrize("inv", INVOCATIONS, ids=lambda inv: inv.id)
def test_readme_command_arguments_parse(inv: Invocation,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    mod = entry_module(inv.module)
    build = getattr(mod, "build_parser", None)
    if build is None:
        pytest.skip(f"note: {mod.__name__} has no build_parser() (its parser is built inside "
                    f"main); README line {inv.line.lineno}'s arguments are checked only "
                    f"against --help")
    capsys.readouterr()
    try:
        build().parse_args(list(inv.args))
    except SystemExit as exc:
        _, err = capsys.readouterr()
        if exc.code not in (0, None):
            pytest.fail(f"README line {inv.line.lineno} `{inv.line.text}`: "
                        f"`python -m {inv.module}` rejects {list(inv.args)} "
                        f"(exit {exc.code}): {err.strip()}", pytrace=False)


def section(text: str, title: str) -> str:
    """The body of the README's ``## title`` section (up to the next ``## `` heading)."""
    found = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert found, f"README.md has no '## {title}' section"
    return found.group(1)


def toml_blocks(text: str) -> list[str]:
    return ["\n".join(body) + "\n" for lang, _, body in code_blocks(text) if lang == "toml"]


def test_readme_toml_blocks_are_valid_configs(tmp_path: Path) -> None:
    """Every ```toml block of the README loads with ``--config``'s loader and validates."""
    from sweeps.errors import UsageError
    from sweeps.study.config import SweepConfig, load_toml

    for i, text in enumerate(toml_blocks(README.read_text(encoding="utf-8"))):
        path = tmp_path / f"readme_{i}.toml"
        path.write_text(text, encoding="utf-8")
        try:
            SweepConfig().with_overrides(load_toml(str(path))).validated()
        except UsageError as exc:
            pytest.fail(f"README toml block {i + 1}:\n{text}\n{exc}", pytrace=False)


def test_readme_configuration_example_is_the_config_it_shows(tmp_path: Path) -> None:
    """The example of "Configuration files", loaded by the project's own loader, gives these
    values and changes nothing else; the command line wins over it, as the section says."""
    from objectives import build
    from sweeps.cli.run import build_parser, config_from_args
    from sweeps.study.config import SweepConfig, load_toml

    blocks = toml_blocks(section(README.read_text(encoding="utf-8"), "Configuration files"))
    assert len(blocks) == 1, f"expected one ```toml block in the section, found {len(blocks)}"
    path = tmp_path / "example.toml"
    path.write_text(blocks[0], encoding="utf-8")

    config = SweepConfig().with_overrides(load_toml(str(path))).validated()

    expected = {
        "objective": "digits",
        "n_trials": 40,
        "optimizers": ("adam", "sgd"),
        "lr_range": "auto",
        "objective_args": {"hidden": "32"},
    }
    default = SweepConfig()
    changed = {f.name: getattr(config, f.name) for f in fields(SweepConfig)
               if getattr(config, f.name) != getattr(default, f.name)}
    assert changed == expected
    assert config.study_name == "digits"
    assert build(config.objective, config.objective_args).arguments()["hidden"] == 32
    args = build_parser().parse_args(["--config", str(path), "--n-trials", "5"])
    assert config_from_args(args) == SweepConfig().with_overrides({**expected, "n_trials": 5})


# -- 2. the README and CI agree -------------------------------------------------------------

def commands_of(line: Line) -> list[list[str]]:
    """``split_commands`` of a line, or nothing for a line that cannot be split (those fail
    ``test_readme_command_lines_are_readable``)."""
    try:
        return split_commands(line.text)
    except ValueError:
        return []


def runs_pytest(line: Line) -> bool:
    return any((found := python_module(tokens)) is not None and found[0] == "pytest"
               for tokens in commands_of(line))


def sets_up(line: Line) -> bool:
    """A set-up command: creates the virtual environment."""
    return any((found := python_module(tokens)) is not None and found[0] == "venv"
               for tokens in commands_of(line))


def pip_installs(line: Line) -> list[list[str]]:
    out: list[list[str]] = []
    for tokens in commands_of(line):
        if len(tokens) > 1 and tokens[0] in ("pip", "pip3") and tokens[1] == "install":
            out.append(tokens[2:])
        found = python_module(tokens)
        if found and found[0] == "pip" and found[1][:1] == ["install"]:
            out.append(found[1][1:])
    return out


def test_readme_test_command_is_what_ci_runs() -> None:
    candidates = [line for line in LINES if runs_pytest(line)]
    assert candidates, "README shows no line that runs `python -m pytest` (the test command)"
    command = candidates[0]  # the first one shown is the test command
    ci_lines = [ln.strip() for ln in CI_RUN.read_text(encoding="utf-8").splitlines()]
    ci_commands = [ln for ln in ci_lines if ln and not ln.startswith("#")]
    assert command.raw.strip() in ci_commands or (
        "\n" in command.raw and command.raw in CI_RUN.read_text(encoding="utf-8")), (
        f"README's test command (line {command.lineno}) is not verbatim in .ci/run:\n"
        f"  README:  {command.raw}\n  .ci/run: "
        + ("\n           ".join(c for c in ci_commands if "pytest" in c) or "(no pytest line)"))


def test_readme_setup_pins_cpu_torch_and_documents_cuda() -> None:
    setups = [line for line in LINES if sets_up(line)]
    assert setups, "README shows no set-up command (one that runs `python3 -m venv`)"
    for line in setups:
        installs = pip_installs(line)
        assert installs, f"README set-up line {line.lineno} installs nothing: {line.text}"
        assert any(TORCH_PIN in args for args in installs), (
            f"README set-up line {line.lineno} does not pin {TORCH_PIN} (pip would pull a "
            f"CUDA build of torch): {line.text}")
    test_command = next((line for line in LINES if runs_pytest(line)), None)
    if test_command is not None:
        assert any(TORCH_PIN in args for args in pip_installs(test_command)), (
            f"README's test command (line {test_command.lineno}) does not pin {TORCH_PIN}")
    assert CUDA_INDEX.search(README.read_text(encoding="utf-8")), (
        "README does not document a CUDA install "
        "(`pip install torch --index-url https://download.pytorch.org/whl/cu...`)")


# -- 3. start-up ----------------------------------------------------------------------------

def test_sweeps_run_help_is_fast() -> None:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "sweeps.run", "--help"], cwd=ROOT,
                              capture_output=True, text=True, timeout=60, check=False)
        times.append(time.perf_counter() - start)
        assert done.returncode == 0, f"sweeps.run --help exited {done.returncode}: {done.stderr}"
        assert "usage:" in done.stdout
    median = statistics.median(times)
    assert median < 2.0, (f"`python -m sweeps.run --help` took {median:.2f} s (median of "
                          f"{[round(t, 2) for t in times]}); the bar here is 2.0 s")


def _heavy_after(imports: str) -> list[str]:
    code = (f"import sys, {imports}; "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, f"`import {imports}` failed: {done.stderr.strip()}"
    return ast.literal_eval(done.stdout.strip())


def test_cli_imports_are_light() -> None:
    heavy = _heavy_after(", ".join(CLI_MODULES))
    if heavy:
        culprits = {m: found for m in CLI_MODULES if (found := _heavy_after(m))}
        pytest.fail(f"importing the CLIs pulls in {heavy}: " + "; ".join(
            f"{m} -> {', '.join(found)}" for m, found in culprits.items()), pytrace=False)

