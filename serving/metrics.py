"""Prometheus metrics of the API, right under a multi-worker server.

Under the server each worker is a process, so the metrics run in prometheus-client's
multiprocess mode: every worker writes its counts to files in ``PROMETHEUS_MULTIPROC_DIR``
(serving/server.py sets and empties it), and whichever worker answers ``GET /metrics``
sums them all. Without that variable (``flask run``, tests) the app's own registry is used.

    recs_request_seconds{endpoint, source}     latency histogram, by route and answer source
    recs_answers_total{endpoint, source}        answers by source (personalized, popular, fallback)
    recs_items_served_total{source}             items served by source (personalized, popular, fallback, new)
    recs_errors_total{status}                   error answers by HTTP status
    recs_redis_seconds, recs_redis_errors_total time spent in Redis calls, and their failures
    recs_events_total{type, variant}            events accepted
    recs_run_info{run_id}, recs_run_age_seconds the run this worker serves, and its age (at scrape)
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections import Counter as Tally

from flask import Flask, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily

from store.errors import StoreError

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5)
REDIS_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1, 0.25, 1.0)


def multiprocess_mode() -> bool:
    """Whether the workers share their metrics through files (set by serving/server.py)."""
    return bool(os.environ.get(MULTIPROCESS_ENV))


class ApiMetrics:
    """The API's metrics, one set per app. In multiprocess mode they belong to no registry:
    their values live in the shared files that the scrape reads."""

    def __init__(self):
        self.registry = None if multiprocess_mode() else CollectorRegistry()
        known = {"registry": self.registry}
        self.request_seconds = Histogram(
            "recs_request_seconds", "Request latency", ["endpoint", "source"], buckets=LATENCY_BUCKETS, **known
        )
        self.answers = Counter("recs_answers", "Answers by source", ["endpoint", "source"], **known)
        self.items = Counter("recs_items_served", "Items served by source", ["source"], **known)
        self.errors = Counter("recs_errors", "Error answers by HTTP status", ["status"], **known)
        self.redis_seconds = Histogram("recs_redis_seconds", "Time in Redis calls", buckets=REDIS_BUCKETS, **known)
        self.redis_errors = Counter("recs_redis_errors", "Redis calls that failed", **known)
        self.events = Counter("recs_events", "Events accepted", ["type", "variant"], **known)
        self._children = LabelledChildren()

    def record_request(self, endpoint: str, source: str, status: int, item_sources, seconds: float | None) -> None:
        """One answered request: its latency, and its answer's or error's count."""
        children = self._children
        if seconds is not None:
            children.get(self.request_seconds, endpoint, source).observe(seconds)
        if status >= 400:
            children.get(self.errors, str(status)).inc()
        elif source != "-":
            children.get(self.answers, endpoint, source).inc()
        # One increment per source, not per item: each one is a write to a shared file.
        for item_source, count in Tally(item_sources).items():
            children.get(self.items, item_source).inc(count)

    def observe_redis(self, seconds: float, failed: bool) -> None:
        """One Redis call's time, and whether it failed (the store reader's hook)."""
        self.redis_seconds.observe(seconds)
        if failed:
            self.redis_errors.inc()

    def exposition(self, reader) -> tuple[bytes, str]:
        """The text exposition: every worker's metrics (or this app's), and the served run."""
        if multiprocess_mode():
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        else:
            registry = CollectorRegistry()
            registry.register(_Forward(self.registry))
        registry.register(RunCollector(reader))
        return generate_latest(registry), CONTENT_TYPE_LATEST


class _Forward:
    """Exposes another registry's metrics inside this scrape's registry."""

    def __init__(self, registry: CollectorRegistry):
        self._registry = registry

    def collect(self):
        yield from self._registry.collect()


class RunCollector:
    """The run the scraping worker serves: an info metric with its id, and its age. Computed at
    scrape time from the worker's snapshot (multiprocess mode cannot hold info metrics); every
    worker serves the same run within a pointer-refresh interval."""

    def __init__(self, reader):
        self._reader = reader

    def collect(self):
        snapshot = self._served_run()
        info = InfoMetricFamily("recs_run", "The run this worker serves")
        age = GaugeMetricFamily("recs_run_age_seconds", "Seconds since the served run was published")
        if snapshot is not None:
            info.add_metric([], {"run_id": snapshot.run_id, "from_fallback_file": str(snapshot.from_fallback_file)})
            published = dt.datetime.fromisoformat(snapshot.meta["published_at"])
            age.add_metric([], (dt.datetime.now(dt.UTC) - published).total_seconds())
        yield info
        yield age

    def _served_run(self):
        # A worker that has answered only scrapes holds no run yet: load it, so that the run's
        # series do not come and go with whichever worker answers.
        try:
            return self._reader.current()
        except StoreError:
            return self._reader.held()


def init_app(app: Flask, metrics: ApiMetrics) -> None:
    """Time every request and count its answer and errors."""
    app.extensions["recs_metrics"] = metrics

    @app.before_request
    def _start_timer():
        g.recs_started = time.perf_counter()

    @app.after_request
    def _record(response):
        started = g.pop("recs_started", None)
        endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
        seconds = None if started is None else time.perf_counter() - started
        item_sources = g.pop("recs_item_sources", ())
        metrics.record_request(endpoint, g.pop("recs_source", "-"), response.status_code, item_sources, seconds)
        return response


class LabelledChildren:
    """The labelled series of each metric, looked up once: prometheus-client's labels() takes a
    lock and checks its arguments on every call, a cost paid on every request otherwise."""

    def __init__(self):
        self._children: dict[tuple, object] = {}

    def get(self, metric, *labels: str):
        """metric.labels(*labels), cached (label values here come from a small closed set)."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child


def record_answer(source: str, item_sources=()) -> None:
    """Note the answer's source and its items' sources for this request's metrics."""
    g.recs_source = source
    g.recs_item_sources = item_sources
