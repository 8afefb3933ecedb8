"""Admin commands for the store. They change what every reader serves, so they are a CLI for
operators (and the pipeline), never an HTTP endpoint.

    python -m serving.admin status              # current run and retained runs
    python -m serving.admin rollback            # make the previous retained run current

Redis settings come from the ``publish`` section of the pipeline config (``--config``), so
REDIS_URL and RECS__PUBLISH__* overrides apply as they do for the publish job.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from conf import ConfigError, load_config
from serving import publishing
from serving.contract import KeyLayout
from serving.redis_conn import connect

EXIT_REFUSED = 2


def status(client, keys: KeyLayout) -> dict:
    """The current run and every retained run with its meta."""
    runs = []
    for run_id in publishing.known_runs(client, keys):
        meta = publishing.run_meta(client, keys, run_id) or {}
        runs.append(
            {
                "run_id": run_id,
                "status": meta.get("status", "incomplete"),
                "published_at": meta.get("published_at"),
                "users": meta.get("counts", {}).get("users"),
            }
        )
    return {"current": publishing.current_run(client, keys), "runs": runs}


def rollback(client, keys: KeyLayout, lock_ttl_seconds: float) -> dict:
    """Make the previous retained run current, under the publish lock."""
    with publishing.publish_lock(client, keys, lock_ttl_seconds) as lock:
        previous, current = publishing.rollback(client, keys, lock)
    return {"rolled_back_from": previous, "current": current}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one admin command and print its result as JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("status", "rollback"))
    parser.add_argument("--config", default=None, help="pipeline YAML (default: conf/pipeline.yaml)")
    args = parser.parse_args(argv)
    try:
        publish_cfg = load_config(args.config)["publish"]
        client, keys = connect(publishing.publisher_settings(publish_cfg)), KeyLayout(publish_cfg["key_prefix"])
        if args.command == "status":
            result = status(client, keys)
        else:
            result = rollback(client, keys, float(publish_cfg["lock_ttl_seconds"]))
    except (ConfigError, publishing.PublishRefused) as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
