"""make bench: stage wall times at 1M interactions, publish rate, API throughput and latency.

    python -m bench                               # everything, 3 repeats, medians reported
    python -m bench --only api --repeats 5

Each figure comes with a reference measured in the same run on the same machine:
- stages: the recommend stage next to raw ``recommendForAllUsers`` (no seen-item exclusion,
  no popular lists), which is what exactness costs;
- publish: the Spark job's keys/s next to a driver-side loader on one connection, unpipelined
  and pipelined;
- API: personalized and fallback lookups next to ``/healthz`` (same server, no Redis).
Results: bench/results/bench-<UTC time>.json and bench/results/latest.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conf import load_config, with_overrides

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
WORK = ROOT / "var" / "bench"
RUN_DATE = "2026-01-01"


def median_of(values: list[float]) -> float:
    """Median, rounded for the table."""
    return round(statistics.median(values), 3)


def bench_config(interactions: int, **sections: dict):
    """The repository config (no caller overrides) pointed at the benchmark's data and run folders."""
    data = WORK / f"data-{interactions}"
    overrides = {
        "input": {"path": str(data / "interactions")},
        "items": {"path": str(data / "items")},
        "paths": {"runs_root": str(WORK / "runs")},
        "spark": {"checkpoint_dir": str(WORK / "checkpoints")},
    }
    for section, settings in sections.items():
        overrides[section] = {**overrides.get(section, {}), **settings}
    return with_overrides(load_config(environ={}), overrides)


def ensure_data(interactions: int) -> dict:
    """Generate the benchmark dataset once per size (it is deterministic)."""
    out = WORK / f"data-{interactions}"
    summary_path = out / "_generated.json"
    if not summary_path.exists():
        command = [
            sys.executable,
            "-m",
            "tools.generate_data",
            "--out",
            str(out),
            "--interactions",
            str(interactions),
            "--end-date",
            RUN_DATE,
        ]
        started = time.monotonic()
        subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        print(f"    generated {interactions} interactions in {time.monotonic() - started:.1f}s")
    return json.loads(summary_path.read_text())


def raw_recommend_seconds(spark, layout, n: int) -> float:
    """Reference: raw recommendForAllUsers(n) mapped to ids and written, with no exclusion."""
    from pyspark.ml.recommendation import ALSModel
    from pyspark.sql import functions as F

    from jobs.recommend import ranked_rows
    from store.contract import DEFAULT_VARIANT

    started = time.monotonic()
    raw = ALSModel.load(layout.variant_path("models", DEFAULT_VARIANT)).recommendForAllUsers(n)
    top = raw.select(
        "user_idx",
        F.expr("transform(recommendations, r -> named_struct('item_idx', r.item_idx, 'score', r.rating))").alias(
            "items"
        ),
    )
    users, items = spark.read.parquet(layout.users), spark.read.parquet(layout.items)
    ranked_rows(top, users, items, DEFAULT_VARIANT).write.mode("overwrite").parquet(str(WORK / "raw-recommendations"))
    return time.monotonic() - started


def bench_stages(interactions: int, repeats: int) -> dict:
    """Wall time of each stage (each repeat in a fresh Spark session), plus the raw reference."""
    from jobs.run_layout import RunLayout
    from jobs.runner import configure_logging, run_stage
    from jobs.session import spark_session
    from jobs.stages import PIPELINE, PUBLISH

    configure_logging()
    summary = ensure_data(interactions)
    cfg = bench_config(interactions)
    layout = RunLayout.from_config(cfg, RUN_DATE)
    measured = [stage.name for stage in PIPELINE.stages if stage.kind != PUBLISH]
    seconds: dict[str, list[float]] = {stage: [] for stage in (*measured, "recommend_raw_reference")}
    manifest = {}
    for repeat in range(repeats):
        print(f"    stages, repeat {repeat + 1}/{repeats}")
        with spark_session(cfg.spark, "recs-bench-stages") as spark:
            for stage in measured:
                started = time.monotonic()
                run_stage(spark, cfg, layout, stage)
                seconds[stage].append(time.monotonic() - started)
            seconds["recommend_raw_reference"].append(raw_recommend_seconds(spark, layout, cfg.recommend.top_n))
        manifest = json.loads(Path(layout.manifest).read_text())
    return {
        "interactions": summary["interactions"],
        "users": manifest["counts"]["prepared"]["users"],
        "items": manifest["counts"]["prepared"]["items"],
        "pairs": manifest["counts"]["prepared"]["pairs"],
        "spark_master": cfg.spark.master,
        "ndcg_at_10": {
            "als": manifest["metrics"]["als"]["ndcg_at_k"],
            "popularity": manifest["metrics"]["popularity"]["ndcg_at_k"],
        },
        "seconds": {
            stage: {"median": median_of(values), "runs": [round(v, 3) for v in values]}
            for stage, values in seconds.items()
        },
    }


