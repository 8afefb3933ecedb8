"""What each endpoint answers, built from one run snapshot per request."""

from __future__ import annotations

import datetime as dt

from serving.errors import NotFound
from serving.store import NoCurrentRun, RankedList, RecommendationStore, StoreDataError, StoreUnavailable

DOWN_MODES = ("fallback", "unavailable")


def ranked_items(items: RankedList | tuple, n: int) -> list[dict]:
    """The first n entries as JSON objects with 1-based ranks."""
    return [{"item_id": item_id, "score": score, "rank": rank} for rank, (item_id, score) in enumerate(items[:n], 1)]


def recommendations(store: RecommendationStore, user_id: str, n: int, down_mode: str) -> dict:
    """A user's list: personalized if the current run knows the user, else the popular list.
    When Redis fails mid-request, the same run's popular list (held in memory) answers."""
    snapshot = store.current()
    if snapshot.from_fallback_file:
        items, source = snapshot.popular, "fallback"  # started during an outage, Redis not seen yet
    else:
        try:
            items, source = store.user_items(snapshot, user_id), "personalized"
            if items is None:
                items, source = snapshot.popular, "popular"
        except StoreUnavailable:
            if down_mode != "fallback":
                raise
            items, source = snapshot.popular, "fallback"
    return {"user_id": user_id, "run_id": snapshot.run_id, "source": source, "items": ranked_items(items, n)}


def popular(store: RecommendationStore, n: int, category: str | None) -> dict:
    """The overall popular list (always from memory), or one category's (one Redis GET)."""
    snapshot = store.current()
    items = snapshot.popular
    source = "fallback" if snapshot.from_fallback_file else "popular"
    if category is not None:
        items = store.category_items(snapshot, category)
        if items is None:
            raise NotFound(f"category {category!r} has no popular list in run {snapshot.run_id}")
    return {"run_id": snapshot.run_id, "source": source, "category": category, "items": ranked_items(items, n)}


def readiness(store: RecommendationStore, now: dt.datetime) -> tuple[bool, dict]:
    """Whether the API can serve: Redis answers and a current run exists, with that run's age."""
    if not store.ping():
        return False, {"ready": False, "reason": "redis_unreachable"}
    try:
        snapshot = store.refresh()
    except StoreDataError:
        return False, {"ready": False, "reason": "store_data_error"}
    except (StoreUnavailable, NoCurrentRun):
        snapshot = None
    if snapshot is None:
        return False, {"ready": False, "reason": "no_published_run"}
    published = dt.datetime.fromisoformat(snapshot.meta["published_at"])
    return True, {
        "ready": True,
        "run_id": snapshot.run_id,
        "published_at": snapshot.meta["published_at"],
        "age_seconds": round((now - published).total_seconds(), 3),
    }
