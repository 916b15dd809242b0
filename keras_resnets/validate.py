"""Argument checks shared by the configs and builders: one style of error for bad input.

Every check raises `ValueError` with a message that names the argument, says what was
expected (listing the valid values where there is a list) and shows what was given:

>>> from keras_resnets import validate
>>> validate.choice("stem", "mnist", ("imagenet", "cifar"))
Traceback (most recent call last):
    ...
ValueError: stem must be one of ['imagenet', 'cifar']; got 'mnist'.
>>> validate.positive_int("depth", 0)
Traceback (most recent call last):
    ...
ValueError: depth must be a positive integer; got 0.
"""

import math
import numbers
from typing import Any, Iterable


def is_int(value) -> bool:
    """Whether `value` is an integer (numpy's included) and not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value) -> bool:
    """Whether `value` is a real number (numpy's included) and not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def choice(argument: str, value: Any, choices: Iterable, prefix: str = "") -> None:
    """`value` is one of `choices`; `prefix` words the list, e.g. `"None or "`."""
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"{argument} must be {prefix}one of {choices}; got {value!r}.")


def choices(argument: str, values: Iterable, valid: Iterable) -> None:
    """Every entry of `values` is one of `valid`."""
    valid = list(valid)
    unknown = [value for value in values if value not in valid]
    if unknown:
        raise ValueError(f"{argument} holds unknown values {unknown}; valid values are {valid}.")


def boolean(argument: str, value: Any) -> None:
    """`value` is `True` or `False` (not 0 or 1)."""
    if not isinstance(value, bool):
        raise ValueError(f"{argument} must be True or False; got {value!r}.")


def strictly_increasing(argument: str, values: Iterable) -> None:
    """Each entry of `values` is larger than the one before."""
    values = tuple(values)
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"{argument} must be strictly increasing; got {values!r}.")


def positive_int(argument: str, value: Any) -> None:
    """`value` is an integer of at least 1."""
    if not is_int(value) or value < 1:
        raise ValueError(f"{argument} must be a positive integer; got {value!r}.")


def non_negative_int(argument: str, value: Any) -> None:
    """`value` is an integer of at least 0."""
    if not is_int(value) or value < 0:
        raise ValueError(f"{argument} must be a non-negative integer; got {value!r}.")


def positive_number(argument: str, value: Any) -> None:
    """`value` is a finite number above 0."""
    if not (is_number(value) and 0 < value < math.inf):
        raise ValueError(f"{argument} must be a positive number; got {value!r}.")


def positive(argument: str, value: Any, suffix: str = "") -> None:
    """`value` is a number above 0; `suffix` adds an alternative, e.g. `" or None"`."""
    if not (is_number(value) and value > 0):
        raise ValueError(f"{argument} must be positive{suffix}; got {value!r}.")


def number_in(argument: str, value: Any, low: float, high: float, *, low_open: bool = False,
              high_open: bool = False, what: str = "a number in ") -> None:
    """`value` is a finite number in the interval from `low` to `high`, each end closed unless
    `low_open` / `high_open`; `what` words the interval, e.g. `""` for "must be in [0, 1)"."""
    ok = is_number(value) and math.isfinite(value) and (
        value > low if low_open else value >= low) and (
        value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{argument} must be {what}{interval}; got {value!r}.")


def not_empty(argument: str, values: Iterable, what: str = "") -> None:
    """`values` has at least one entry; `what` opens the message (e.g. "The search space is
    empty: ")."""
    if not tuple(values):
        raise ValueError(f"{what}{argument} has no values.")


def log_range(argument: str, value: Any) -> None:
    """`value` is a pair `(low, high)` of finite numbers with 0 < low < high (the bounds of a
    log-uniform range)."""
    try:
        low, high = value
        ok = is_number(low) and is_number(high) and 0 < low < high < math.inf
    except (TypeError, ValueError):  # not a pair
        ok = False
    if not ok:
        raise ValueError(f"{argument} must be (low, high) with 0 < low < high; got {value!r}.")
