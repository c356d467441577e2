"""Inputs of ``sweeps.run`` for the property tests of ``test_bad_input``, each with the one
outcome it must have, worked out from the rules of the fields (SPEC section 9, the field
comments of ``sweeps.study.config.SweepConfig`` and the command's ``--help``): from the code
under test only the names it allows (optimizers, samplers, ...) and its list of fields.

An input is a set of settings that are valid together (``valid_settings``), given on the
command line or in the ``--config`` file, plus at most one probe: one more setting drawn from
a wide pool of values (numbers, names, free text, line breaks), a key of the TOML file, or a
whole file's content. ``cli_outcome``, ``toml_outcome`` and ``file_outcome`` decide whether
the probe is valid, and if not, how the one error line starts and which value it shows. With
at most one questionable setting there is always exactly one field the line must name.
``field_inputs`` draws one field alone, set to values of its type on both sides of its rule.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import assume
from hypothesis import strategies as st

from sweeps.checks import DEVICES, PRECISIONS
from sweeps.optim import OPTIMIZERS, SCHEDULERS
from sweeps.study.config import field_names
from sweeps.study.metric import DIRECTIONS, READ_AT
from sweeps.study.pruners import PRUNERS
from sweeps.study.samplers import SAMPLERS

__all__ = ["CHOICES", "FLOATS", "FREE", "LEAST", "NAMED", "NAME_LISTS", "SWITCHES", "Outcome",
           "PROBED", "RunInput", "field_inputs", "run_inputs", "toml_value"]

# -------------------------------------------------------------------------- the fields' rules

LEAST = {"n_trials": 1, "epochs": 1, "log_every": 1, "workers": 1, "threads": 1,
         "batch": 1}  # integers, at least this
SEED_END = 2**32  # seed: an integer from 0 to 2**32 - 1
FLOATS = ("lr_min", "lr_max", "timeout", "weight_decay", "grad_clip", "adam_beta1",
          "adam_beta2", "adam_eps")  # numbers (TOML: int or float)
CHOICES: dict[str, tuple[str, ...]] = {
    "sampler": tuple(SAMPLERS), "pruner": tuple(PRUNERS), "device": DEVICES,
    "lr_range": ("fixed", "auto"), "metric_at": READ_AT, "precision": PRECISIONS}
NAME_LISTS = {"optimizers": tuple(OPTIMIZERS), "schedulers": tuple(SCHEDULERS),
              "direction": DIRECTIONS}  # comma-separated, one or more
TEXT_LISTS = ("metric", "constraints")  # comma-separated, any number (metrics: checked
# against the objective's later; constraints: each METRIC<=NUMBER or METRIC>=NUMBER)
NAMED = ("study", "experiment")  # 1-100 letters, digits, '_', '.', '-', first alphanumeric
FREE = ("objective", "storage", "tracking_uri", "tracking_db", "export")  # text
CONSTRAINT = re.compile(r"\s*[A-Za-z_][A-Za-z0-9_/.]*\s*(<=|>=)\s*(\S+)\s*")
SWITCHES = ("quiet", "plots", "prune_stalled", "per_tensor", "log_steps")  # booleans
NAME_RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
HTTP = ("http://", "https://")
DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
# a value argparse takes for an option's argument although it starts with '-'
NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")
RANGES = ("weight_decay_range",)  # two numbers LOW,HIGH, 0 < LOW < HIGH
PROBED = (*LEAST, "seed", *FLOATS, *CHOICES, *NAME_LISTS, *TEXT_LISTS, *NAMED, *FREE,
          *RANGES, "objective_args")


def label(name: str) -> str:
    """How errors name a field: ``n_trials`` as ``n-trials``."""
    return name.replace("_", "-")


def flag(name: str) -> str:
    return {"objective_args": "--objective-arg", "constraints": "--constraint"}.get(
        name, f"--{label(name)}")


# -------------------------------------------------------------------------- outcomes


@dataclass(frozen=True)
class Outcome:
    """Valid (``error`` is None; the config then holds the fields of ``sets``), or the start
    of the one error line after ``sweeps.run: error: `` and the bad value it shows (where the
    line shows it as written here)."""

    sets: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    shows: str | None = None


def bad(field_label: str, value: object) -> Outcome:
    """A bad value of ``field_label``: the line names the field, then the value's repr."""
    return Outcome(error=f"{field_label}: ", shows=repr(value))


