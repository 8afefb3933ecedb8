"""The API's own events in its log: one JSON object per line, and never a flood of them.

create_app installs it: ``install_api_log(cfg)`` points the API's loggers at one rate-limited
handler, and ``log_answers(app)`` logs the answers worth a line. Lines go to stderr,
which the server or the container runtime collects, or are appended to ``api.log_file`` when
that is set (a daemonized server sends its workers' stderr to /dev/null).

    {"ts": "2026-11-29T02:00:00.123Z", "level": "WARNING", "logger": "recs.api", "event": "fallback_answer",
     "message": "200 fallback answer (outage) to GET /v1/recommendations/alice", "pid": 4242,
     "status": 200, "reason": "outage", "method": "GET", "path": "/v1/recommendations/alice", ...}

What gets a line: every 5xx answer (its error code as the event, with status, reason, path,
method, duration_ms and the exception's type and message, never a traceback), every fallback
answer (reason ``outage``, ``fallback_file`` or ``lost_run``), the start and the end of each
Redis outage, and the store reader's own lines. 4xx answers are only counted, in the metrics.

Each kind of line (logger, event, reason) gets at most ``api.log_burst`` lines per
``api.log_window_seconds`` in each worker; the rest are counted, and one ``log_suppressed``
line gives that count once the window is over (written before the next line, or at shutdown).
URLs in a line have their passwords masked, and the store URL's secrets never appear at all.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import logging.handlers
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from flask import Flask, current_app, g, request

from conf.redaction import MASK, redact_url, url_secrets
from store.connection import redis_address
from store.errors import unavailable_reason
from store.reader import FALLBACK

# The loggers that write in an API worker: the API's own events and the store reader's lines.
API_LOGGERS = ("recs.api", "recs.reader", "recs.fallback")
HANDLER_NAME = "recs-api-log"
MAX_TEXT = 500
WHERE_FRAMES = 4
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")

log = logging.getLogger("recs.api")

LineKind = tuple[str, str, str | None]


def utc_timestamp(seconds: float) -> str:
    """Epoch seconds as UTC ISO-8601 with milliseconds, e.g. 2026-11-29T02:00:00.123Z."""
    moment = dt.datetime.fromtimestamp(seconds, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def exception_fields(exc: BaseException) -> dict:
    """An exception's type, message and innermost frames (innermost first, on one line): enough
    to find it, without a multi-line traceback."""
    fields = {"error_type": type(exc).__name__, "error": str(exc)}
    frames = traceback.extract_tb(exc.__traceback__)[-WHERE_FRAMES:] if exc.__traceback__ is not None else []
    if frames:
        fields["where"] = " < ".join(f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in reversed(frames))
    return fields


class JsonLineFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, event, message, pid, then the record's
    ``fields``; every text is capped at MAX_TEXT characters and has its secrets masked."""

    def __init__(self, secrets: Iterable[str] = ()):
        super().__init__()
        self.secrets = frozenset(secrets)

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": utc_timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "event": getattr(record, "event", "log"),
            "message": record.getMessage(),
            "pid": record.process,
        }
        for key, value in getattr(record, "fields", {}).items():
            line.setdefault(key, value)
        if record.exc_info and record.exc_info[1] is not None:
            for key, value in exception_fields(record.exc_info[1]).items():
                line.setdefault(key, value)
        return json.dumps({key: self.clean(value) for key, value in line.items()}, default=str)

    def clean(self, value):
        """A value fit for the log: texts with URL passwords and known secrets masked, then capped."""
        if not isinstance(value, str):
            return value
        text = _URL_IN_TEXT.sub(lambda match: redact_url(match.group(0)), value)
        # Longest first, so that no part of a secret that holds another one is left showing.
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "\u2026"


@dataclass
class _Window:
    opened: float
    written: int = 0
    held: int = 0


class RateLimiter:
    """At most ``burst`` lines of each kind per window of ``window_seconds`` (a window opens
    with the first line of its kind); the lines beyond are counted. Thread-safe."""

    def __init__(self, burst: int, window_seconds: float, clock: Callable[[], float] = time.monotonic):
        self.burst = burst
        self.window_seconds = window_seconds
        self._clock = clock
        self._windows: dict[LineKind, _Window] = {}
        self._lock = threading.Lock()

    def admit(self, kind: LineKind) -> tuple[bool, list[tuple[LineKind, int]]]:
        """Whether a line of this kind may be written now, and the counts held back in windows
        that are over, to report before it."""
        with self._lock:
            now = self._clock()
            ended = self._close(now, everything=False)
            window = self._windows.setdefault(kind, _Window(now))
            if window.written < self.burst:
                window.written += 1
                return True, ended
            window.held += 1
            return False, ended

    def ended(self, everything: bool = False) -> list[tuple[LineKind, int]]:
        """The counts held back in windows that are over (in every window, with ``everything``)."""
        with self._lock:
            return self._close(self._clock(), everything)

    def _close(self, now: float, everything: bool) -> list[tuple[LineKind, int]]:
        limit = self.window_seconds
        over = [kind for kind, window in self._windows.items() if everything or now - window.opened >= limit]
        counts = [(kind, self._windows.pop(kind).held) for kind in over]
        return [(kind, held) for kind, held in counts if held]


