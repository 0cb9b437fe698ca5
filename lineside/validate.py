"""Type, finiteness and range checks for every value that enters lineside from outside.

Command-line options use the argparse `type=` factories (`float_arg`, `int_arg`): a bad value is a
one-line usage error with exit code 2. Values read from files (manifest, engine header) use the
plain checks, which raise LinesideError naming the field. NaN, infinities and booleans are never
numbers here: a NaN threshold or delay would silently switch the fail-safe off.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

from lineside.errors import LinesideError

_SHOW = 40  # characters of a rejected value quoted in a message


def show(value: Any) -> str:
    """A short, one-line repr of a rejected value for an error message."""
    text = repr(value).replace("\n", " ")
    return text if len(text) <= _SHOW else text[: _SHOW - 3] + "..."


def _check_range(name: str, number: float, kind: str, **bounds: float | None) -> None:
    """LinesideError unless `number` is within every given bound (at_least, above, at_most, below)."""
    tests = {
        "at_least": lambda b: number >= b,
        "above": lambda b: number > b,
        "at_most": lambda b: number <= b,
        "below": lambda b: number < b,
    }
    given = {key: bound for key, bound in bounds.items() if bound is not None}
    if not all(tests[key](bound) for key, bound in given.items()):
        wanted = " and ".join(f"{key.replace('_', ' ')} {_number(bound)}" for key, bound in given.items())
        raise LinesideError(f"{name} must be {kind} {wanted}, got {_number(number)}")


def _number(value: float) -> str:
    """6 significant digits for a float, a (shortened) repr for an int of any size."""
    return f"{value:g}" if isinstance(value, float) else show(value)


def finite_float(
    name: str,
    value: Any,
    *,
    at_least: float | None = None,
    above: float | None = None,
    at_most: float | None = None,
    below: float | None = None,
) -> float:
    """`value` as a finite float in range; LinesideError naming `name` otherwise (bools and strings refused)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LinesideError(f"{name} must be a number, got {show(value)}")
    try:
        number = float(value)
    except OverflowError as exc:  # an int too large for a float
        raise LinesideError(f"{name} is out of range, got {show(value)}") from exc
    if not math.isfinite(number):
        raise LinesideError(f"{name} must be a finite number, got {number}")
    _check_range(name, number, "a number", at_least=at_least, above=above, at_most=at_most, below=below)
    return number


def bounded_int(name: str, value: Any, *, at_least: int | None = None, at_most: int | None = None) -> int:
    """`value` as an int in range; LinesideError naming `name` otherwise (bools and floats refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise LinesideError(f"{name} must be an integer, got {show(value)}")
    _check_range(name, value, "an integer", at_least=at_least, at_most=at_most)
    return value


def text(name: str, value: Any, *, empty: bool = True) -> str:
    """`value` as a str; LinesideError when it is another type (or empty, unless `empty`)."""
    if not isinstance(value, str) or (not empty and not value):
        raise LinesideError(f"{name} must be a {'' if empty else 'non-empty '}string, got {show(value)}")
    return value


def mapping(name: str, value: Any) -> dict[str, Any]:
    """`value` as a JSON object (dict); LinesideError otherwise."""
    if not isinstance(value, dict):
        raise LinesideError(f"{name} must be a JSON object, got {show(value)}")
    return value


def sequence(name: str, value: Any, *, length: int | None = None) -> list[Any]:
    """`value` as a JSON array (list or tuple), optionally of an exact `length`; LinesideError otherwise."""
    if not isinstance(value, list | tuple) or (length is not None and len(value) != length):
        want = "a list" if length is None else f"a list of {length}"
        raise LinesideError(f"{name} must be {want}, got {show(value)}")
    return list(value)


def float_arg(
    *,
    at_least: float | None = None,
    above: float | None = None,
    at_most: float | None = None,
    below: float | None = None,
) -> Callable[[str], float]:
    """argparse `type=` for a finite float option in range (a bad value is a usage error, exit 2)."""

    def parse(raw: str) -> float:
        try:
            number = float(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {show(raw)}") from None
        try:
            return finite_float("value", number, at_least=at_least, above=above, at_most=at_most, below=below)
        except LinesideError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix("value ")) from None

    parse.__name__ = "number"
    return parse


def int_arg(*, at_least: int | None = None, at_most: int | None = None) -> Callable[[str], int]:
    """argparse `type=` for an integer option in range (a bad value is a usage error, exit 2)."""

    def parse(raw: str) -> int:
        try:
            number = int(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {show(raw)}") from None
        try:
            return bounded_int("value", number, at_least=at_least, at_most=at_most)
        except LinesideError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix("value ")) from None

    parse.__name__ = "integer"
    return parse