def value_outcome(name: str, value: Any, others: dict[str, Any]) -> Outcome:
    """Field ``name`` set to ``value`` (already of the field's type) beside the valid
    settings ``others``."""
    ok = Outcome({name: value})
    if name in LEAST:
        return ok if value >= LEAST[name] else bad(label(name), value)
    if name == "seed":
        return ok if 0 <= value < SEED_END else bad("seed", value)
    if name in ("lr_min", "lr_max"):
        if value and others.get("lr_range") == "auto":  # checked before the value itself
            return bad("lr-range", "auto")
        if not (math.isfinite(value) and value > 0):
            return bad(label(name), value)
        bounds = {k: others[k] for k in ("lr_min", "lr_max") if k in others}
        bounds[name] = value
        if len(bounds) == 2 and bounds["lr_min"] >= bounds["lr_max"]:
            return bad("lr-min", bounds["lr_min"])
        return bad("lr-range", "auto") if others.get("lr_range") == "auto" else ok
    if name == "timeout":
        return ok if value > 0 else bad("timeout", value)
    if name == "weight_decay":
        if not (math.isfinite(value) and value >= 0):
            return bad("weight-decay", value)
        return Outcome(error="weight-decay-range: ") if "weight_decay_range" in others else ok
    if name in ("grad_clip", "adam_eps"):
        return ok if math.isfinite(value) and value > 0 else bad(label(name), value)
    if name in ("adam_beta1", "adam_beta2"):
        return ok if 0 <= value < 1 else bad(label(name), value)
    if name == "weight_decay_range":
        low_high = len(value) == 2 and all(math.isfinite(v) for v in value) \
            and 0 < value[0] < value[1]
        clash = "weight_decay" in others or others.get("sampler") == "grid"
        return ok if low_high and not clash else Outcome(error="weight-decay-range: ")
    if "weight_decay_range" in others and (name == "weight_decay"
                                           or name == "sampler" and value == "grid"):
        return Outcome(error="weight-decay-range: ")
    if name in CHOICES:
        if value not in CHOICES[name]:
            return bad(label(name), value)
        bounded = "lr_min" in others or "lr_max" in others
        auto_bounded = name == "lr_range" and value == "auto" and bounded
        return bad("lr-range", "auto") if auto_bounded else ok
    if name in NAME_LISTS:
        unknown = [n for n in value or ("",) if n not in NAME_LISTS[name]]
        return bad(name, unknown[0]) if unknown else ok
    if name == "constraints":
        broken = [c for c in value if not constraint_ok(c)]
        return bad("constraint", broken[0]) if broken else ok
    if name in NAMED:
        return ok if NAME_RULE.fullmatch(value) else bad(name, value)
    if name == "objective" and "study" not in others:  # the study is named after it
        derived = re.sub(r"[^A-Za-z0-9_.-]+", "-", value).strip("-.")
        return ok if NAME_RULE.fullmatch(derived) else bad("study", derived)
    if name == "export":  # a file in an existing folder (relative: to the current one)
        path = Path(value)
        return ok if not path.is_dir() and path.parent.is_dir() else bad("export", value)
    tracking_uri = others.get("tracking_uri", DEFAULT_TRACKING_URI)
    if name == "tracking_db" and not tracking_uri.startswith(HTTP):
        return Outcome(error="tracking-db: ")  # the line shows the URL redacted
    if name == "tracking_uri" and "tracking_db" in others and not value.startswith(HTTP):
        return Outcome(error="tracking-db: ")
    return ok


def constraint_ok(text: str) -> bool:
    """``text`` bounds a metric by a finite number with <= or >=."""
    match = CONSTRAINT.fullmatch(text)
    if match is None:
        return False
    try:
        return math.isfinite(float(match.group(2)))
    except ValueError:
        return False


