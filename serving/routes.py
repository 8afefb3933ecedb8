"""HTTP routes: the v1 lookup API and the operational endpoints. Each answer comes from one
store.reader Answer, shaped to JSON here."""

from __future__ import annotations

import datetime as dt
import json
from importlib import resources

from flask import Blueprint, current_app, jsonify, request
from werkzeug.routing import PathConverter

from serving.composition import Entry, compose
from serving.errors import BadRequest
from serving.metrics import record_answer
from serving.validation import checked_id, checked_name, parse_exclude, parse_n
from store.experiments import ASSIGNED, FALLBACK, FORCED, RecId
from store.reader import FALLBACK as FALLBACK_SOURCE
from store.reader import Answer, StoreReader


class AnyTextConverter(PathConverter):
    """Like ``path``, but also matches newlines, so that ids with control characters reach
    validation and get a 400 rather than falling through to a 404."""

    regex = r"[\s\S]+?"
    part_isolating = False


api = Blueprint("api", __name__, url_prefix="/v1")
# The lookup route as Flask names it in url_rule.rule (the metrics' endpoint label).
RECOMMENDATIONS_RULE = "/v1/recommendations/<any_text:user_id>"
ops = Blueprint("ops", __name__)


def reader() -> StoreReader:
    """The app's store reader, created once per app by create_app."""
    return current_app.extensions["recs_store"]


def requested_n() -> int:
    """The ``n`` of this request, within the configured default and maximum."""
    settings = current_app.config["RECS"].api
    return parse_n(request.args, settings.default_n, settings.max_n)


def entries_json(entries: list[Entry]) -> list[dict]:
    """Entries as JSON objects with 1-based ranks and their sources."""
    return [
        {"item_id": e.item_id, "score": e.score, "rank": rank, "source": e.source} for rank, e in enumerate(entries, 1)
    ]


def ranked_json(items, n: int) -> list[dict]:
    """A ranked list's first n entries as JSON objects with 1-based ranks."""
    return [{"item_id": item, "score": score, "rank": rank} for rank, (item, score) in enumerate(items[:n], 1)]


def requested_category() -> str | None:
    """The ``category`` parameter, if given, checked like an id."""
    category = request.args.get("category")
    return None if category is None else checked_id(category, "category")


@api.get("/recommendations/<any_text:user_id>")
def recommendations(user_id: str):
    """Top-N for one user in their experiment variant (or ?variant=, forced for QA and kept
    out of the statistics), optionally in one ``category`` and without the ``exclude``d items;
    unknown users get the popular list. ``rec_id`` names this response for its events."""
    user_id = checked_id(user_id, "user_id")
    n, category = requested_n(), requested_category()
    settings = current_app.config["RECS"].api
    exclude = parse_exclude(request.args.get("exclude"), settings.max_exclude)
    forced = request.args.get("variant")
    if forced is not None:
        forced = checked_name(forced, "variant")
    document, item_sources = recommendation_document(reader(), settings, user_id, n, category, exclude, forced)
    record_answer(document["source"], item_sources)
    return jsonify(document)


def recommendation_document(
    store: StoreReader, settings, user_id: str, n: int, category: str | None, exclude: frozenset[str], forced
) -> tuple[dict, list[str]]:
    """The JSON document answering one checked lookup, and its items' sources (for metrics);
    the Flask view and the fast path (serving/fast_path.py) both answer with it."""
    # Without a category filter no item past the first n + len(exclude) can be served: only
    # those are checked and converted (a stored list holds recommend.top_n, 100 by default).
    first = n + len(exclude) if category is None else None
    answer = store.recommendations(user_id, forced_variant=forced, first=first)
    entries = compose(answer, n, category, exclude, settings.exploration_slots, user_id)
    rec_id = RecId.new(answer.run_id, answer.experiment, answer.variant, _mode(answer))
    document = {
        "user_id": user_id, "run_id": answer.run_id, "source": answer.source, "experiment": answer.experiment,
        "variant": answer.variant, "forced": answer.forced, "rec_id": str(rec_id), "items": entries_json(entries),
    }  # fmt: skip
    return document, [entry.source for entry in entries]


@api.get("/similar/<any_text:item_id>")
def similar(item_id: str):
    """Items like this one: by ALS factors for warm items, by metadata for cold ones."""
    item_id = checked_id(item_id, "item_id")
    n = requested_n()
    run_id, method, items = reader().similar(item_id)
    record_answer(method, [method] * min(n, len(items)))
    return jsonify(item_id=item_id, run_id=run_id, method=method, items=ranked_json(items, n))


def _mode(answer: Answer) -> str:
    """How the list was chosen, as its rec_id records: forced and fallback lists never count."""
    if answer.forced:
        return FORCED
    return FALLBACK if answer.source == FALLBACK_SOURCE else ASSIGNED


@api.get("/recommendations/")
@api.get("/recommendations")
def recommendations_without_user():
    """A lookup without a user id is a client error, not a missing page."""
    raise BadRequest("user_id must not be empty")


@api.get("/popular")
def popular():
    """The popular list, overall or for ?category=."""
    category = requested_category()
    n = requested_n()
    answer = reader().popular(category)
    record_answer(answer.source, [answer.source] * min(n, len(answer.items)))
    return jsonify(run_id=answer.run_id, source=answer.source, category=category, items=ranked_json(answer.items, n))


@api.get("/runs")
def runs():
    """The retained runs, newest first, with their dates, counts, stage times and metrics."""
    current, documents = reader().runs()
    return jsonify(current=current, runs=[run_summary(meta, current) for meta in documents])


def run_summary(meta: dict, current: str | None) -> dict:
    """What the run history shows of one run's meta."""
    metrics = meta.get("metrics") or {}
    return {
        "run_id": meta["run_id"],
        "run_date": meta.get("run_date"),
        "status": meta.get("status"),
        "current": meta["run_id"] == current,
        "published_at": meta.get("published_at"),
        "finalized_at": meta.get("finalized_at"),
        "code_version": meta.get("code_version"),
        "variants": meta.get("variants"),
        "experiment": (meta.get("experiment") or {}).get("name"),
        "counts": {**(meta.get("run_counts") or {}), **(meta.get("counts") or {})},
        "timings_seconds": meta.get("timings_seconds") or {},
        "metrics": {key: metrics.get(key) for key in ("k", "als", "popularity", "variants", "cold_start")},
    }


@ops.get("/healthz")
def healthz():
    """The process is alive; says nothing about Redis."""
    return jsonify(status="ok")


@ops.get("/readyz")
def readyz():
    """Ready when Redis answers and a run is current; 503 otherwise, with the reason (and, when
    Redis lost its current run, the run answered from fallback). ``warnings`` name Redis settings
    that put the run at risk, without changing readiness."""
    ready, body = reader().readiness(dt.datetime.now(dt.UTC))
    return jsonify(body), 200 if ready else 503


@ops.get("/metrics")
def metrics():
    """Prometheus metrics: every worker's counts, and the run this worker serves."""
    body, content_type = current_app.extensions["recs_metrics"].exposition(reader())
    return current_app.response_class(body, content_type=content_type)


@ops.get("/openapi.json")
def openapi():
    """The checked-in OpenAPI document."""
    return current_app.response_class(OPENAPI_TEXT, mimetype="application/json")


OPENAPI_TEXT = json.dumps(json.loads(resources.files("serving").joinpath("openapi.json").read_text("utf-8")))
