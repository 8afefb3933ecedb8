"""The key-lookup API over the Redis store (store.reader does the reading).

make serve                      # granian, configured by the api section (serving/server.py)
python -m serving.server
"""

from __future__ import annotations


def create_app(config=None):
    """The Flask app (serving.app.create_app). Imported on call, so that the server launcher can
    set up prometheus-client's multiprocess mode before the app's modules import that library."""
    from serving.app import create_app as build

    return build(config)


__all__ = ["create_app"]
