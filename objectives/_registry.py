"""Objectives by name, or by ``pkg.module:attr``, built from string arguments."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any

from ._base import Objective
from ._errors import ObjectiveError

__all__ = ["available", "build", "loads_back", "register"]

_FACTORIES: dict[str, Callable[..., Objective]] = {}
_BUILTINS = {"rebalance": "objectives.rebalance:Rebalance", "digits": "objectives.digits:Digits",
             "digits-cnn": "objectives.digits_cnn:DigitsCNN"}


def register(name: str, factory: Callable[..., Objective]) -> None:
    """Make ``factory(**kwargs)`` available as objective ``name``."""
    _FACTORIES[name] = factory


def available() -> list[str]:
    """Names of the registered objectives."""
    return sorted(set(_FACTORIES) | set(_BUILTINS))


def build(spec: str, args: Mapping[str, str] | None = None, *,
          from_file: bool = False) -> Objective:
    """Build objective ``spec`` (a registered name or ``pkg.module:attr``) from string args.

    Each argument is converted to the type the factory's signature declares. With
    ``from_file`` (a name read from an exported JSON file, not typed by the user), a
    ``pkg.module:attr`` must be an objective class or instance: a file never gets an arbitrary
    callable called with its arguments.
    """
    factory = _resolve(spec)
    if from_file and spec not in _FACTORIES and spec not in _BUILTINS \
            and not _objective_like(factory):
        raise ObjectiveError("objective", spec, "a name from a file must be a registered "
                             "objective, or an objective class or instance")
    if isinstance(factory, Objective) and not isinstance(factory, type):
        if args:
            raise ObjectiveError(
                "objective-arg", ",".join(args), f"{spec} is an instance and takes no arguments"
            )
        objective = factory
    else:
        objective = _call(spec, factory, args)
    if spec not in _FACTORIES and spec not in _BUILTINS:
        _name_by_path(objective, spec)
    return objective


def loads_back(name: str, objective: object) -> bool:
    """Whether ``build(name)`` in a new process (``sweeps.train --params`` on an export)
    finds ``objective`` again: ``pkg.module:attr`` naming this object or its class, or a
    built-in objective's name for an instance of it. A ``register`` call of this process
    does not count (a new process has not made it), nor does a name in ``__main__``."""
    module_name, sep, attr = _BUILTINS.get(name, name).partition(":")
    if not sep or module_name == "__main__":
        return False
    try:
        found = getattr(importlib.import_module(module_name), attr)
    except Exception:  # not importable, no such attribute, or its module fails on import
        return False
    return found is objective or (isinstance(found, type) and isinstance(objective, found))


def _call(spec: str, factory: Callable[..., Any], args: Mapping[str, str] | None) -> Objective:
    """``factory`` called with ``args`` converted to the types its signature declares."""
    kwargs = _convert(spec, factory, dict(args or {}))
    try:
        objective = factory(**kwargs)
    except ObjectiveError:
        raise
    except (TypeError, ValueError) as exc:
        if args:
            raise ObjectiveError("objective-arg", dict(args), str(exc)) from None
        raise ObjectiveError("objective", spec, f"it could not be built ({exc})") from None
    if not isinstance(objective, Objective):
        raise ObjectiveError(
            "objective", spec, "it must build an object with init_params, loss and arguments"
        )
    return objective


def _name_by_path(objective: Objective, spec: str) -> None:
    """Name ``objective`` by the import path it was loaded from, whatever ``name`` it was
    given: a study and its export store the name, and ``sweeps.train --params`` loads the
    objective back by it."""
    if objective.name == spec:
        return
    try:
        objective.name = spec
    except AttributeError:
        raise ObjectiveError("objective", spec, f"its name {objective.name!r} cannot be set to "
                             f"the path it was loaded from; give it name={spec!r}") from None


def _objective_like(found: Any) -> bool:
    """A class whose instances, or an object that, has the objective protocol's methods."""
    return all(callable(getattr(found, m, None)) for m in ("init_params", "loss", "arguments"))


def _resolve(spec: str) -> Any:
    if spec in _FACTORIES:
        return _FACTORIES[spec]
    target = _BUILTINS.get(spec, spec)
    if ":" not in target:
        allowed = ", ".join(available())
        raise ObjectiveError("objective", spec, f"use one of {allowed} or pkg.module:attr")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ObjectiveError("objective", spec, f"module {module_name!r} not importable ({exc})")
    try:
        found = getattr(module, attr)
    except AttributeError:
        raise ObjectiveError("objective", spec,
                             f"{module_name} has no attribute {attr!r}") from None
    if spec in _BUILTINS:
        _FACTORIES[spec] = found
    return found


def _convert(spec: str, factory: Callable[..., Any], args: dict[str, str]) -> dict[str, Any]:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return dict(args)
    hints = _hints(factory)
    names = [p for p in signature.parameters if p != "self"]
    out: dict[str, Any] = {}
    for key, raw in args.items():
        if key not in signature.parameters:
            allowed = ", ".join(names) or "no arguments"
            raise ObjectiveError("objective-arg", key, f"{spec} accepts {allowed}")
        out[key] = _parse(key, raw, hints.get(key, str))
    return out


def _hints(factory: Callable[..., Any]) -> dict[str, Any]:
    target = factory.__init__ if isinstance(factory, type) else factory  # type: ignore[misc]
    try:
        hints = typing.get_type_hints(target)
    except Exception:
        hints = {}
    if dataclasses.is_dataclass(factory):
        hints = {**{f.name: f.type for f in dataclasses.fields(factory)}, **hints}
    return hints


def _parse(key: str, raw: str, kind: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    if kind is bool or kind == "bool":
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ObjectiveError(f"objective-arg {key}", raw, "use true or false")
    for simple in (int, float):
        if kind is simple or kind == simple.__name__:
            try:
                return simple(raw)
            except ValueError:
                raise ObjectiveError(
                    f"objective-arg {key}", raw, f"use a number of type {simple.__name__}"
                ) from None
    return raw
