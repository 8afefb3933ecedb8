"""Print example calls against a running API, each with the answer it really gave.

python -m tools.api_examples http://127.0.0.1:8000 user_0000001
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence


def fetch(url: str) -> tuple[int, str]:
    """GET a URL; return the status and the body, also for 4xx/5xx answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8")


def example_paths(user_id: str) -> list[str]:
    """The calls worth showing: known user, unknown user, popular lists, a bad request, health."""
    return [
        f"/v1/recommendations/{user_id}?n=3",
        "/v1/recommendations/someone-new?n=3",
        "/v1/popular?n=3",
        "/v1/popular?n=2&category=Drama",
        f"/v1/recommendations/{user_id}?n=0",
        "/readyz",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Print each example call and its answer."""
    base_url, user_id = (sys.argv[1:] if argv is None else argv)[:2]
    for path in example_paths(user_id):
        status, body = fetch(base_url + path)
        try:
            body = json.dumps(json.loads(body), separators=(", ", ": "))
        except ValueError:
            pass
        print(f"$ curl -s '{base_url}{path}'\n  HTTP {status}: {body}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