def cli_outcome(name: str, raw: str, others: dict[str, Any]) -> Outcome:
    """``--<name> <raw>`` as the last argument, beside the valid settings ``others``."""
    option = flag(name)
    if raw.startswith("-") and raw != "-" and not NEGATIVE_NUMBER.match(raw):
        return Outcome(error=f"argument {option}: expected one argument")
    value: Any = raw
    if name in LEAST or name == "seed":
        try:
            value = int(raw)
        except ValueError:
            return Outcome(error=f"argument {option}: invalid int value: ", shows=repr(raw))
    elif name in FLOATS:
        try:
            value = float(raw)
        except ValueError:
            return Outcome(error=f"argument {option}: invalid float value: ",
                           shows=repr(raw))
    elif name in NAME_LISTS or name in TEXT_LISTS:  # comma-separated
        value = names_of(raw)
    elif name in RANGES:  # comma-separated numbers
        numbers = numbers_of(names_of(raw))
        if numbers is None:
            return Outcome(error=f"{label(name)}: ")
        value = numbers
    elif name == "objective_args":  # KEY=VALUE
        key, sep, text = raw.partition("=")
        if not sep or not key.strip():
            return bad("objective-arg", raw)
        return Outcome({name: {key.strip(): text.strip()}})
    return value_outcome(name, value, others)


def toml_outcome(key: str, value: Any, others: dict[str, Any]) -> Outcome:
    """``key = value`` in the config file, beside the valid settings ``others``."""
    name = key.replace("-", "_")
    if name not in field_names():
        return bad("config key", key)
    wrong = bad(f"config key {name}", value)
    if name in NAME_LISTS or name in TEXT_LISTS:  # a list or a comma-separated string
        if isinstance(value, str):
            value = names_of(value)
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = tuple(value)
        else:
            return wrong
    elif name in RANGES:  # a list of numbers or a comma-separated string
        numbers = numbers_of(names_of(value) if isinstance(value, str) else value)
        if numbers is None:
            return wrong
        value = numbers
    elif name == "objective_args":  # a table; its values as text
        if not isinstance(value, dict):
            return wrong
        return Outcome({name: {str(k): str(v) for k, v in value.items()}})
    elif name in LEAST or name == "seed":
        if not isinstance(value, int) or isinstance(value, bool):
            return wrong
    elif name in FLOATS:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return wrong
        try:
            value = float(value)
        except OverflowError:  # an integer beyond the float range
            return wrong
    elif name in SWITCHES:
        return Outcome({name: value}) if isinstance(value, bool) else wrong
    elif not isinstance(value, str):
        return wrong
    return value_outcome(name, value, others)


def numbers_of(values: Any) -> tuple[float, ...] | None:
    """``values`` (a list or tuple) as floats; None where one is not a number."""
    if not isinstance(values, (list, tuple)) or any(isinstance(v, bool) for v in values):
        return None
    try:
        return tuple(float(v) for v in values)
    except (TypeError, ValueError, OverflowError):
        return None


