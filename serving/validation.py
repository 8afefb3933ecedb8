"""Checking request parameters; every failure is a BadRequest that names the parameter."""

from __future__ import annotations

import re
from collections.abc import Mapping

from serving.errors import BadRequest
from store.contract import id_violation, normalize_id

_DIGITS = re.compile(r"^[0-9]{1,9}$")


def parse_n(args: Mapping[str, str], default: int, maximum: int) -> int:
    """The ``n`` query parameter: a whole number from 1 to ``maximum`` (``default`` when absent)."""
    raw = args.get("n")
    if raw is None:
        return default
    if not _DIGITS.match(raw):
        raise BadRequest(f"n must be a whole number from 1 to {maximum}, got {raw[:40]!r}")
    n = int(raw)
    if not 1 <= n <= maximum:
        raise BadRequest(f"n must be from 1 to {maximum}, got {n}")
    return n


def checked_id(value: str, name: str) -> str:
    """A user, item or category id from the request, normalized, if the store contract allows it."""
    value = normalize_id(value)
    violation = id_violation(value)
    if violation:
        raise BadRequest(f"{name} {violation}")
    return value
