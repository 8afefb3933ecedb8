"""The Flask application factory."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, request

from conf import load_config
from conf.schema import Config
from serving.api_log import install_api_log, log_answers
from serving.dashboard import dashboard
from serving.errors import register_error_handlers
from serving.events import feedback
from serving.fast_path import FastLookups
from serving.json_provider import OrjsonProvider
from serving.metrics import ApiMetrics
from serving.metrics import init_app as init_metrics
from serving.routes import AnyTextConverter, api, ops
from serving.validation import check_request
from store.connection import connect, event_writer_settings
from store.contract import KeyLayout
from store.events import EventLog
from store.reader import StoreReader


def create_app(config: Config | Mapping[str, Any] | None = None) -> Flask:
    """Build the app. Its settings are the project config (conf/recs.yaml, then $RECS_CONFIG's
    file, then RECS__* variables), or ``config``: a loaded Config, or nested overrides such as
    ``{"store": {"url": ...}, "api": {"max_n": 20}}`` applied over the loaded one."""
    cfg = config if isinstance(config, Config) else load_config(overrides=config)
    app = Flask(__name__)
    app.config["RECS"] = cfg
    # Bodies over this get a 413 before they are read (the events endpoint is the only one with a body).
    app.config["MAX_CONTENT_LENGTH"] = cfg.events.max_body_bytes
    app.url_map.converters["any_text"] = AnyTextConverter
    app.json = OrjsonProvider(app)
    # One reader (and so one Redis client pool) per app; routes reach it through app.extensions.
    metrics = ApiMetrics()
    outages = install_api_log(cfg)
    reader = StoreReader.from_config(cfg, observe=outages.observer(metrics.observe_redis))
    app.extensions["recs_store"] = reader
    init_metrics(app, metrics)
    log_answers(app)  # after init_metrics: its hook consumes the answer's source
    events = event_writer_settings(cfg.store, cfg.events.write_timeout_seconds)
    app.extensions["recs_events"] = EventLog(
        lambda: connect(events),
        KeyLayout(cfg.store.key_prefix),
        reader.in_outage,
        cfg.events.idempotency_ttl_seconds,
        observe=metrics.observe_redis,
    )
    app.before_request(lambda: check_request(request.environ))
    app.register_blueprint(api)
    app.register_blueprint(feedback)
    app.register_blueprint(dashboard)
    app.register_blueprint(ops)
    register_error_handlers(app)
    if cfg.api.fast_path:
        app.wsgi_app = FastLookups(app, app.wsgi_app)
    return app
