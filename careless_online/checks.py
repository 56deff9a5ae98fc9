"""Parameter checks at construction (tfp's ``validate_args`` habit).

Each check returns the value converted to its type, or raises ValueError
naming the parameter and what it must be, so a wrong setting fails where it
is made rather than as a NaN many steps later.
"""

import math


def integer_at_least(name, value, minimum):
    """``int(value)``; ValueError unless it is an integer ``>= minimum``."""
    if isinstance(value, bool) or int(value) != value:
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def positive(name, value):
    """``float(value)``; ValueError unless it is finite and ``> 0``."""
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be positive and finite, got {value}")
    return value


def non_negative(name, value):
    """``float(value)``; ValueError unless it is finite and ``>= 0``."""
    value = float(value)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be non-negative and finite, got {value}")
    return value