class BenchRedis:
    """A private redis-server for the publish and API benchmarks."""

    def __init__(self):
        from tools.processes import RedisProcess

        self.workdir = Path(tempfile.mkdtemp(prefix="recs-bench-redis-"))
        self.server = RedisProcess(self.workdir)

    def __enter__(self):
        self.server.start()
        return self.server

    def __exit__(self, *exc):
        self.server.stop()


def synthetic_run(spark, runs_root: str, users: int, per_user: int):
    """A completed run folder with ``users`` users of ``per_user`` items each (publish input)."""
    from pyspark.sql import functions as F

    from jobs.run_layout import RunLayout
    from store.contract import DEFAULT_VARIANT

    layout = RunLayout(runs_root, RUN_DATE)
    ranks = spark.range(users).select(
        F.format_string("user_%08d", "id").alias("user_id"),
        F.explode(F.sequence(F.lit(1), F.lit(per_user))).alias("rank"),
    )
    recs = ranks.select(
        F.lit(DEFAULT_VARIANT).alias("variant"),
        "user_id",
        F.col("rank").cast("int").alias("rank"),
        F.format_string("item_%06d", (F.hash("user_id", "rank") % 50000 + 50000) % 50000).alias("item_id"),
        (F.lit(1.0) / F.col("rank")).alias("score"),
    )
    recs.write.mode("overwrite").partitionBy("variant").parquet(layout.recommendations)
    popular = spark.range(1, 101).select(
        F.lit("all").alias("scope"),
        F.lit(None).cast("string").alias("category"),
        F.col("id").cast("int").alias("rank"),
        F.format_string("item_%06d", "id").alias("item_id"),
        (F.lit(1000.0) - F.col("id")).alias("score"),
    )
    popular.write.mode("overwrite").parquet(layout.popular)
    return layout


def pipelined_writes(client, writes, batch: int) -> None:
    """SET every (key, value) on one connection, in pipelined batches."""
    pipe = client.pipeline(transaction=False)
    for index, (key, value) in enumerate(writes, 1):
        pipe.set(key, value)
        if index % batch == 0:
            pipe.execute()
    pipe.execute()


def reference_loads(redis_url: str, layout, sample: int) -> dict:
    """Driver-side loaders on one connection, encoding included: one SET per round trip (on a
    sample), and pipelined batches of 500 (all users)."""
    import pyarrow.dataset as ds
    import redis

    from store.contract import KeyLayout
    from store.writer import user_list_writes

    table = ds.dataset(layout.recommendations, format="parquet", partitioning="hive").to_table().to_pandas()
    table = table.sort_values(["variant", "user_id", "rank"])
    groups = table.groupby(["variant", "user_id"], observed=True)
    lists = [(*key, list(zip(group["item_id"], group["score"], strict=True))) for key, group in groups]
    client = redis.Redis.from_url(redis_url)
    started = time.monotonic()
    for key, value in user_list_writes(lists[:sample], KeyLayout("refbench"), "ref"):
        client.set(key, value)
    one_by_one = sample / (time.monotonic() - started)
    started = time.monotonic()
    pipelined_writes(client, user_list_writes(lists, KeyLayout("refbench"), "ref"), 500)
    pipelined = len(lists) / (time.monotonic() - started)
    client.flushdb()
    return {"one_set_per_round_trip": round(one_by_one, 1), "pipelined_single_connection": round(pipelined, 1)}


