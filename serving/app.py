"""The Flask application factory (reached through ``serving.create_app``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from flask import Flask

from serving.contract import KeyLayout
from serving.errors import register_error_handlers
from serving.fallback_file import FallbackFile
from serving.lookups import DOWN_MODES
from serving.redis_conn import RedisSettings, connect, redis_address
from serving.routes import AnyTextConverter, api, ops
from serving.store import RecommendationStore

DEFAULTS_FILE = Path(__file__).resolve().parents[1] / "conf" / "serving.yaml"
ENV_PREFIX = "RECS_API"


def build_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app: defaults from conf/serving.yaml, then RECS_API_* variables, then ``config``."""
    app = Flask(__name__)
    app.url_map.converters["any_text"] = AnyTextConverter
    app.config.from_file(str(DEFAULTS_FILE), load=yaml.safe_load)
    if os.environ.get("REDIS_URL") and not os.environ.get(f"{ENV_PREFIX}_REDIS_URL"):
        app.config["REDIS_URL"] = os.environ["REDIS_URL"]
    app.config.from_prefixed_env(ENV_PREFIX)
    app.config.update(config or {})
    _check_config(app.config)
    app.json.sort_keys = False
    init_store(app)
    app.register_blueprint(api)
    app.register_blueprint(ops)
    register_error_handlers(app)
    return app


def init_store(app: Flask) -> None:
    """Create the app's one Redis client and store; routes reach it through app.extensions."""
    settings = RedisSettings(
        url=app.config["REDIS_URL"],
        cluster=bool(app.config["REDIS_CLUSTER"]),
        socket_timeout=float(app.config["REDIS_SOCKET_TIMEOUT_SECONDS"]),
        connect_timeout=float(app.config["REDIS_CONNECT_TIMEOUT_SECONDS"]),
        retries=int(app.config["REDIS_RETRIES"]),
        max_connections=int(app.config["REDIS_MAX_CONNECTIONS"]),
        client_name="recs-api",
    )
    fallback = None
    # In "unavailable" mode an outage answers 503, so a stored fallback would never be used.
    if app.config["FALLBACK_FILE"] and app.config["REDIS_DOWN_MODE"] == "fallback":
        store_name = f"{redis_address(settings.url)} prefix={app.config['KEY_PREFIX']}"
        fallback = FallbackFile(app.config["FALLBACK_FILE"], store_name, float(app.config["FALLBACK_MAX_AGE_SECONDS"]))
    app.extensions["recs_store"] = RecommendationStore(
        lambda: connect(settings),
        KeyLayout(app.config["KEY_PREFIX"]),
        refresh_seconds=float(app.config["POINTER_REFRESH_SECONDS"]),
        retry_after_seconds=float(app.config["REDIS_RETRY_AFTER_SECONDS"]),
        fallback_file=fallback,
    )


def _check_config(config) -> None:
    if config["REDIS_DOWN_MODE"] not in DOWN_MODES:
        raise ValueError(f"REDIS_DOWN_MODE must be one of {DOWN_MODES}, got {config['REDIS_DOWN_MODE']!r}")
    if not 1 <= int(config["DEFAULT_N"]) <= int(config["MAX_N"]):
        raise ValueError("DEFAULT_N must be between 1 and MAX_N")
