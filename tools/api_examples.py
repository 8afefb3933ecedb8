"""Print example calls against a running API, each with the answer it really gave: lookups, an
event about the list a user was shown, and the experiment's results.

    python -m tools.api_examples http://127.0.0.1:8000 user_0000001 [experiment]
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence


def call(url: str, body: object | None = None) -> tuple[int, str]:
    """GET a URL (or POST ``body`` as JSON); return the status and the body, also for 4xx/5xx answers."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8")


def show(base_url: str, path: str, body: object | None = None) -> dict | None:
    """Make one call, print it as curl with its answer, and return the answer's JSON."""
    status, text = call(base_url + path, body)
    try:
        answer = json.loads(text)
        text = json.dumps(answer, separators=(", ", ": "))
    except ValueError:
        answer = None
    if body is None:
        print(f"$ curl -s '{base_url}{path}'\n  HTTP {status}: {text}")
    else:
        sent = json.dumps(body, separators=(",", ":"))
        print(f"$ curl -s -H 'Content-Type: application/json' -d '{sent}' '{base_url}{path}'\n  HTTP {status}: {text}")
    return answer


def main(argv: Sequence[str] | None = None) -> int:
    """Print each example call and its answer."""
    base_url, user_id, *rest = sys.argv[1:] if argv is None else argv
    shown = show(base_url, f"/v1/recommendations/{user_id}?n=3") or {}
    show(base_url, "/v1/recommendations/someone-new?n=3")
    show(base_url, f"/v1/recommendations/{user_id}?n=3&category=Drama&exclude=item_000001")
    show(base_url, "/v1/popular?n=2&category=Drama")
    if shown.get("items"):
        show(base_url, f"/v1/similar/{shown['items'][0]['item_id']}?n=3")
    show(base_url, f"/v1/recommendations/{user_id}?n=0")
    if shown.get("items"):
        item = shown["items"][0]["item_id"]
        events = [{"user_id": user_id, "item_id": item, "type": kind, "rec_id": shown["rec_id"]}
                  for kind in ("impression", "click")]  # fmt: skip
        show(base_url, "/v1/events", events)
    if rest:
        show(base_url, f"/v1/experiments/{rest[0]}")
    show(base_url, "/readyz")
    return 0


if __name__ == "__main__":
    sys.exit(main())
