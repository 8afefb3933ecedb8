"""Checking request parameters; every failure is a BadRequest that names the parameter."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping

from serving.errors import BadRequest
from store.contract import EVENT_TYPES, NAME_PATTERN, id_violation, normalize_id
from store.events import Event
from store.experiments import RecId

_DIGITS = re.compile(r"^[0-9]{1,9}$")


# Below the server's own limits (granian answers longer request lines and header blocks itself,
# with an empty body), so that every refusal a client normally meets is JSON.
MAX_TARGET_BYTES = 8192
MAX_HEADER_BYTES = 16384


def check_request_size(environ: Mapping[str, str]) -> None:
    """Refuse an over-long request target (414) or header block (431) with a JSON answer."""
    from werkzeug.exceptions import RequestHeaderFieldsTooLarge, RequestURITooLarge

    target = len(environ.get("PATH_INFO", "")) + len(environ.get("QUERY_STRING", ""))
    if target > MAX_TARGET_BYTES:
        raise RequestURITooLarge(f"the request target is {target} bytes; at most {MAX_TARGET_BYTES} are accepted")
    headers = sum(len(key) + len(value) for key, value in environ.items() if key.startswith("HTTP_"))
    if headers > MAX_HEADER_BYTES:
        raise RequestHeaderFieldsTooLarge(
            f"the request headers are {headers} bytes; at most {MAX_HEADER_BYTES} are accepted"
        )


def check_utf8(environ: Mapping[str, str]) -> None:
    """Refuse a path or query string whose percent-decoded bytes are not UTF-8: decoded with
    replacement characters, two different ids would look up as the same one."""
    from urllib.parse import unquote_to_bytes

    # WSGI gives both as latin-1 text; the server has already percent-decoded the path.
    path_text, query_text = environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", "")
    if path_text.isascii() and query_text.isascii() and "%" not in query_text:
        return  # ASCII is UTF-8: the common case, checked without decoding anything
    path = path_text.encode("latin-1", "replace")
    query = unquote_to_bytes(query_text.encode("latin-1", "replace"))
    for raw, name in ((path, "path"), (query, "query string")):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(f"the request {name} is not valid UTF-8") from None


def check_request(environ: Mapping[str, str]) -> None:
    """The checks every request passes before routing: its size, then its encoding."""
    check_request_size(environ)
    check_utf8(environ)


def parse_n(args: Mapping[str, str], default: int, maximum: int) -> int:
    """The ``n`` query parameter: a whole number from 1 to ``maximum`` (``default`` when absent)."""
    raw = args.get("n")
    if raw is None:
        return default
    if not _DIGITS.fullmatch(raw):
        raise BadRequest(f"n must be a whole number from 1 to {maximum}, got {raw[:40]!r}")
    n = int(raw)
    if not 1 <= n <= maximum:
        raise BadRequest(f"n must be from 1 to {maximum}, got {n}")
    return n


def parse_exclude(raw: str | None, maximum: int) -> frozenset[str]:
    """The ``exclude`` parameter: comma-separated item ids, at most ``maximum`` of them."""
    if raw is None:
        return frozenset()
    ids = raw.split(",")
    if len(ids) > maximum:
        raise BadRequest(f"exclude takes at most {maximum} item ids, got {len(ids)}")
    return frozenset(checked_id(value, "exclude item id") for value in ids)


def checked_id(value: str, name: str) -> str:
    """A user, item or category id from the request, normalized, if the store contract allows it."""
    value = normalize_id(value)
    violation = id_violation(value)
    if violation:
        raise BadRequest(f"{name} {violation}")
    return value


# Year 3000 in epoch seconds, as prepare's limit: later values are milliseconds read as seconds.
MAX_EPOCH_SECONDS = 32_503_680_000
EVENT_FIELDS = ("user_id", "item_id", "type", "rec_id", "variant", "ts")


def checked_name(value: str, name: str) -> str:
    """An experiment or variant name from the request, if it can be one."""
    if not NAME_PATTERN.fullmatch(value):
        raise BadRequest(f"{name} must be 1 to 32 letters, digits, '_' or '-', got {value[:40]!r}")
    return value


IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def idempotency_key_of(header: str | None) -> str | None:
    """The Idempotency-Key header, if given: 1 to 128 letters, digits or ``_.:-``."""
    if header is None:
        return None
    if not IDEMPOTENCY_KEY.fullmatch(header):
        raise BadRequest("the Idempotency-Key header must be 1 to 128 letters, digits or '_.:-'")
    return header


def parse_events(body: object, max_batch: int) -> list[Event]:
    """Events from a request body: one event object, or an array of 1 to ``max_batch`` of them.
    A bad one is refused with a message naming it and its field."""
    if isinstance(body, dict):
        return [_event(body, "event")]
    if not isinstance(body, list) or not body:
        raise BadRequest("the body must be an event object or a non-empty array of event objects")
    if len(body) > max_batch:
        raise BadRequest(f"a batch holds at most {max_batch} events, got {len(body)}")
    return [_event(item, f"events[{index}]") for index, item in enumerate(body)]


def _event(item: object, where: str) -> Event:
    if not isinstance(item, dict):
        raise BadRequest(f"{where} must be an object")
    unknown = sorted(set(item) - set(EVENT_FIELDS))
    if unknown:
        raise BadRequest(f"{where}.{unknown[0]} is not an event field; the fields are {', '.join(EVENT_FIELDS)}")
    ids = {field: _event_id(item, field, where) for field in ("user_id", "item_id")}
    kind = item.get("type")
    if kind not in EVENT_TYPES:
        raise BadRequest(f"{where}.type must be one of {', '.join(EVENT_TYPES)}, got {str(kind)[:40]!r}")
    return Event(**ids, type=kind, ts=_event_ts(item.get("ts"), where), rec_id=_event_rec_id(item.get("rec_id"), where),
                 variant=_event_variant(item.get("variant"), where))  # fmt: skip


def _event_id(item: dict, field: str, where: str) -> str:
    value = item.get(field)
    if not isinstance(value, str):
        raise BadRequest(f"{where}.{field} is required and must be a string")
    return checked_id(value, f"{where}.{field}")


def _event_ts(value: object, where: str) -> float | None:
    """Epoch seconds (a number) or ISO-8601 text with a time zone; None when absent."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise BadRequest(f"{where}.ts must be epoch seconds or ISO-8601 text")
    if isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            raise BadRequest(f"{where}.ts is not ISO-8601: {value[:40]!r}") from None
        if moment.tzinfo is None:
            raise BadRequest(f"{where}.ts must name its time zone, e.g. 2026-11-29T10:00:00Z")
        value = moment.timestamp()
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds) or not 0 <= seconds < MAX_EPOCH_SECONDS:
        raise BadRequest(f"{where}.ts must be epoch seconds between 1970 and 3000, got {str(value)[:40]!r}")
    return seconds


def _event_rec_id(value: object, where: str) -> RecId | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{where}.rec_id must be a string")
    try:
        return RecId.parse(value)
    except ValueError as exc:
        raise BadRequest(f"{where}.rec_id {exc}") from None


def _event_variant(value: object, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{where}.variant must be a string")
    return checked_name(value, f"{where}.variant")
