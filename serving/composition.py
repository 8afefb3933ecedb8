"""Turning a stored list into the answer a request asked for: filtered by category, without the
excluded items, topped up to n from the popular list, with exploration slots for cold items,
and each item marked with where it came from.

Everything here works on one Answer and the snapshot it came from, in memory: filtering costs
no Redis round trip.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from store.experiments import bucket_of
from store.reader import FALLBACK, PERSONALIZED, POPULAR, Answer, StoreReader

NEW = "new"
EXPLORATION_SALT = "exploration"


class Entry(NamedTuple):
    """One item of an answer: its id, score and source (personalized, popular, fallback or new)."""

    item_id: str
    score: float
    source: str


def compose(
    answer: Answer, n: int, category: str | None, exclude: frozenset[str], exploration_slots: int, user_id: str
) -> list[Entry]:
    """The answer's first n items that fit: in ``category`` (if given), not excluded; then the
    popular list (the category's, if given) without the items the user has seen; personalized
    answers end with up to ``exploration_slots`` (at most half of n) cold items of the user's
    strongest categories that the user has not seen."""
    snapshot = answer.snapshot
    fallback = FALLBACK if answer.source == FALLBACK else POPULAR
    top_up = snapshot.popular if category is None else StoreReader.category_list(snapshot, category)
    # Exploration never takes more than half of an answer.
    slots = min(exploration_slots, n // 2) if answer.source == PERSONALIZED else 0
    picks = exploration_picks(answer, category, exclude | set(answer.seen), slots, user_id)
    used = set(exclude) | set(picks)
    chosen: list[Entry] = []
    wanted = n - len(picks)

    def take(items: Iterable[tuple[str, float]], source: str, skip: set[str], check_category: bool) -> None:
        for item_id, score in items:
            if item_id in used or item_id in skip:
                continue
            if check_category and not in_category(snapshot, item_id, category):
                continue
            used.add(item_id)
            chosen.append(Entry(item_id, score, source))
            if len(chosen) >= wanted:
                return

    if wanted > 0:
        take(answer.items, answer.source, set(), check_category=category is not None)
    # Most answers are full by now; the top-up pass and its set of seen items cost nothing then.
    if len(chosen) < wanted:
        # The category's own popular list needs no check (a fallback-file snapshot has no item categories).
        take(top_up, fallback, set(answer.seen), check_category=False)
    return chosen + [Entry(item_id, 0.0, NEW) for item_id in picks]


def in_category(snapshot, item_id: str, category: str | None) -> bool:
    """Whether the item belongs to the category (always, without one)."""
    return category is None or category in snapshot.item_categories.get(item_id, ())


def exploration_picks(answer: Answer, category: str | None, skip: set[str], slots: int, user_id: str) -> list[str]:
    """Up to ``slots`` cold items from the user's strongest categories (or the one asked for),
    taken in turn from each. Each user starts at their own place in each list (a hash of the
    user id), so that different users explore different new items."""
    if slots == 0:
        return []
    wanted = [category] if category else list(answer.categories)
    offset = bucket_of(EXPLORATION_SALT, user_id)
    lists = []
    for name in wanted:
        cold = answer.snapshot.cold.get(name, ())
        if cold:
            start = offset % len(cold)
            lists.append(cold[start:] + cold[:start])
    picks: list[str] = []
    for position in range(max((len(items) for items in lists), default=0)):
        for items in lists:
            if position < len(items) and items[position] not in skip and items[position] not in picks:
                picks.append(items[position])
                if len(picks) == slots:
                    return picks
    return picks
