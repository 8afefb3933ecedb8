"""Keeping secrets out of what the project writes down: run manifests, error messages, logs.

    redact_url("rediss://recs:p@ss/word@cache:6380/0?password=x")  # 'rediss://recs:***@cache:6380/0?password=***'
    redact_config(cfg.model_dump(mode="json"))                     # every secret-looking setting masked

A URL's password is everything between the first ``:`` of its user part and the last ``@``
before the host, so a password holding an unescaped ``@`` or ``/`` is masked whole; query
parameters with a secret-looking name are masked too. A setting is secret-looking when its
name mentions a password, secret, token, credential or access/API key (Spark's
``spark.hadoop.fs.s3a.secret.key`` and the like).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "***"
SECRET_NAME = re.compile(r"pass(word|wd|phrase)?|secret|token|credential|(access|api|private)[._-]?key", re.IGNORECASE)
_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<rest>.*)$", re.DOTALL)


def is_secret_name(name: str) -> bool:
    """Whether a setting or parameter name says it holds a secret."""
    return bool(SECRET_NAME.search(name))


def redact_url(text: str) -> str:
    """The URL with its password and secret-looking query parameters replaced by ***."""
    match = _URL.match(text)
    if not match:
        return text
    scheme, rest = match["scheme"], match["rest"]
    query_at = rest.find("?")
    head, query = (rest, "") if query_at < 0 else (rest[:query_at], rest[query_at:])
    at = head.rfind("@")
    if at >= 0:
        user, colon, _ = head[:at].partition(":")
        head = f"{user}:{MASK}{head[at:]}" if colon else head
    return scheme + head + _redact_query(query)


def _redact_query(query: str) -> str:
    if not query:
        return query
    pairs = []
    for pair in query[1:].split("&"):
        name, equals, _ = pair.partition("=")
        pairs.append(f"{name}={MASK}" if equals and is_secret_name(name) else pair)
    return "?" + "&".join(pairs)


def redact_config(node: Any, name: str = "") -> Any:
    """A copy of a config document with secret-looking settings and URL passwords masked."""
    if isinstance(node, Mapping):
        return {key: redact_config(value, str(key)) for key, value in node.items()}
    if isinstance(node, list):
        return [redact_config(value, name) for value in node]
    if isinstance(node, str):
        return MASK if is_secret_name(name) and node else redact_url(node)
    return MASK if is_secret_name(name) and node is not None else node
