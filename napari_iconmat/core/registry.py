"""Engines by name.

Engine modules are imported lazily: listing engines or running ``iconmat --help``
does not import torch. A new engine is one module plus one line in ``_ENGINES``.
"""

from __future__ import annotations

import importlib

from .engine import Engine, EngineStatus
from .errors import InputError
from .options import check_options

__all__ = ["DEFAULT_ENGINE", "engine_names", "parse_engine_options", "get_engine_class", "make_engine", "check_engine_params", "engine_statuses"]

DEFAULT_ENGINE = "classical"

# name -> "module:Class"
_ENGINES: dict[str, str] = {
    "classical": "napari_iconmat.core.engines.classical.engine:ClassicalEngine",
    "icmp": "napari_iconmat.core.engines.icmp.engine:IcmpEngine",
    "iconmat": "napari_iconmat.core.engines.iconmat.engine:IconMattingEngine",
    "sam2": "napari_iconmat.core.engines.sam2.engine:Sam2Engine",
}


def register_engine(name: str, target: str) -> None:
    """Register an engine class given as ``'package.module:ClassName'``."""
    _ENGINES[name] = target


def engine_names() -> list[str]:
    """Registered engine names, the default first."""
    return sorted(_ENGINES, key=lambda n: (n != DEFAULT_ENGINE, n))


def get_engine_class(name: str) -> type[Engine]:
    if name not in _ENGINES:
        raise InputError(f"unknown engine {name!r}; available: {', '.join(engine_names())}")
    module_name, class_name = _ENGINES[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def make_engine(name: str = DEFAULT_ENGINE, **params) -> Engine:
    """Build the engine registered as ``name`` with its parameters.

    Raises
    ------
    InputError
        ``name`` is not registered or a parameter is not accepted.
    WeightsNotFoundError
        The engine needs weights that are not on this machine.
    """
    cls = check_engine_params(name, params)
    params = check_options(name, cls.option_specs, params)
    try:
        return cls(**params)
    except TypeError as exc:
        raise InputError(f"engine {name!r} does not accept these parameters: {exc}") from None


def check_engine_params(name: str, params) -> type:
    """The engine class registered as ``name``; InputError naming an option it does not have
    or a value its :attr:`~napari_iconmat.core.engine.Engine.option_specs` do not accept."""
    cls = get_engine_class(name)
    accepted = _parameter_names(cls)
    unknown = sorted(set(params) - accepted) if accepted is not None else []
    if unknown:
        raise InputError(f"engine {name!r} has no option {unknown[0]!r}; its options: {', '.join(sorted(accepted))}")
    check_options(name, cls.option_specs, params)
    return cls


def _parameter_names(cls) -> set[str] | None:
    """Keyword parameters of an engine's constructor; None when it takes ``**kwargs``."""
    import inspect

    parameters = inspect.signature(cls.__init__).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def engine_statuses() -> dict[str, EngineStatus]:
    """Readiness of every registered engine, by name."""
    out = {}
    for name in engine_names():
        try:
            out[name] = get_engine_class(name).status()
        except ImportError as exc:
            out[name] = EngineStatus(False, "a Python package", f"import failed: {exc}")
    return out


def parse_engine_options(items, *, what: str = "engine options") -> dict:
    """``KEY=VALUE`` strings as engine keyword arguments; values are parsed as JSON when they are.

    >>> parse_engine_options(["working_size=480", "refiner=vitmatte", "temporal=0.5"])
    {'working_size': 480, 'refiner': 'vitmatte', 'temporal': 0.5}
    """
    import json

    params = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key.isidentifier():
            raise InputError(f"{what} are KEY=VALUE pairs (e.g. working_size=480), got {item!r}")
        try:
            params[key] = json.loads(text)
        except ValueError:
            params[key] = text
    return params
