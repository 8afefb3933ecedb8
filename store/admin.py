"""Admin commands for the store. They change what every reader serves, so they are a command
for operators (and the pipeline), never an HTTP endpoint.

    python -m store.admin status              # current run and retained runs
    python -m store.admin rollback            # make the previous retained run current
    python -m jobs.publish --run-date 2026-11-20 --rollback   # make a chosen retained or older run current

They read the ``store`` and ``publish`` sections of the configuration (``--config``, else
$RECS_CONFIG, with RECS__* and REDIS_URL overrides), as the publish job and the API do.
A refusal or a bad config is one line on stderr and exit status 2.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from conf import ConfigError, load_config
from conf.cli import CommandParser, add_config_argument, refuse
from store.connection import connect, writer_settings
from store.contract import KeyLayout
from store.errors import PublishRefused
from store.registry import current_run, known_runs, read_run_meta
from store.writer import PublishPolicy, rollback


def status(client, keys: KeyLayout) -> dict:
    """The current run and every retained run with its meta."""
    runs = []
    for run_id in known_runs(client, keys):
        meta = read_run_meta(client, keys, run_id) or {}
        runs.append(
            {
                "run_id": run_id,
                "status": meta.get("status", "incomplete"),
                "published_at": meta.get("published_at"),
                "user_lists": meta.get("counts", {}).get("user_lists"),
                "variants": meta.get("variants"),
                "experiment": (meta.get("experiment") or {}).get("name"),
            }
        )
    return {"current": current_run(client, keys), "runs": runs}


def roll_back(client, keys: KeyLayout, policy: PublishPolicy) -> dict:
    """Make the previous retained run current; report which run was left and which is current."""
    rolled_back_from, now_current = rollback(client, keys, policy)
    return {"rolled_back_from": rolled_back_from, "current": now_current}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one admin command and print its result as JSON."""
    parser = CommandParser(__doc__, prog="python -m store.admin")
    parser.add_argument("command", choices=("status", "rollback"))
    add_config_argument(parser)
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config)
        client = connect(writer_settings(cfg.store, client_name="recs-admin"))
        keys = KeyLayout(cfg.store.key_prefix)
        if args.command == "status":
            result = status(client, keys)
        else:
            result = roll_back(client, keys, PublishPolicy.from_config(cfg.publish))
    except (ConfigError, PublishRefused) as exc:
        return refuse(args.command, exc)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
