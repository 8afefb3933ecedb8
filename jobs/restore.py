"""restore: after Redis lost its data (a restart without persistence, a flush), make the run that
was current before the loss current again, reloading it from its run folder.

    python -m jobs.restore                                   # the run named in the current-run record
    python -m jobs.restore --run-id 2026-11-28_20261128T020000000Z   # another run with a run folder

Every publish, rollback and restore records the run it made current in
``<paths.runs_root>/current-run.json`` (docs/run-folder.md), so the run restored is the one
served before the loss, a rollback included, not the newest run folder. The reload is the
publish job's (jobs.publish.run, as a rollback: the run may be older than one published since
the record was written, and the quality gate judged it when it was first published). Safe to
repeat: a run that is already current is left alone, and one still complete in Redis is made
current without reloading. Prints the publish report as JSON. Refuses (exit status 2, one
line) without a record or when the run folder now holds another run (its date was re-run).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from conf import load_config
from conf.cli import EXIT_REFUSED, CommandParser, add_config_argument
from jobs import publish, storage
from jobs.run_layout import RunLayout
from jobs.runner import REFUSALS, JobError, configure_logging, error_text, recording_failure
from jobs.session import spark_session
from store.contract import check_run_id
from store.registry import current_record_location, read_current_record, run_date_of

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from conf.schema import Config

log = logging.getLogger("recs.restore")


def run_to_restore(cfg: Config, run_id: str | None) -> str:
    """The run to restore: ``run_id`` if given, else the one the current-run record names."""
    if run_id is None:
        try:
            record = read_current_record(cfg.paths.runs_root)
        except ValueError as exc:
            raise JobError(f"{exc}; pass --run-id to name the run to restore") from exc
        if record is None:
            raise JobError(
                f"no current-run record at {current_record_location(cfg.paths.runs_root)}: nothing was published "
                "from this runs root yet; publish a run, or pass --run-id to name the run to restore"
            )
        prefix = (record.get("store") or {}).get("key_prefix", cfg.store.key_prefix)
        if prefix != cfg.store.key_prefix:
            raise JobError(
                f"the current-run record names run {record['run_id']} of the store with key prefix {prefix!r}, "
                f"not {cfg.store.key_prefix!r}; pass --run-id to restore a run into this store"
            )
        run_id = record["run_id"]
    try:
        check_run_id(run_id)
    except ValueError as exc:
        raise JobError(str(exc)) from exc
    if run_date_of(run_id) is None:
        raise JobError(f"run id {run_id!r} does not start with its run date, so its run folder cannot be found")
    return run_id


def run(spark: SparkSession, cfg: Config, layout: RunLayout, run_id: str) -> dict:
    """Make ``run_id`` current from its run folder ``layout``, through the publish job."""
    manifest = storage.read_json(spark, layout.manifest)
    if manifest is None:
        raise JobError(f"run {run_id} cannot be restored: its run folder {layout.run_dir} has no manifest.json")
    if manifest.get("run_id") != run_id:
        raise JobError(
            f"run {run_id} cannot be restored: its run folder {layout.run_dir} now holds run "
            f"{manifest.get('run_id')} (the date was run again); restore that one with --run-id"
        )
    result = publish.run(spark, cfg, layout, rollback=True, override_gate=True, switched_by="restore")
    if result["status"] == "already_current":
        log.info("run %s is current in Redis already; nothing restored", run_id)
    else:
        log.info("restored run %s from %s", run_id, layout.run_dir)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Restore the recorded (or the named) run; exit 2 on a refusal, 1 when Redis cannot be reached."""
    configure_logging()
    parser = CommandParser(__doc__, prog="python -m jobs.restore")
    add_config_argument(parser)
    parser.add_argument("--run-id", help="restore this run instead of the one the current-run record names")
    args = parser.parse_args(argv)
    try:
        # Config and record are checked before Spark starts: a refusal costs no JVM.
        cfg = load_config(args.config)
        run_id = run_to_restore(cfg, args.run_id)
        layout = RunLayout.from_config(cfg, run_date_of(run_id))
        with spark_session(cfg.spark, f"recs-restore-{layout.run_date}") as spark:
            with recording_failure(spark, layout, "restore"):
                result = run(spark, cfg, layout, run_id)
    except REFUSALS as exc:
        log.error("restore refused: %s", error_text(exc))
        return EXIT_REFUSED
    except Exception as exc:
        if not _is_redis_failure(exc):
            raise
        log.error(
            "restore failed: Redis could not be reached or refused us (%s: %s)", type(exc).__name__, error_text(exc)
        )
        return 1
    print(json.dumps(result, indent=2))
    return 0


def _is_redis_failure(exc: BaseException) -> bool:
    from redis.exceptions import ConnectionError, RedisClusterException, TimeoutError

    return isinstance(exc, ConnectionError | TimeoutError | RedisClusterException)


if __name__ == "__main__":
    sys.exit(main())
