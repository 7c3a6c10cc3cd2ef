"""Argument checks for the Lightning-free core: each error names the function's own argument.

The messages never name config keys: a Hydra run adds the key path (`full_key`) at the config layer.
"""

import math


def check_number(name: str, value, *, positive: bool = False, non_negative: bool = False) -> float:
    """`value` as a float if it is a finite real number (> 0 or >= 0 when asked), else a ValueError."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if ok and positive:
        ok = value > 0
    if ok and non_negative:
        ok = value >= 0
    if not ok:
        need = " > 0" if positive else " >= 0" if non_negative else ""
        raise ValueError(f"{name} must be a finite number{need}, got {value!r}.")
    return float(value)


def check_int(name: str, value, *, minimum: int = 1) -> int:
    """`value` if it is an integer >= `minimum` (bools refused), else a ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return value