def bench_publish(redis_url: str, users: int, repeats: int) -> tuple[dict, object]:
    """Keys per second of the publish job over several publishes, and the references."""
    from jobs import publish, storage
    from jobs.runner import configure_logging
    from jobs.session import spark_session

    configure_logging()
    cfg = bench_config(
        0, paths={"runs_root": str(WORK / "publish-runs")}, store={"url": redis_url}, publish={"keep_runs": 2}
    )
    loads, totals = [], []
    with spark_session(cfg.spark, "recs-bench-publish") as spark:
        layout = synthetic_run(spark, cfg.paths.runs_root, users, cfg.recommend.top_n)
        for repeat in range(repeats):
            run_id = f"{RUN_DATE}_20260101T0000{repeat:02d}000Z"
            storage.write_json(
                spark, layout.manifest, {"run_id": run_id, "run_date": RUN_DATE, "code_version": "bench", "metrics": {}}
            )
            started = time.monotonic()
            report = publish.run(spark, cfg, layout)
            totals.append(time.monotonic() - started)
            loads.append(report["keys_per_second"])
            print(f"    publish, repeat {repeat + 1}/{repeats}: {report['keys_per_second']} keys/s")
    references = reference_loads(redis_url.replace("/0", "/1"), layout, sample=min(users, 20000))
    return {
        "users": users,
        "items_per_user": cfg.recommend.top_n,
        "batch_size": cfg.publish.batch_size,
        "keys_per_second": {"median": median_of(loads), "runs": loads},
        "publish_seconds_total": {"median": median_of(totals), "runs": [round(t, 3) for t in totals]},
        "reference_keys_per_second": references,
    }, layout


def bench_api(redis, users: int, repeats: int, concurrency: int, seconds: float) -> dict:
    """Requests/s, p50 and p99 under gunicorn for each lookup kind, against /healthz."""
    import random

    from bench.load import run_load
    from tools.processes import ApiServer

    rng = random.Random(3)
    known = [f"/v1/recommendations/user_{rng.randrange(users):08d}?n=10" for _ in range(5000)]
    # name: (paths, connections); one connection shows the service time without queueing.
    scenarios = {
        "healthz_reference": (["/healthz"], concurrency),
        "healthz_reference_1_connection": (["/healthz"], 1),
        "personalized": (known, concurrency),
        "personalized_1_connection": (known, 1),
        "unknown_user_popular": ([f"/v1/recommendations/new-user-{i}?n=10" for i in range(5000)], concurrency),
        "redis_down_fallback": (known, concurrency),
    }
    server = ApiServer(redis.url, WORK / "bench-api.log", api={"workers": 2, "threads": 8})
    server.start()
    results = {}
    try:
        for name, (paths, connections) in scenarios.items():
            if name == "redis_down_fallback":
                redis.stop()
            run_load(server.url, paths, max(connections, 4), 1.0)  # warm-up: every worker loads the run
            runs = [
                run_load(server.url, paths, connections, seconds, processes=min(2, connections)) for _ in range(repeats)
            ]
            results[name] = {
                "connections": connections,
                "rps": median_of([r.rps for r in runs]),
                "p50_ms": median_of([r.p50_ms for r in runs]),
                "p99_ms": median_of([r.p99_ms for r in runs]),
                "errors": sum(r.errors for r in runs),
                "runs": [r.__dict__ for r in runs],
            }
            print(
                f"    api {name}: {results[name]['rps']} req/s, p50 {results[name]['p50_ms']} ms, "
                f"p99 {results[name]['p99_ms']} ms"
            )
    finally:
        server.stop()
    return {
        "server": "gunicorn gthread, 2 workers x 8 threads",
        "concurrency": concurrency,
        "seconds_per_run": seconds,
        "scenarios": results,
    }


def bench_memory(redis_url: str, users: int, lengths: tuple[int, ...] = (20, 50, 100)) -> dict:
    """Redis memory per user list at several list lengths: used_memory before and after writing
    ``users`` lists shaped like the pipeline's (ids, 6-digit scores, seen items, categories)."""
    import random

    import redis

    from store.contract import KeyLayout
    from store.writer import user_list_writes

    client = redis.Redis.from_url(redis_url.replace("/0", "/2"))
    rng = random.Random(7)
    results = {}
    for length in lengths:
        client.flushdb()
        before = client.info("memory")["used_memory"]

        def user_row(user: int, length: int = length) -> tuple:
            items = [(f"item_{rng.randrange(50_000):06d}", rng.random()) for _ in range(length)]
            seen = [f"item_{rng.randrange(1000):06d}" for _ in range(25)]  # the demo run's mean
            return "default", f"user_{user:08d}", items, seen, ["Drama", "Comedy", "Action"]

        rows = (user_row(user) for user in range(users))  # fmt: skip
        pipelined_writes(client, user_list_writes(rows, KeyLayout("membench"), "run"), 1000)
        used = client.info("memory")["used_memory"] - before
        sample = [client.memory_usage(key) for key in client.scan_iter(count=1000)][:1000]
        results[str(length)] = {
            "bytes_per_user": round(used / users, 1),
            "memory_usage_per_key": round(statistics.mean(sample), 1),
            "mib_per_million_users": round(used / users * 1_000_000 / 2**20, 1),
        }
        print(f"    memory, {length} items: {results[str(length)]['bytes_per_user']} bytes per user list")
    client.flushdb()
    return {"users": users, "lists": results}


