"""HTTP routes of the feedback loop: recording events and reading experiment results."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

from serving.errors import BadRequest, NotFound
from serving.validation import checked_name, idempotency_key_of, parse_events
from store.errors import NoCurrentRun
from store.events import EventLog, attribute
from store.reader import StoreReader

feedback = Blueprint("feedback", __name__, url_prefix="/v1")


def reader() -> StoreReader:
    """The app's store reader, created once per app by create_app."""
    return current_app.extensions["recs_store"]


def event_log() -> EventLog:
    """The app's event log, sharing the reader's Redis client."""
    return current_app.extensions["recs_events"]


@feedback.post("/events")
def post_events():
    """Record one event or a batch; all of a batch is stored or none of it."""
    settings = current_app.config["RECS"].events
    if not settings.enabled:
        raise NotFound("event collection is disabled (events.enabled)")
    body = request.get_json(silent=True)
    if body is None:
        raise BadRequest("the body must be JSON (Content-Type: application/json)")
    events = parse_events(body, settings.max_batch)
    try:
        assignment = reader().current().assignment
    except NoCurrentRun:
        assignment = None
    for index, event in enumerate(events):
        where = "event" if isinstance(body, dict) else f"events[{index}]"
        _check_variant(event.variant, assignment, f"{where}.variant")
        if event.rec_id and assignment and event.rec_id.experiment == assignment.name:
            _check_variant(event.rec_id.variant, assignment, f"{where}.rec_id")
    idempotency_key = idempotency_key_of(request.headers.get("Idempotency-Key"))
    attributed = [(event, attribute(event, assignment)) for event in events]
    written = event_log().record(attributed, idempotency_key)
    if written is None:
        return jsonify(accepted=0, duplicate=True), 202
    counter = current_app.extensions["recs_metrics"].events
    for event, attribution in attributed:
        # Only a counted event's variant is checked against the experiment; any other variant
        # is the client's word, and a label a client can choose has no bound on its values.
        counter.labels(event.type, attribution.variant if attribution.counted else "-").inc()
    return jsonify(accepted=written, duplicate=False), 202


def _check_variant(variant: str | None, assignment, field: str) -> None:
    if variant and assignment and variant not in assignment.variants:
        raise BadRequest(
            f"{field} names variant {variant!r}, which is not in experiment {assignment.name!r}; "
            f"its variants are {', '.join(assignment.variants)}"
        )


@feedback.get("/experiments/<name>")
def experiment(name: str):
    """An experiment's results from the stored counters: rates, intervals, tests, sample ratio."""
    name = checked_name(name, "experiment")
    report = event_log().report(name)
    if report is None:
        raise NotFound(f"experiment {name!r} has never been published")
    return jsonify(report)
