"""Redis clients for the publisher, the admin commands and the API, built from one URL.

``redis://[user:password@]host:port/db`` or ``rediss://...`` for TLS; TLS options ride in the
query string, e.g. ``rediss://recs:secret@cache:6380/0?ssl_ca_certs=/etc/ssl/ca.pem``. With
``cluster=True`` the URL names any node of a Redis Cluster. The ``store`` config section gives
both roles the same address: the reader (API) fails fast so it can fall back, the writer waits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conf.schema import StoreSection


@dataclass(frozen=True)
class RedisSettings:
    """How to reach Redis: URL, cluster mode, timeouts and bounded retries. Picklable, so Spark
    tasks receive it and connect on their own."""

    url: str
    cluster: bool = False
    socket_timeout: float = 1.0
    connect_timeout: float = 1.0
    retries: int = 1
    max_connections: int = 64
    client_name: str = "recs"


def reader_settings(store: StoreSection, client_name: str = "recs-api") -> RedisSettings:
    """Settings for the API: short timeouts, so an outage turns into fallback answers quickly."""
    return _role_settings(store, store.reader_timeout_seconds, store.reader_retries, client_name)


def writer_settings(store: StoreSection, client_name: str = "recs-publish") -> RedisSettings:
    """Settings for the publisher and the admin commands: patient timeouts and more retries."""
    return _role_settings(store, store.writer_timeout_seconds, store.writer_retries, client_name)


def event_writer_settings(store: StoreSection, timeout: float) -> RedisSettings:
    """Settings for the API's event writer: no automatic retries, so a batch is never sent twice
    by the client itself (a caller retries with its idempotency key instead)."""
    return _role_settings(store, timeout, 0, "recs-events")


def _role_settings(store: StoreSection, timeout: float, retries: int, client_name: str) -> RedisSettings:
    return RedisSettings(
        url=store.url,
        cluster=store.cluster,
        socket_timeout=timeout,
        connect_timeout=timeout,
        retries=retries,
        max_connections=store.max_connections,
        client_name=client_name,
    )


def redis_address(url: str) -> str:
    """Where a Redis URL points, without user or password: ``scheme://host:port/db``."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    db = parts.path.strip("/") or "0"
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}/{db}"


def connect(settings: RedisSettings):
    """A pooled Redis (or RedisCluster) client with timeouts and exponential-backoff retries."""
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    options = {
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.connect_timeout,
        "retry": Retry(ExponentialBackoff(cap=0.25, base=0.01), settings.retries),
        "client_name": settings.client_name,
        "max_connections": settings.max_connections,
    }
    if settings.cluster:
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(settings.url, **options)
    return redis.Redis.from_url(settings.url, **options)