def names_of(text: str) -> tuple[str, ...]:
    """A comma-separated list of names; blanks around them and empty ones dropped."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


# -------------------------------------------------------------------------- rendering


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        if value == "1979-05-27T07:32:00Z":
            return value  # an offset date-time
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")  # TOML
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def cli_args(name: str, value: Any) -> list[str]:
    """A valid setting on the command line."""
    if name in SWITCHES:
        on = {"plots": None, "quiet": "--quiet"}.get(name, flag(name))
        off = {"plots": "--no-plots", "quiet": None}.get(name, f"--no-{label(name)}")
        chosen = on if value else off
        return [chosen] if chosen else []
    if name == "objective_args":
        return [a for k, v in value.items() for a in ("--objective-arg", f"{k}={v}")]
    if name in NAME_LISTS or name in TEXT_LISTS:
        return [flag(name), ",".join(value)]
    if name in RANGES:
        return [flag(name), ",".join(repr(v) for v in value)]
    if isinstance(value, float):
        return [flag(name), repr(value)]
    return [flag(name), str(value)]


# -------------------------------------------------------------------------- strategies

WORDS = ["sgd", "adam,sgd", "lion", "none", "cosine,warp", "tpe", "grid", "median", "cpu", "gpu",
         "auto", "fixed", "best", "maximize", "rebalance", "digits", "nope", "json:dumps",
         "size=4", "size=x", "colour=red", "=", "=3", "a=b=c", ",", " , ", "sweep.toml",
         "missing.toml", ".", "", "-", "--", "-x", "0", "1", "3", "1e-400", "1e400", "nan",
         "inf", "-inf", "0.5", "-0.5", "-1", "-1e-05", "../x", "s", "nodir/best.json",
         "best.json", "sqlite:///mlruns/optuna.db", "redis://x", "http://127.0.0.1:9", "mlruns"]
# Real argv cannot hold NUL; surrogates only arise from undecodable bytes. A value starting
# with '-' (other than a negative number) is taken for an option: drawn from WORDS only.
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
               max_size=12).filter(lambda t: not t.startswith("-"))
# Everything str.splitlines() breaks at: an error message echoing such a value must still be
# one line (sweeps.cli.common.one_line). Drawn often, not left to chance.
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
BROKEN = st.lists(st.one_of(st.sampled_from([*LINE_BREAKS, "\r\n"]), st.sampled_from(WORDS)),
                  min_size=2, max_size=4).map("".join).filter(lambda t: not t.startswith("-"))
NUMBERS = st.one_of(st.integers(-10**6, 10**6).map(str), st.integers().map(str),
                    st.floats(allow_nan=True, allow_infinity=True).map(repr))
RAW = st.one_of(st.sampled_from(WORDS), TEXT, BROKEN, NUMBERS)


KEYS = st.one_of(st.sampled_from(field_names()),
                 st.sampled_from(field_names()).map(label),
                 st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True))
SCALARS = st.one_of(  # TOML integers are 64-bit
    st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(), TEXT, BROKEN, st.sampled_from(WORDS), st.just("1979-05-27T07:32:00Z"))
TOML_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(KEYS, inner, max_size=3)),
    max_leaves=6)
FILES = st.one_of(
    st.binary(max_size=40), TEXT.map(str.encode), BROKEN.map(str.encode),
    st.sampled_from([b"n_trials = \n", b"[sweep", b"optimizers = [", b"= 3", b"\x00",
                     b"study = '\xff\xfe'\n", b"[sweep]\nn_trials = 3\n", b"quiet = 1\n",
                     b"epochs = 0\n", b"lr_min = 1" + b"0" * 400 + b"\n"]))
PLAIN = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), min_size=1,
                max_size=12).filter(lambda t: not t.startswith("-"))


def typed_values(name: str) -> st.SearchStrategy[Any]:
    """Values of ``name``'s type, on both sides of its rule (as Python values)."""
    if name in LEAST or name == "seed":
        return st.one_of(st.integers(-2, 3), st.integers(SEED_END - 2, SEED_END + 1))
    if name in FLOATS:
        return st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                         st.sampled_from([0.0, -0.0, 1e-3, 0.5, 10.0]))
    if name in CHOICES:
        allowed = CHOICES[name]
        return st.sampled_from([*allowed, *(a.upper() for a in allowed), f" {allowed[0]}"])
    if name in NAME_LISTS:
        return st.lists(st.sampled_from([*NAME_LISTS[name], "lion", "", " "]), max_size=3)
    if name == "constraints":
        return st.lists(st.sampled_from(["trial_seconds<=30", " val_loss >= 0.5", "x<3",
                                         "a<=nan", "b>=1e400", "c<=", "<=1", "d=>1", ""]),
                        max_size=3)
    if name == "metric":
        return st.lists(st.sampled_from(["val_loss", "trial_seconds", "nope", "", " "]),
                        max_size=3)
    if name in RANGES:
        return st.lists(st.sampled_from([1e-5, 1e-2, 0.0, -1.0, math.inf, math.nan, 3.0]),
                        max_size=3)
    if name in NAMED:
        return st.one_of(st.from_regex(NAME_RULE, fullmatch=True),
                         st.sampled_from(["a" * 100, "a" * 101, "_a", "a b", "a/b", ".a"]))
    if name == "export":
        return st.sampled_from(["best.json", "nodir/best.json", ".", "", "..", "../x.json"])
    if name in ("tracking_uri", "tracking_db"):
        return st.sampled_from(["http://127.0.0.1:9", "https://h", "sqlite:///t.db"])
    if name == "objective_args":
        return st.sampled_from(["size=4", " size = 4 ", "size", "=4", " =4", "k=v=w"])
    if name in SWITCHES:
        return st.booleans()
    return PLAIN


