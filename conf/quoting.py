"""Quoting user data (a bad line, an id, a header, a path) in error messages and log lines:
never more than a few hundred characters, always on one line, and saying how long it really was.

    clip("x" * 10_000_000)   # 'xxx…x... (10000000 characters)': the first 200 characters, then the length
    quote("avg")             # "'avg'"
    quote("u" * 5000)        # "'uuu…u'... (5000 characters)"

A single input line can be megabytes long; quoting it whole once made a refusal line of ten
million characters. Every message that quotes something a user supplied goes through here.
"""

from __future__ import annotations

# Enough to recognise the value, short enough that a few quotes keep a message readable.
QUOTE_LIMIT = 200


def _cut(text: str, limit: int) -> tuple[str, str]:
    """The part of the text to show, and the marker saying it was cut ('' when it was not)."""
    if len(text) <= limit:
        return text, ""
    return text[:limit], f"... ({len(text)} characters)"


def clip(value: object, limit: int = QUOTE_LIMIT) -> str:
    """The value as text on one line, cut to ``limit`` characters with '... (N characters)' when longer."""
    shown, marker = _cut(str(value), limit)
    # A line break inside a quote would split a one-line error in two.
    return shown.replace("\r", "\\r").replace("\n", "\\n") + marker


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """The value as a quoted literal (like repr), cut to ``limit`` characters like clip."""
    shown, marker = _cut(str(value), limit)
    return repr(shown) + marker
