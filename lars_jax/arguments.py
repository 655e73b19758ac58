"""Argument checks shared by the optimizer and schedule factories (ValueError naming the argument)."""
from __future__ import annotations

import numbers
from typing import Any, Callable


def check_range(name: str, value, ok: Callable[[Any], bool], requirement: str) -> None:
    """ValueError "name: must <requirement>, got value" for a Python number outside its range.
    Arrays pass unchecked: optax.inject_hyperparams calls the factories again with traced values."""
    if isinstance(value, numbers.Real) and not ok(value):
        raise ValueError(f"{name}: must {requirement}, got {value}")


def check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name}: got {value!r}; allowed values: {', '.join(map(repr, allowed))}")