def typed_text(name: str) -> st.SearchStrategy[str]:
    """``typed_values`` as written on the command line."""
    return typed_values(name).map(
        lambda v: ",".join(map(str, v)) if isinstance(v, list) else repr(v)
        if isinstance(v, float) else str(v))


def raw_values(name: str) -> st.SearchStrategy[str]:
    """Command-line values for ``--<name>``: its type's and any text."""
    return st.one_of(typed_text(name), RAW)


def toml_values(key: str) -> st.SearchStrategy[Any]:
    """TOML values for ``key``: its field's type's and any."""
    name = key.replace("-", "_")
    if name not in field_names() or name == "objective_args":
        return TOML_VALUES
    return st.one_of(typed_values(name), TOML_VALUES)


@st.composite
def valid_settings(draw: st.DrawFn) -> dict[str, Any]:
    """Settings of some fields, valid each and together."""
    pick = draw(st.fixed_dictionaries({}, optional={
        **{name: st.integers(least, 2**63 - 1) for name, least in LEAST.items()},
        "seed": st.integers(0, SEED_END - 1),
        "lr_min": st.floats(min_value=0, exclude_min=True, allow_infinity=False),
        "lr_max": st.floats(min_value=0, exclude_min=True, allow_infinity=False),
        "timeout": st.floats(min_value=0, exclude_min=True),
        **{name: st.sampled_from(allowed) for name, allowed in CHOICES.items()},
        **{name: st.lists(st.sampled_from(allowed), min_size=1, max_size=3).map(tuple)
           for name, allowed in NAME_LISTS.items()},
        **{name: st.from_regex(NAME_RULE, fullmatch=True) for name in NAMED},
        "objective": st.sampled_from(["rebalance", "digits", "digits-cnn", "json:dumps",
                                      "tests.minibatch_objectives:tiny"]),
        "storage": PLAIN, "metric": st.lists(PLAIN, max_size=3).map(
            lambda names: tuple(n for part in names for n in names_of(part))),
        "constraints": st.lists(st.sampled_from(["trial_seconds<=30", "val_loss>=0.5",
                                                 "loss <= 1e-3"]), max_size=2).map(tuple),
        "tracking_uri": st.sampled_from(["sqlite:///t.db", "http://127.0.0.1:9", "https://h"]),
        "tracking_db": st.just("postgresql://u:secret@127.0.0.1:9/db"),
        "export": st.sampled_from(["best.json", "./best.json"]),
        "objective_args": st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True),
                                          PLAIN, max_size=2),
        **{name: st.booleans() for name in SWITCHES},
        "weight_decay_range": st.tuples(st.sampled_from([1e-6, 1e-4]),
                                        st.sampled_from([1e-3, 0.1])),
    }))
    if "weight_decay_range" in pick:  # neither beside a fixed weight decay nor on a grid
        pick.pop("weight_decay", None)
        if pick.get("sampler") == "grid":
            pick["sampler"] = "tpe"
    if "lr_min" in pick and "lr_max" in pick:
        low, high = sorted((pick["lr_min"], pick["lr_max"]))
        assume(low < high)
        pick["lr_min"], pick["lr_max"] = low, high
    if pick.get("lr_range") == "auto" and ("lr_min" in pick or "lr_max" in pick):
        pick["lr_range"] = "fixed"
    if not pick.get("tracking_uri", DEFAULT_TRACKING_URI).startswith(HTTP):
        pick.pop("tracking_db", None)
    return pick


@dataclass(frozen=True)
class RunInput:
    """The arguments, the config file they name (``config``, None: none) and its content
    (``toml``, None: no such file), and the outcome."""

    argv: list[str]
    config: str | None
    toml: bytes | None
    outcome: Outcome


@st.composite
def field_inputs(draw: st.DrawFn, name: str) -> RunInput:
    """Field ``name`` alone, on the command line or in the config file, set to a value of its
    type on either side of its rule."""
    if name == "objective_args" or draw(st.booleans()):
        raw = draw(typed_text(name))
        return RunInput([flag(name), raw], None, None, cli_outcome(name, raw, {}))
    line = f"{name} = {toml_value(draw(typed_values(name)))}"
    value = tomllib.loads(line)[name]
    return RunInput(["--config", "sweep.toml"], "sweep.toml", f"{line}\n".encode("utf-8"),
                    toml_outcome(name, value, {}))


