"""Key-lookup API over the Redis store, plus the store contract shared with the publisher.

make serve                      # gunicorn, configured by conf/gunicorn.conf.py
gunicorn -c conf/gunicorn.conf.py 'serving:create_app()'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the Flask app: defaults from conf/serving.yaml, then RECS_API_* variables, then ``config``."""
    # Imported here, not at module top: Spark executors import serving.contract and must not need Flask.
    from serving.app import build_app

    return build_app(config)
