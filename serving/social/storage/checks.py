"""Checks of the settings an adapter is built with, shared by the SQL and Redis adapters of one
interface so that both refuse the same values with the same message."""

from __future__ import annotations


def at_least_one(value: int, name: str) -> int:
    """``int(value)``, or ``ValueError`` naming ``name`` when it is below 1.

    >>> at_least_one(3, "timeline cap")
    3
    """
    number = int(value)
    if number < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return number