FILE_MISTAKES = [("missing.toml", None), (".", None)]  # (path, content): no file; a folder
ARGV_MISTAKES = [  # (last arguments, the line's start): options the parser cannot take
    (["--learning-rate", "0.1"], "unrecognized arguments: --learning-rate 0.1"),
    (["--lr", "0.1"], "ambiguous option: --lr could match --lr-min, --lr-max, --lr-range"),
    (["stray\nword"], "unrecognized arguments: stray | word"),
    (["--epochs"], "argument --epochs: expected one argument"),
    (["--config"], "argument --config: expected one argument"),
]


@st.composite
def run_inputs(draw: st.DrawFn, command_line: bool = True) -> RunInput:
    """Valid settings, each on the command line or in the config file (which may also hold
    another value of a setting the command line has: the command line wins), and at most one
    probe; ``command_line=False``: a config file alone (``argv`` is then only its path)."""
    settings = draw(valid_settings())
    kinds = ["none", "toml", "file"] + (["cli", "cli", "argv"] if command_line else [])
    kind = draw(st.sampled_from(kinds))
    in_file = {name for name in settings if not command_line or draw(st.booleans())}
    lines: list[str] = []  # the config file's lines besides the settings
    last: list[str] = []  # the last arguments
    outcome = Outcome()
    path, content = "sweep.toml", None
    if kind == "cli":
        name = draw(st.sampled_from(PROBED))
        settings.pop(name, None)
        raw = draw(raw_values(name))
        outcome, last = cli_outcome(name, raw, settings), [flag(name), raw]
    elif kind == "argv":
        last, error = draw(st.sampled_from(ARGV_MISTAKES))
        outcome = Outcome(error=error)
    elif kind == "toml":
        key = draw(KEYS)
        settings.pop(key.replace("-", "_"), None)
        line = f"{json.dumps(key)} = {toml_value(draw(toml_values(key)))}"
        value = tomllib.loads(line)[key]  # what the file holds (a date-time, not its text)
        outcome = toml_outcome(key, value, settings)
        lines.append(line)
    elif kind == "file":  # the whole file drawn; the settings on the command line, if any
        in_file = set()
        if not command_line:
            settings.clear()
        path, content = draw(st.one_of(st.tuples(st.just("sweep.toml"), FILES),
                                       st.sampled_from(FILE_MISTAKES)))
        outcome = bad("config", path) if content is None else file_outcome(content, settings)
    expected = dict(settings)
    if kind != "file":  # the file may also hold other values of settings the command line has
        shadow = draw(valid_settings())
        for name in sorted((settings.keys() - in_file) & shadow.keys()):
            # one the command line says (unlike quiet off, plots on, no objective arguments)
            if cli_args(name, settings[name]) and draw(st.booleans()):
                lines.append(f"{name} = {toml_value(shadow[name])}")
                if name == "objective_args":  # merged, the command line's winning
                    expected[name] = {**shadow[name], **settings[name]}
    if kind != "file" and (lines or in_file or not command_line):
        lines += [f"{name} = {toml_value(settings[name])}" for name in sorted(in_file)
                  if name in settings]
        content = "".join(f"{line}\n" for line in lines).encode("utf-8")
    config = path if kind == "file" or content is not None else None
    argv = [a for name, value in settings.items() if name not in in_file
            for a in cli_args(name, value)]
    if outcome.error is None:
        outcome = Outcome({**expected, **outcome.sets})
    return RunInput([*(["--config", config] if config else []), *argv, *last], config,
                    content, outcome)


def file_outcome(content: bytes, settings: dict[str, Any]) -> Outcome:
    """A config file of ``content``, beside the valid ``settings`` on the command line (its
    key leaves them: it would be overridden); rejects a file of several keys (more than one
    questionable setting)."""
    try:  # read as text files are: '\r\n' and '\r' as line feeds
        text = content.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
        raw = tomllib.loads(text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return bad("config", "sweep.toml")
    assume(len(raw) <= 1)
    for key, value in raw.items():
        settings.pop(key.replace("-", "_"), None)
        return toml_outcome(key, value, settings)
    return Outcome()
