"""Admin commands for the store. They change what every reader serves, so they are a command
for operators (and the pipeline), never an HTTP endpoint.

    python -m store.admin status              # current run and retained runs
    python -m store.admin rollback            # make the previous retained run current
    python -m store.admin lock                # who holds the publish lock, its age, whether it runs
    python -m store.admin clear-lock          # remove a dead holder's lock (--force: any holder)
    python -m jobs.publish --run-date 2026-11-20 --rollback   # make a chosen retained or older run current
    python -m jobs.restore                    # Redis lost its data: reload the recorded current run

They read the ``store`` and ``publish`` sections of the configuration (``--config``, else
$RECS_CONFIG, with RECS__* and REDIS_URL overrides), as the publish job and the API do.
A rollback also records the run it made current in ``<paths.runs_root>/current-run.json``,
which the restore (a Spark job, as it reads the run folder) brings back.
A refusal or a bad config is one line on stderr and exit status 2.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import sys
from collections.abc import Sequence

from conf import ConfigError, load_config
from conf.cli import CommandParser, add_config_argument, refuse
from store.connection import connect, writer_settings
from store.contract import KeyLayout
from store.errors import PublishRefused
from store.lock import parse_holder
from store.registry import current_run, current_run_recorder, known_runs, read_run_meta
from store.writer import PublishPolicy, SwitchRecorder, rollback


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


def lock_info(client, keys: KeyLayout, now: dt.datetime) -> dict:
    """Who holds the publish lock, since when, when it expires, and whether the holder still runs."""
    token = client.get(keys.publish_lock)
    if token is None:
        return {"held": False}
    holder = parse_holder(token.decode("utf-8", "replace") if isinstance(token, bytes) else token)
    info = {"held": True, **holder, "expires_in_seconds": max(client.pttl(keys.publish_lock), 0) / 1000}
    if "since" in holder:
        since = dt.datetime.strptime(holder["since"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
        info["age_seconds"] = round((now - since).total_seconds(), 1)
        info["holder_alive"] = _process_alive(holder["pid"]) if holder["host"] == socket.gethostname() else None
    return info


def clear_lock(client, keys: KeyLayout, now: dt.datetime, force: bool = False) -> dict:
    """Remove the publish lock of a holder that is gone; a live or unknown holder needs ``force``."""
    info = lock_info(client, keys, now)
    if not info["held"]:
        return {"cleared": False, "reason": "no publish lock is held"}
    if info.get("holder_alive") is not False and not force:
        where = "still runs" if info.get("holder_alive") else "cannot be checked from this host"
        raise PublishRefused(f"the lock's holder {info.get('host')} pid {info.get('pid')} {where}; "
                             "after making sure it is gone, pass --force")  # fmt: skip
    # Compare and delete in one step: a publisher that took the lock meanwhile keeps it.
    removed = client.eval(_DELETE_IF_TOKEN, 1, keys.publish_lock, info["token"])
    return {"cleared": bool(removed), "holder": {k: v for k, v in info.items() if k != "held"}}


_DELETE_IF_TOKEN = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def roll_back(client, keys: KeyLayout, policy: PublishPolicy, on_switch: SwitchRecorder | None = None) -> dict:
    """Make the previous retained run current (telling ``on_switch``, which records it); report
    which run was left and which is current."""
    rolled_back_from, now_current = rollback(client, keys, policy, on_switch)
    return {"rolled_back_from": rolled_back_from, "current": now_current}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one admin command and print its result as JSON."""
    parser = CommandParser(__doc__, prog="python -m store.admin")
    parser.add_argument("command", choices=("status", "rollback", "lock", "clear-lock"))
    parser.add_argument("--force", action="store_true", help="clear-lock: also a holder this host cannot check")
    add_config_argument(parser)
    args = parser.parse_args(argv)
    from redis.exceptions import RedisError

    try:
        cfg = load_config(args.config)
        client = connect(writer_settings(cfg.store, client_name="recs-admin"))
        result = _run_command(args, client, KeyLayout(cfg.store.key_prefix), cfg)
    except (ConfigError, PublishRefused) as exc:
        return refuse(args.command, exc)
    except (RedisError, OSError) as exc:
        return refuse(args.command, f"Redis could not be reached or refused the command ({type(exc).__name__})")
    print(json.dumps(result, indent=2))
    return 0


def _run_command(args, client, keys: KeyLayout, cfg) -> dict:
    now = dt.datetime.now(dt.UTC)
    if args.command == "status":
        return status(client, keys)
    if args.command == "lock":
        return lock_info(client, keys, now)
    if args.command == "clear-lock":
        return clear_lock(client, keys, now, force=args.force)
    return roll_back(client, keys, PublishPolicy.from_config(cfg.publish), current_run_recorder(cfg, "rollback"))


if __name__ == "__main__":
    sys.exit(main())
