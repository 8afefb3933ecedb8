"""The key-lookup API over the Redis store (store.reader does the reading).

make serve                      # gunicorn, configured by conf/gunicorn.conf.py
gunicorn -c conf/gunicorn.conf.py 'serving:create_app()'
"""

from serving.app import create_app

__all__ = ["create_app"]
