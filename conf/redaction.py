"""Keeping secrets out of what the project writes down: run manifests, stage reports, error
messages, logs.

    redact_url("rediss://recs:p@ss/w#rd@cache:6380/0?password=x")  # 'rediss://recs:***@cache:6380/0?password=***'
    redact_config(cfg.model_dump(mode="json"))                      # secret-looking settings masked, at any depth
    redact_text("input not found: s3a://AKIA:abc@bucket/logs")      # URLs and name=value secrets inside free text

Two ways a secret is recognised:

- by name: a setting, query parameter or ``name=value`` pair whose name mentions a password,
  secret, token, credential, auth, or an access, secret, private, API or account key, whether
  its words are joined by dots, underscores, dashes or camelCase (``spark.hadoop.fs.s3a.secret.key``,
  ``spark.ssl.keyPassword``, ``AWS_SECRET_ACCESS_KEY``). In a query string, plain ``key``,
  ``pass``, ``pwd``, ``sig`` and ``signature`` count too;
- by place: the password of a URL, which is everything between the first ``:`` of the user
  part and the last ``@`` that is followed by a host, so that an unencoded password holding
  ``@``, ``/``, ``:``, ``?`` or ``#`` is masked whole (``urllib`` would stop at the first ``/``
  or ``#`` and leave the rest showing).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MASK = "***"
# Matched against a name in normal form: lower case, words separated by single dots.
_SECRET_WORDS = re.compile(
    r"password|passwd|passphrase|(^|\.)pass($|\.)|secret|token|credential|auth"
    r"|(access|secret|private|api|account)\.?key"
)
# Names that say "secret" only inside a URL's query string (a setting called ``key`` is not one).
_SECRET_PARAMETERS = frozenset({"key", "pass", "pwd", "sig", "signature"})
_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<rest>.*)$", re.DOTALL)
# What follows the '@' that ends a URL's user part: a host (possibly empty, as in unix://:pw@/path),
# an optional port, then the end or a path, query or fragment.
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]*\]|[A-Za-z0-9._~%-]*)(:\d*)?(?=[/?#]|\Z)")
# Starting only where a word starts, with bounded repeats, so that scanning a megabyte-long message stays linear.
_URL_IN_TEXT = re.compile(r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,30}://[^\s'\"<>]+")
_PAIR_IN_TEXT = re.compile(r"(?<![\w.])(?P<name>[A-Za-z][\w.-]{0,100})=(?P<value>[^\s&'\"]+)")


def normal_name(name: str) -> str:
    """A name in lower case with its words separated by dots: ``keyPassword`` -> ``key.password``."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1.\2", name)
    return re.sub(r"[._\-\s]+", ".", spaced).lower().strip(".")


def is_secret_name(name: str) -> bool:
    """Whether a setting or parameter name says it holds a secret."""
    return bool(_SECRET_WORDS.search(normal_name(name)))


def is_secret_parameter(name: str) -> bool:
    """Whether a URL query parameter's name says it holds a secret."""
    return is_secret_name(name) or normal_name(name).replace(".", "") in _SECRET_PARAMETERS


def _user_part_end(rest: str) -> int:
    """Where the user part of a URL (after its scheme) ends: the index of its '@', or -1.

    The last '@' followed by a host wins, so an '@' inside a password is taken as part of it;
    among those, one with no '?' before it is preferred, so that an '@' in a query value (a
    contact address, say) is not mistaken for the end of the user part."""
    first_query = rest.find("?")
    last_followed_by_host = -1
    at = rest.rfind("@")
    while at >= 0:
        if _HOST.match(rest, at + 1):
            if first_query < 0 or at < first_query:
                return at
            last_followed_by_host = max(last_followed_by_host, at)
        at = rest.rfind("@", 0, at)
    return last_followed_by_host


def redact_url(text: str) -> str:
    """The URL with its password and secret-looking query parameters replaced by ***."""
    match = _URL.match(text)
    if not match:
        return text
    scheme, rest = match["scheme"], match["rest"]
    at = _user_part_end(rest)
    if at >= 0:
        user, colon, _ = rest[:at].partition(":")
        rest = f"{user}:{MASK}{rest[at:]}" if colon else rest
    before_query, question, query = rest.partition("?")
    if not question:
        return scheme + rest
    query, hash_sign, fragment = query.partition("#")
    return f"{scheme}{before_query}?{_redact_query(query)}{hash_sign}{fragment}"


def url_secrets(text: str) -> set[str]:
    """The secrets a URL holds, as written and percent-decoded: the password (by redact_url's
    rule) and the values of secret-looking query parameters."""
    from urllib.parse import unquote

    match = _URL.match(text)
    if not match:
        return set()
    rest = match["rest"]
    at = _user_part_end(rest)
    found = set()
    if at >= 0:
        _, colon, password = rest[:at].partition(":")
        if colon and password:
            found.add(password)
    query = rest[at + 1 :].partition("?")[2].partition("#")[0]
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if value and is_secret_parameter(name):
            found.add(value)
    return {secret for value in found for secret in (value, unquote(value)) if secret}


def _redact_query(query: str) -> str:
    pairs = []
    for pair in query.split("&"):
        name, equals, value = pair.partition("=")
        pairs.append(f"{name}={MASK}" if equals and value and is_secret_parameter(name) else pair)
    return "&".join(pairs)


def redact_text(text: str) -> str:
    """Free text (an error message, a log line) with URL passwords and secret ``name=value`` pairs masked."""
    return _redact_pairs(_URL_IN_TEXT.sub(lambda match: redact_url(match.group(0)), text))


def _redact_pairs(text: str) -> str:
    return _PAIR_IN_TEXT.sub(
        lambda match: f"{match['name']}={MASK}" if is_secret_name(match["name"]) else match.group(0), text
    )


def _redact_setting(text: str) -> str:
    """A setting's text: a URL as a whole (its password may hold spaces or quotes), else as free text."""
    return _redact_pairs(redact_url(text)) if _URL.match(text) else redact_text(text)


def redact_values(node: Any) -> Any:
    """A copy of a document (a stage report, say) with every text inside it passed through redact_text."""
    if isinstance(node, Mapping):
        return {key: redact_values(value) for key, value in node.items()}
    if isinstance(node, list | tuple):
        return [redact_values(value) for value in node]
    return redact_text(node) if isinstance(node, str) else node


def redact_config(node: Any, name: str = "") -> Any:
    """A copy of a config document with secret-looking settings and URL passwords masked.

    A setting whose name is secret-looking is masked whole, whatever it holds below it; an
    empty or null one stays as it is, so that the manifest still says it was not set."""
    if is_secret_name(name) and node not in (None, "", {}, []):
        return MASK
    if isinstance(node, Mapping):
        return {key: redact_config(value, str(key)) for key, value in node.items()}
    if isinstance(node, list | tuple):
        return [redact_config(value, name) for value in node]
    return _redact_setting(node) if isinstance(node, str) else node
