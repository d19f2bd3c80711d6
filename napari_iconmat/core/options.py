"""Engine options: declared once per engine, checked in one place.

Every engine class declares its options in ``Engine.option_specs`` (name ->
:class:`Option`). :func:`check_options` checks a dict of values against them, by
type and range, before any work; :func:`napari_iconmat.core.registry.check_engine_params`
calls it, so the CLI, ``iconmat bench``, the napari widget and the Python API all
get the same one-line :class:`~napari_iconmat.core.errors.InputError`.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass

from .errors import InputError

__all__ = ["Option", "check_options"]


@dataclass(frozen=True)
class Option:
    """What values one engine option accepts.

    Attributes
    ----------
    kind : {'int', 'float', 'bool', 'str', 'path'}
        ``'path'``: a folder, file or hub id, as a string or ``os.PathLike`` (kept as given).
    low, high : float, optional
        Inclusive bounds of a number.
    multiple : int, optional
        An integer must be a multiple of this.
    choices : tuple of str, optional
        The accepted strings (``kind='str'``).
    allow_none : bool
        ``None`` (JSON ``null``) is accepted too.
    help : str
        One line for tooltips and ``--help`` texts.
    """

    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    allow_none: bool = False
    help: str = ""
    multiple: int | None = None

    def describe(self) -> str:
        """The accepted values in words, e.g. ``'an integer >= 64'``."""
        if self.kind == "str":
            text = "one of " + ", ".join(self.choices) if self.choices else "a string"
        elif self.kind == "path":
            text = "a path or model id"
        elif self.kind == "bool":
            text = "true or false"
        else:
            text = "an integer" if self.kind == "int" else "a number"
            if self.low is not None and self.high is not None:
                text += f" from {_number(self.low)} to {_number(self.high)}"
            elif self.low is not None:
                text += f" >= {_number(self.low)}"
            elif self.high is not None:
                text += f" <= {_number(self.high)}"
            if self.multiple:
                text += f", a multiple of {self.multiple}"
        return text + (" (or null)" if self.allow_none else "")

    def check(self, value):
        """``value`` converted to the option's type; ValueError saying what is accepted."""
        if value is None and self.allow_none:
            return None
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0", "on", "off"):
                return value.lower() in ("true", "yes", "1", "on")
            raise ValueError(self.describe())
        if self.kind == "path":
            if isinstance(value, os.PathLike) or (isinstance(value, str) and value.strip()):
                return value
            raise ValueError(self.describe())
        if self.kind == "str":
            if not isinstance(value, str) or (self.choices and value not in self.choices):
                raise ValueError(self.describe())
            return value
        if isinstance(value, bool) or type(value).__name__ == "bool_" or not isinstance(value, numbers.Real):
            raise ValueError(self.describe())
        if self.kind == "int":
            if not isinstance(value, numbers.Integral) and not (math.isfinite(value) and float(value).is_integer()):
                raise ValueError(self.describe())
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(self.describe())
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise ValueError(self.describe())
        if self.multiple and value % self.multiple:
            raise ValueError(self.describe())
        return value


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def check_options(engine_name: str, specs: dict[str, Option], values: dict) -> dict:
    """``values`` checked against ``specs`` and converted; InputError on the first bad one.

    Names without a spec pass through unchanged (the constructor's signature
    decides whether they exist).

    >>> check_options("classical", {"working_size": Option("int", low=64)}, {"working_size": 480.0})
    {'working_size': 480}
    """
    out = dict(values)
    for name, value in values.items():
        spec = specs.get(name)
        if spec is None:
            continue
        try:
            out[name] = spec.check(value)
        except ValueError as exc:
            raise InputError(f"engine {engine_name}: {name} must be {exc}, got {value!r}") from None
    return out