def machine() -> dict:
    """What the figures were measured on."""
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[:1]
    native_blas = any(Path(p).exists() for p in ("/usr/lib/x86_64-linux-gnu/libblas.so.3", "/usr/lib/libblas.so.3"))
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "java": java[0] if java else None,
        "platform": platform.platform(),
        "native_blas": native_blas,
    }


def markdown(results: dict) -> str:
    """The results as Markdown tables."""
    lines = [f"# Benchmark {results['started_at']}", "", f"Machine: {json.dumps(results['machine'])}", ""]
    if "stages" in results:
        st = results["stages"]
        lines += [
            f"## Stage wall time, {st['interactions']:,} interactions ({st['users']:,} users, "
            f"{st['items']:,} items), Spark {st['spark_master']}, median of {len(st['seconds']['prepare']['runs'])}",
            "",
            "| stage | median s | runs |",
            "|---|---:|---|",
        ]
        lines += [f"| {name} | {v['median']} | {v['runs']} |" for name, v in st["seconds"].items()]
        lines += [
            "",
            f"NDCG@10: ALS {st['ndcg_at_10']['als']:.4f}, popularity {st['ndcg_at_10']['popularity']:.4f}",
            "",
        ]
    if "publish" in results:
        pb = results["publish"]
        lines += [
            f"## Publish rate, {pb['users']:,} users x {pb['items_per_user']} items",
            "",
            "| loader | keys/s |",
            "|---|---:|",
            f"| publish job (Spark executors, Arrow batches, pipelined batches of {pb['batch_size']}), median | "
            f"{pb['keys_per_second']['median']:,.0f} |",
        ]
        lines += [
            f"| reference: driver, {name.replace('_', ' ')} | {value:,.0f} |"
            for name, value in pb["reference_keys_per_second"].items()
        ]
        lines += [
            "",
            f"Whole publish (load, verify, switch, prune), median: {pb['publish_seconds_total']['median']} s",
            "",
        ]
    if "memory" in results:
        memory = results["memory"]
        lines += [
            f"## Redis memory per user list ({memory['users']:,} lists written, used_memory before and after)",
            "",
            "| items per list | bytes per user list | MEMORY USAGE per key | MiB per million user lists |",
            "|---:|---:|---:|---:|",
        ]
        for length, v in memory["lists"].items():
            per_key, per_million = v["memory_usage_per_key"], v["mib_per_million_users"]
            lines.append(f"| {length} | {v['bytes_per_user']:,.0f} | {per_key:,.0f} | {per_million:,.0f} |")
        lines.append("")
    if "api" in results:
        api = results["api"]
        lines += [
            f"## API under {api['server']}, {api['concurrency']} connections unless named, medians of "
            f"{len(next(iter(api['scenarios'].values()))['runs'])} x {api['seconds_per_run']} s",
            "",
            "| lookup | req/s | p50 ms | p99 ms | errors |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {name} | {v['rps']:,.0f} | {v['p50_ms']} | {v['p99_ms']} | {v['errors']} |"
            for name, v in api["scenarios"].items()
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks and write their figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--publish-users", type=int, default=200_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--only", default="stages,publish,api,memory")
    parser.add_argument("--memory-users", type=int, default=50_000)
    args = parser.parse_args(argv)
    parts = set(args.only.split(","))
    WORK.mkdir(parents=True, exist_ok=True)
    results = {"started_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "machine": machine()}
    if "stages" in parts:
        print("==> stages")
        results["stages"] = bench_stages(args.interactions, args.repeats)
    if parts & {"publish", "api", "memory"}:
        with BenchRedis() as redis:
            if "memory" in parts:
                print("==> memory")
                results["memory"] = bench_memory(redis.url, args.memory_users)
            if parts & {"publish", "api"}:
                print("==> publish")
                results["publish"], _ = bench_publish(redis.url, args.publish_users, args.repeats)
            if "api" in parts:
                print("==> api")
                results["api"] = bench_api(redis, args.publish_users, args.repeats, args.concurrency, args.seconds)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = results["started_at"].replace(":", "").replace("-", "")
    (RESULTS / f"bench-{stamp}.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    (RESULTS / "latest.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
