"""Reference apps the API benchmark measures the project against, on the same Redis and machine.

- ``create_bare_app()``: the floor. A bare WSGI callable that does one Redis GET per request and
  returns the stored bytes as they are: no routing, no validation, no JSON, no metrics. Nothing
  that answers from Redis can do less per request.
- ``create_textbook_app()``: the approach a notebook grows into. A Flask app that GETs a pickled
  list, unpickles it and ``jsonify``s it, run by Flask's own development server
  (``python -m bench.reference_apps textbook``). Its values are written by
  ``write_textbook_values`` under their own prefix: the project itself never pickles.

Both take the Redis URL from ``BENCH_REDIS_URL`` and read keys ``bench:<user_id>``.
"""

from __future__ import annotations

import os
import pickle
import sys

TEXTBOOK_PREFIX = "textbook:"
BARE_PREFIX = "bare:"


def _redis():
    import redis

    return redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])


def create_bare_app():
    """The one-GET WSGI floor: GET /<anything>/<user_id> returns that user's stored bytes."""
    client = _redis()

    def app(environ, start_response):
        user_id = environ["PATH_INFO"].rsplit("/", 1)[-1]
        body = client.get(BARE_PREFIX + user_id) or b"[]"
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return app


def create_textbook_app():
    """Flask + pickle: unpickle the user's list and jsonify its first n items."""
    from flask import Flask, jsonify, request

    app = Flask("textbook")
    client = _redis()

    @app.get("/v1/recommendations/<user_id>")
    def recommendations(user_id):
        n = int(request.args.get("n", 10))
        raw = client.get(TEXTBOOK_PREFIX + user_id)
        items = pickle.loads(raw) if raw else []
        return jsonify(user_id=user_id, items=[{"item_id": i, "score": s} for i, s in items[:n]])

    return app


def write_textbook_values(client, lists: dict[str, list[tuple[str, float]]]) -> None:
    """Store each user's list pickled (the textbook app) and as the JSON body the floor returns."""
    import json

    pipe = client.pipeline(transaction=False)
    for index, (user_id, items) in enumerate(lists.items(), 1):
        pipe.set(TEXTBOOK_PREFIX + user_id, pickle.dumps(items))
        body = {"user_id": user_id, "items": [{"item_id": i, "score": s} for i, s in items[:10]]}
        pipe.set(BARE_PREFIX + user_id, json.dumps(body, separators=(",", ":")))
        if index % 1000 == 0:
            pipe.execute()
    pipe.execute()


if __name__ == "__main__":
    # python -m bench.reference_apps textbook <port>: Flask's development server, threaded.
    create_textbook_app().run(host="127.0.0.1", port=int(sys.argv[2]), threaded=True)
