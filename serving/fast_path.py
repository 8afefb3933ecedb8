"""The fast path for the API's hottest request: ``GET /v1/recommendations/<user_id>`` with at
most ``?n=``, answered in front of Flask's routing, request context and hooks, which cost
several times the lookup itself (measured by `make bench`).

It answers with the same document as the Flask view (routes.recommendation_document), after
the same checks, and records the same metrics. Anything else goes to Flask unchanged: other
routes and parameters, any request that fails a check (so that every error answer comes from
the one error handler), and any lookup that would not be an ordinary answer (a fallback, an
outage, a store error), which Flask repeats and answers and logs in its one place. Turned off
with ``api.fast_path: false``; tests check that both paths answer alike.
"""

from __future__ import annotations

import time

import orjson
from flask import Flask

from serving.routes import RECOMMENDATIONS_RULE, recommendation_document
from serving.validation import check_request, checked_id, parse_n
from store.reader import FALLBACK

PREFIX = "/v1/recommendations/"
HEADERS = [("Content-Type", "application/json")]


class FastLookups:
    """WSGI middleware: answers plain lookups itself and hands every other request to Flask."""

    def __init__(self, app: Flask, flask_wsgi):
        self._flask_wsgi = flask_wsgi
        self._settings = app.config["RECS"].api
        self._reader = app.extensions["recs_store"]
        self._metrics = app.extensions["recs_metrics"]

    def __call__(self, environ, start_response):
        """Answer a plain lookup, or pass the request on to Flask."""
        started = time.perf_counter()
        answered = self._answer(environ) if self._is_plain_lookup(environ) else None
        if answered is None:
            return self._flask_wsgi(environ, start_response)
        document, item_sources, body = answered
        start_response("200 OK", [*HEADERS, ("Content-Length", str(len(body)))])
        seconds = time.perf_counter() - started
        self._metrics.record_request(RECOMMENDATIONS_RULE, document["source"], 200, item_sources, seconds)
        return [body]

    @staticmethod
    def _is_plain_lookup(environ) -> bool:
        """GET of a user's list with no parameter but ``n``."""
        query = environ.get("QUERY_STRING", "")
        return (
            environ.get("REQUEST_METHOD") == "GET"
            and environ.get("PATH_INFO", "").startswith(PREFIX)
            and (not query or (query.startswith("n=") and "&" not in query))
        )

    def _answer(self, environ) -> tuple[dict, list[str], bytes] | None:
        """The lookup's document, its items' sources and its JSON, or None for anything Flask must
        answer (every failure included: Flask repeats the request and answers it in its one place)."""
        reader = self._reader
        held = reader.held()
        if held is None or held.from_fallback_file or reader.in_outage():
            return None
        query = environ.get("QUERY_STRING", "")
        try:
            check_request(environ)
            # WSGI gives the path as latin-1 text of its bytes; check_request has seen they are UTF-8.
            raw_id = environ["PATH_INFO"][len(PREFIX) :].encode("latin-1").decode("utf-8")
            user_id = checked_id(raw_id, "user_id")
            args = {"n": query[2:]} if query else {}
            n = parse_n(args, self._settings.default_n, self._settings.max_n)
            document, item_sources = recommendation_document(
                reader, self._settings, user_id, n, None, frozenset(), None
            )
            if document["source"] == FALLBACK:
                return None  # Redis failed during the lookup: Flask answers and logs the fallback
            return document, item_sources, orjson.dumps(document)
        except Exception:  # noqa: BLE001 - handed to Flask, whose error handler answers and logs it
            return None
