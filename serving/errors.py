"""Every error the API can answer with, and the one place they become HTTP responses.

Clients always get JSON, ``{"error": <code>, "detail": <text>}``, never a stack trace. Each
handler notes the error for the request (``note_error``); serving/api_log.py writes the line a
5xx answer gets in the server log from it, so every one is logged once, after the answer is made.
"""

from __future__ import annotations

from flask import Flask, g, jsonify
from werkzeug.exceptions import HTTPException

from store.errors import NoCurrentRun, StoreDataError, StoreUnavailable, UnknownCategory, UnknownItem, UnknownVariant


class ApiError(Exception):
    """An error with an HTTP status and a stable machine-readable code."""

    status = 500
    code = "internal_error"

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class BadRequest(ApiError):
    """The request is malformed; the detail says which parameter and why."""

    status = 400
    code = "bad_request"


class NotFound(ApiError):
    """The thing asked for does not exist (or is switched off)."""

    status = 404
    code = "not_found"


# Store errors, typed at the store boundary, and the answer each one gets. Details stay
# generic: hosts, ports and key names are for the server log, not for clients.
# A detail of None passes the error's own message on: it names only what the client asked for.
STORE_ERRORS = {
    StoreUnavailable: (503, "store_unavailable", "the recommendation store is unavailable; try again shortly"),
    NoCurrentRun: (503, "no_published_run", "no recommendations have been published yet"),
    StoreDataError: (500, "store_data_error", "stored data is invalid"),
    UnknownCategory: (404, "not_found", None),
    UnknownItem: (404, "not_found", None),
    UnknownVariant: (400, "bad_request", None),
}


def note_error(code: str, exc: BaseException) -> None:
    """Remember this request's error code and exception, for the API log's line about the answer."""
    g.recs_error = (code, exc)


def error_response(status: int, code: str, detail: str):
    """A JSON error body with its status."""
    return jsonify(error=code, detail=detail), status


def register_error_handlers(app: Flask) -> None:
    """Map typed errors, HTTP errors and anything unexpected to JSON responses."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        note_error(exc.code, exc)
        return error_response(exc.status, exc.code, exc.detail)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        note_error(code, exc)
        response, status = error_response(exc.code or 500, code, exc.description or exc.name)
        # The exception's own headers, such as a 405's Allow, belong on the JSON answer too.
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response, status

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        for error_type, (status, code, detail) in STORE_ERRORS.items():
            if isinstance(exc, error_type):
                note_error(code, exc)
                return error_response(status, code, detail or str(exc))
        note_error("internal_error", exc)
        return error_response(500, "internal_error", "the server failed to answer this request")