def line_kind(record: logging.LogRecord) -> LineKind:
    """What makes two lines similar for the rate limit: logger, event and reason (for a plain
    line, its message template)."""
    event = getattr(record, "event", None)
    if event is None:
        return record.name, f"log:{record.msg}", None
    return record.name, event, getattr(record, "fields", {}).get("reason")


def suppressed_record(kind: LineKind, held: int, window_seconds: float) -> logging.LogRecord:
    """The line that stands for ``held`` lines of one kind the rate limit kept out."""
    logger_name, event, reason = kind
    of = event.removeprefix("log:") if event.startswith("log:") else event
    described = f"{of} ({reason})" if reason else of
    return logging.makeLogRecord({
        "name": logger_name, "levelno": logging.WARNING, "levelname": "WARNING",
        "msg": f"suppressed {held} similar events: {described}, within {window_seconds:g} s",
        "event": "log_suppressed",
        "fields": {"suppressed": held, "suppressed_event": "log" if event.startswith("log:") else event,
                   "reason": reason, "window_seconds": window_seconds},
    })  # fmt: skip


class CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a line is written, as a server or test harness may swap it."""

    def __init__(self):
        logging.Handler.__init__(self)

    @property
    def stream(self):
        return sys.stderr


class RateLimitedJsonHandler(logging.Handler):
    """Formats records as JSON lines and passes them to ``destination``, rate limited per kind."""

    def __init__(self, destination: logging.Handler, limiter: RateLimiter, settings: tuple):
        super().__init__()
        self.set_name(HANDLER_NAME)
        self.formatter = JsonLineFormatter()
        destination.setFormatter(self.formatter)
        self.destination = destination
        self.limiter = limiter
        self.settings = settings

    def emit(self, record: logging.LogRecord) -> None:
        allowed, ended = self.limiter.admit(line_kind(record))
        self._report(ended)
        if allowed:
            self.destination.handle(record)

    def flush(self) -> None:
        """Write the counts of windows that are over, then flush the destination."""
        with self.lock:
            self._report(self.limiter.ended())
            self.destination.flush()

    def close(self) -> None:
        """Write every count still held back, then close the destination."""
        with self.lock:
            self._report(self.limiter.ended(everything=True))
            self.destination.close()
        super().close()

    def _report(self, ended: list[tuple[LineKind, int]]) -> None:
        for kind, held in ended:
            self.destination.handle(suppressed_record(kind, held, self.limiter.window_seconds))


def installed_handler() -> RateLimitedJsonHandler | None:
    """The handler an earlier install_api_log put on the API's loggers, if any."""
    found = [handler for handler in logging.getLogger(API_LOGGERS[0]).handlers if handler.get_name() == HANDLER_NAME]
    return found[0] if found else None


def install_api_log(cfg) -> OutageLog:
    """Point the API's loggers at one rate-limited JSON-lines handler (the one already there
    when its settings are the same, else a new one in its place: never a second), log that
    this worker started, and return the outage tracker for the store reader's calls."""
    settings = (cfg.api.log_file, cfg.api.log_burst, cfg.api.log_window_seconds)
    handler = installed_handler()
    if handler is None or handler.settings != settings:
        remove_api_log()
        handler = RateLimitedJsonHandler(_destination(cfg.api.log_file), RateLimiter(*settings[1:]), settings)
        for name in API_LOGGERS:
            logging.getLogger(name).addHandler(handler)
    # A new set, not an update in place: another thread may be formatting a line with the old one.
    handler.formatter.secrets = frozenset(handler.formatter.secrets | url_secrets(cfg.store.url))
    level = logging.getLevelName(cfg.api.log_level.upper())
    handler.setLevel(level)
    for logger in map(logging.getLogger, API_LOGGERS):
        # Only ever lowered: a level someone set lower (a test capturing INFO lines) stays.
        if logger.getEffectiveLevel() > level:
            logger.setLevel(level)
    log.info(
        "API worker started", extra={"event": "api_started", "fields": {
            "store": redact_url(cfg.store.url), "key_prefix": cfg.store.key_prefix, "down_mode": cfg.api.down_mode,
            "log_file": cfg.api.log_file, "log_burst": cfg.api.log_burst,
            "log_window_seconds": cfg.api.log_window_seconds}},
    )  # fmt: skip
    return OutageLog(redis_address(cfg.store.url))


def remove_api_log() -> None:
    """Take the handler off the API's loggers and close it, writing the counts still held back."""
    handler = installed_handler()
    if handler is not None:
        for name in API_LOGGERS:
            logging.getLogger(name).removeHandler(handler)
        handler.close()


def _destination(log_file: str | None) -> logging.Handler:
    if log_file is None:
        return CurrentStderrHandler()
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    # Reopens the file when logrotate moves it away.
    return logging.handlers.WatchedFileHandler(log_file, encoding="utf-8")


class OutageLog:
    """Two lines per Redis outage, from the outcome of each store reader call: when calls start
    failing, and when one succeeds again (with how long it lasted)."""

    def __init__(self, store: str, clock: Callable[[], float] = time.monotonic):
        self.store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._since: float | None = None
        self._failed_calls = 0

    def observer(self, then: Callable[[float, bool], None]) -> Callable[[float, bool], None]:
        """A hook for the reader's ``observe``: note each call's outcome, then pass it on to ``then``."""

        def observe(seconds: float, failed: bool) -> None:
            self.observe(failed)
            then(seconds, failed)

        return observe

    def observe(self, failed: bool) -> None:
        """One Redis call's outcome; logs only when it starts or ends an outage."""
        if not failed and self._since is None:
            return  # the hot path: Redis answers and answered before
        # The reader calls its observer while it handles the Redis error, so the error is at hand.
        error = sys.exc_info()[1] if failed else None
        # Logged under the lock, so that a start and an end are never written in the wrong order.
        with self._lock:
            if failed:
                self._failed_calls += 1
                if self._since is None:
                    self._since = self._clock()
                    self._log_start(error)
            elif self._since is not None:
                seconds, calls = self._clock() - self._since, self._failed_calls
                self._since, self._failed_calls = None, 0
                self._log_end(seconds, calls)

    def _log_start(self, error: BaseException | None) -> None:
        reason = unavailable_reason(error) if error is not None else "redis_unavailable"
        log.warning(
            "Redis stopped answering (%s)", reason, exc_info=error,
            extra={"event": "redis_outage_started", "fields": {"reason": reason, "store": self.store}},
        )  # fmt: skip

    def _log_end(self, seconds: float, calls: int) -> None:
        log.info(
            "Redis answers again after %.3f s and %d failed calls", seconds, calls,
            extra={"event": "redis_outage_ended", "fields": {
                "store": self.store, "outage_seconds": round(seconds, 3), "failed_calls": calls}},
        )  # fmt: skip


def log_answers(app: Flask) -> None:
    """Log this app's 5xx answers and fallback answers. Register it after the metrics hooks:
    after-request hooks run last-registered first, and the metrics one consumes the answer's source."""
    app.before_request(_start_clock)
    app.after_request(_log_answer)


def _start_clock() -> None:
    g.recs_log_started = time.perf_counter()


def _log_answer(response):
    if response.status_code >= 500:
        _log_error_answer(response)
    elif g.get("recs_source") == FALLBACK:
        _log_fallback_answer(response)
    return response


def _log_error_answer(response) -> None:
    code, reason, error = _error_details(response)
    status = response.status_code
    log.log(
        logging.ERROR if status == 500 else logging.WARNING,
        "%d %s to %s %s", status, code, request.method, request.path, exc_info=error,
        extra={"event": code, "fields": {**_answer_fields(response), "reason": reason}},
    )  # fmt: skip


def _error_details(response) -> tuple[str, str | None, BaseException | None]:
    """The answer's error code, its reason and the exception behind it: as serving.errors noted
    them, else from the JSON body (readyz says why it is not ready in its own body)."""
    noted = g.get("recs_error")
    body = response.get_json(silent=True) if response.is_json else None
    body = body if isinstance(body, dict) else {}
    if noted is not None:
        code, error = noted
    else:
        code, error = body.get("error") or ("not_ready" if body.get("ready") is False else "server_error"), None
    return str(code), getattr(error, "reason", None) or body.get("reason"), error


def _log_fallback_answer(response) -> None:
    reason = _fallback_reason()
    log.warning(
        "%d fallback answer (%s) to %s %s", response.status_code, reason, request.method, request.path,
        extra={"event": "fallback_answer", "fields": {**_answer_fields(response), "reason": reason}},
    )  # fmt: skip


def _fallback_reason() -> str:
    """Why the answer came from the fallback: Redis answers but lost its current run, the
    worker holds the fallback file's run (it started while Redis was down), or Redis is failing."""
    reader = current_app.extensions["recs_store"]
    if reader.lost_current_run():
        return "lost_run"
    held = reader.held()
    if held is not None and held.from_fallback_file:
        return "fallback_file"
    return "outage"


def _answer_fields(response) -> dict:
    started = g.get("recs_log_started")
    held = current_app.extensions["recs_store"].held()
    return {
        "status": response.status_code,
        "method": request.method,
        "path": request.path,
        "duration_ms": round((time.perf_counter() - started) * 1000, 3) if started is not None else None,
        "run_id": held.run_id if held is not None else None,
    }
