"""make bench: stage wall times at 1M interactions, publish rate, API throughput and latency.

    python -m bench                               # everything, 3 repeats, medians reported
    python -m bench --only api --repeats 5

Each figure comes with a reference measured in the same run on the same machine:
- jvm: a spark-submit's driver start with the class archive next to the same without it
  (bench/jvm_start.py), the cost the nightly DAG pays once per task;
- stages: the recommend stage next to raw ``recommendForAllUsers`` (no seen-item exclusion,
  no popular lists), which is what exactness costs;
- publish: the Spark job's keys/s next to a driver-side loader on one connection, unpipelined
  and pipelined;
- API: personalized and fallback lookups next to ``/healthz`` (same server, no Redis).
- top-n: the blocked engine next to recommendForUserSubset on the same model and next to bare
  numpy matrix products, at 1M interactions and at MovieLens-20M's shape (bench/topn.py).
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


# The MovieLens-20M shape of the nightly20m part: its users and items, with 20M interactions.
MOVIELENS_20M = {"interactions": 20_000_000, "users": 138_493, "items": 26_744}


def data_folder(interactions: int, users: int | None = None, items: int | None = None) -> Path:
    """Where the generated dataset of one shape lives (the generator's own user and item counts
    when none are given)."""
    return WORK / f"data-{interactions}{shape_suffix(users, items)}"


def shape_suffix(users: int | None, items: int | None) -> str:
    """What tells a dataset shape with set user and item counts apart in folder names."""
    return f"-{users or 'auto'}x{items or 'auto'}" if users or items else ""


def bench_config(interactions: int, users: int | None = None, items: int | None = None, **sections: dict):
    """The repository config (no caller overrides) pointed at the benchmark's data and run folders."""
    data = data_folder(interactions, users, items)
    overrides = {
        "input": {"path": str(data / "interactions")},
        "items": {"path": str(data / "items")},
        "paths": {"runs_root": str(WORK / f"runs{shape_suffix(users, items)}")},
        "spark": {"checkpoint_dir": str(WORK / "checkpoints")},
    }
    for section, settings in sections.items():
        overrides[section] = {**overrides.get(section, {}), **settings}
    return with_overrides(load_config(environ={}), overrides)


def ensure_data(interactions: int, users: int | None = None, items: int | None = None) -> dict:
    """Generate the benchmark dataset once per shape (it is deterministic)."""
    out = data_folder(interactions, users, items)
    summary_path = out / "_generated.json"
    if not summary_path.exists():
        command = [sys.executable, "-m", "tools.generate_data", "--out", str(out),
                   "--interactions", str(interactions), "--end-date", RUN_DATE]  # fmt: skip
        command += [*(["--users", str(users)] if users else []), *(["--items", str(items)] if items else [])]
        started = time.monotonic()
        subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        print(f"    generated {interactions} interactions in {time.monotonic() - started:.1f}s")
    return json.loads(summary_path.read_text())


def raw_recommend_seconds(spark, layout, n: int) -> float:
    """Reference: raw recommendForAllUsers(n) mapped to ids and written, with no exclusion."""
    from pyspark.ml.recommendation import ALSModel
    from pyspark.sql import functions as F

    from jobs.recommend import item_id_lookup, named_lists
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
    item_ids = spark.sparkContext.broadcast(item_id_lookup(items))
    named = named_lists(top, users, item_ids, DEFAULT_VARIANT)
    named.write.mode("overwrite").parquet(str(WORK / "raw-recommendations"))
    item_ids.unpersist()
    return time.monotonic() - started


def trained_1m_model(interactions: int):
    """For the top-n part: a callable giving the benchmark run's model and its users' seen items,
    running the stages up to train first when no earlier benchmark run left the model."""

    def model_and_seen(spark):
        from pyspark.ml.recommendation import ALSModel

        from jobs.ranking import seen_items
        from jobs.run_layout import RunLayout
        from jobs.runner import configure_logging, run_stage
        from store.contract import DEFAULT_VARIANT

        ensure_data(interactions)
        cfg = bench_config(interactions)
        layout = RunLayout.from_config(cfg, RUN_DATE)
        model_path = Path(layout.variant_path("models", DEFAULT_VARIANT))
        if not (model_path / "metadata").exists():
            configure_logging()
            for stage in ("prepare", "tune", "train"):
                run_stage(spark, cfg, layout, stage)
        return ALSModel.load(str(model_path)), seen_items(spark.read.parquet(layout.interactions))

    return model_and_seen


def bench_stages(
    interactions: int, repeats: int, redis_url: str, users: int | None = None, items: int | None = None
) -> dict:
    """Wall time and peak resident memory of each stage, publish to ``redis_url`` included (each
    repeat in a fresh Spark session), plus the raw reference."""
    from bench.peak_memory import PeakMemory, jvm_pid
    from jobs.run_layout import RunLayout
    from jobs.runner import configure_logging, run_stage
    from jobs.session import spark_session
    from jobs.stages import PIPELINE

    configure_logging()
    summary = ensure_data(interactions, users, items)
    cfg = bench_config(interactions, users, items, store={"url": redis_url})
    layout = RunLayout.from_config(cfg, RUN_DATE)
    measured = [stage.name for stage in PIPELINE.stages]
    seconds: dict[str, list[float]] = {stage: [] for stage in (*measured, "recommend_raw_reference")}
    peaks: dict[str, dict[str, int]] = {}
    manifest = {}
    for repeat in range(repeats):
        print(f"    stages, repeat {repeat + 1}/{repeats}")
        with spark_session(cfg.spark, "recs-bench-stages") as spark, PeakMemory(jvm_pid(spark)) as memory:
            for stage in (*measured, "recommend_raw_reference"):
                started = time.monotonic()
                if stage == "recommend_raw_reference":
                    raw_recommend_seconds(spark, layout, cfg.recommend.top_n)
                else:
                    run_stage(spark, cfg, layout, stage)
                seconds[stage].append(time.monotonic() - started)
                peak = memory.take()
                peaks[stage] = {part: max(value, peaks.get(stage, {}).get(part, 0)) for part, value in peak.items()}
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
        "peak_rss_mib": {
            stage: {part: round(value / 2**20) for part, value in peak.items()} for stage, peak in peaks.items()
        },  # fmt: skip
        "driver_memory": cfg.spark.conf.get("spark.driver.memory"),
    }


class BenchRedis:
    """A private redis-server for the stage, publish and API benchmarks."""

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
    user_id = F.format_string("user_%08d", "id")

    def entry(rank):
        item = F.format_string("item_%06d", (F.hash(user_id, rank) % 50000 + 50000) % 50000)
        return F.struct(item.alias("item_id"), (F.lit(1.0) / rank).alias("score"))

    recs = spark.range(users).select(
        F.lit(DEFAULT_VARIANT).alias("variant"),
        user_id.alias("user_id"),
        F.transform(F.sequence(F.lit(1), F.lit(per_user)), entry).alias("items"),
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

    table = ds.dataset(layout.recommendations, format="parquet", partitioning="hive").to_table()
    columns = (table.column(name).to_pylist() for name in ("variant", "user_id", "items"))
    lists = [
        (str(variant), user_id, [(entry["item_id"], entry["score"]) for entry in items])
        for variant, user_id, items in zip(*columns, strict=True)
    ]
    client = redis.Redis.from_url(redis_url)
    started = time.monotonic()
    for key, value in user_list_writes(lists[:sample], KeyLayout("refbench"), "ref"):
        client.set(key, value)
    one_by_one = sample / (time.monotonic() - started)
    started = time.monotonic()
    pipelined_writes(client, user_list_writes(lists, KeyLayout("refbench"), "ref"), 500)
    pipelined = len(lists) / (time.monotonic() - started)
    client.flushdb()
    return {
        "one_set_per_round_trip": round(one_by_one, 1),
        "pipelined_single_connection": round(pipelined, 1),
        "redis_cli_pipe": redis_cli_pipe(client, user_list_writes(lists, KeyLayout("pipebench"), "ref"), len(lists)),
    }


def redis_cli_pipe(client, writes, count: int) -> float:
    """Keys/s of ``redis-cli --pipe`` loading exactly these (key, value) SETs from a file written
    beforehand (encoding not timed): Redis's own bulk-load path, the floor for a loader."""
    from store.bulk import packed_set

    path = WORK / "pipe.resp"
    with open(path, "wb") as out:
        for write in writes:
            out.write(packed_set(write))
    address = client.connection_pool.connection_kwargs
    command = ["redis-cli", "-h", address["host"], "-p", str(address["port"]), "-n", str(address.get("db", 0))]
    started = time.monotonic()
    with open(path, "rb") as source:
        subprocess.run([*command, "--pipe"], stdin=source, check=True, capture_output=True)
    rate = count / (time.monotonic() - started)
    client.flushdb()
    path.unlink()
    return round(rate, 1)


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


def stages_markdown(st: dict) -> list[str]:
    """The stage table of one dataset shape: wall time and, where measured, peak memory."""
    from bench.peak_memory import PARTS as PEAK_PARTS

    peaks = st.get("peak_rss_mib", {})
    lines = [
        f"## Stage wall time, {st['interactions']:,} interactions ({st['users']:,} users, "
        f"{st['items']:,} items), Spark {st['spark_master']}, median of {len(st['seconds']['prepare']['runs'])}",
        "",
        "| stage | median s | runs | peak RSS MiB: JVM (driver and local executors) | executors' Python workers | "
        "driver's Python |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for name, v in st["seconds"].items():
        peak = peaks.get(name, {})
        memory = " | ".join(f"{peak[part]:,}" if part in peak else "" for part in PEAK_PARTS)
        lines.append(f"| {name} | {v['median']} | {v['runs']} | {memory} |")
    total = sum(v["median"] for name, v in st["seconds"].items() if name != "recommend_raw_reference")
    scope = "publish included" if "publish" in st["seconds"] else "without publish"
    lines += ["", f"Whole run, {scope} (sum of the stage medians): {total:.1f} s ({total / 60:.1f} min)."]
    if peaks:
        lines.append(f"Peaks are sampled every 0.25 s (a floor on the true peaks); spark.driver.memory "
                     f"{st['driver_memory']}.")  # fmt: skip
    lines += ["", f"NDCG@10: ALS {st['ndcg_at_10']['als']:.4f}, popularity {st['ndcg_at_10']['popularity']:.4f}", ""]
    return lines


def markdown(results: dict) -> str:
    """The results as Markdown tables."""
    lines = [f"# Benchmark {results['started_at']}", "", f"Machine: {json.dumps(results['machine'])}", ""]
    for part, started_at in results.get("carried", {}).items():
        lines += [f"The {part} tables are from the run of {started_at}, which measured them last.", ""]
    if "jvm" in results:
        from bench.jvm_start import markdown as jvm_markdown

        lines += jvm_markdown(results["jvm"])
    for part in ("stages", "nightly20m"):
        if part in results:
            lines += stages_markdown(results[part])
    if "topn" in results:
        from bench.topn import markdown as topn_markdown

        lines += topn_markdown(results["topn"])
    if "publish" in results:
        pb = results["publish"]
        lines += [
            f"## Publish rate, {pb['users']:,} users x {pb['items_per_user']} items",
            "",
            "| loader | keys/s |",
            "|---|---:|",
            f"| publish job (Spark executors, Arrow batches, raw protocol batches of {pb['batch_size']}), median | "
            f"{pb['keys_per_second']['median']:,.0f} |",
        ]
        references = dict(pb["reference_keys_per_second"])
        pipe = references.pop("redis_cli_pipe", None)
        lines += [
            f"| reference: driver, {name.replace('_', ' ')} | {value:,.0f} |" for name, value in references.items()
        ]
        if pipe:
            lines.append(f"| floor: `redis-cli --pipe` of the same keys and values, from a file | {pipe:,.0f} |")
        lines += ["", f"Whole publish (load, verify, switch, prune), median: {pb['publish_seconds_total']['median']} s"]
        if pipe:
            share = pb["keys_per_second"]["median"] / pipe
            lines.append(f"The publish job loads at {share:.0%} of the `redis-cli --pipe` rate (target 50%).")
            first = pb["keys_per_second"]["runs"][0]
            lines.append(f"The first publish of the session (its JVM and Python workers cold, as in a nightly "
                         f"spark-submit) loaded {first:,.0f} keys/s, {first / pipe:.0%} of that rate.")  # fmt: skip
        lines.append("")
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
        from bench.api import markdown as api_markdown

        lines += api_markdown(results["api"])
    return "\n".join(lines) + "\n"


def quick(args) -> int:
    """The API rows at 5,000 users, one 2-second run each, recorded and compared with the last
    quick run on this machine; it only records, it never fails on a figure."""
    from bench.api import bench_api

    WORK.mkdir(parents=True, exist_ok=True)
    earlier = sorted(WORK.glob("quick-*.json"))
    results = {"started_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "machine": machine()}
    with BenchRedis() as redis:
        results["api"] = bench_api(redis, 5_000, 1, 2.0, WORK)
    stamp = results["started_at"].replace(":", "").replace("-", "")
    (WORK / f"quick-{stamp}.json").write_text(json.dumps(results, indent=2) + "\n")
    if earlier:
        before = json.loads(earlier[-1].read_text())["api"]["rows"]
        for name, row in results["api"]["rows"].items():
            if name in before and before[name]["rps"]:
                print(f"    {name}: {row['rps']:,.0f} req/s, was {before[name]['rps']:,.0f} ({earlier[-1].name})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks and write their figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--publish-users", type=int, default=200_000)
    parser.add_argument("--api-users", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--only", default="jvm,stages,topn,publish,api,memory",
                        help="parts; nightly20m (all stages at MovieLens-20M's shape) only if named")  # fmt: skip
    parser.add_argument("--topn-shapes", default="1m,20m", help="top-n part: 1m (trained), 20m (MovieLens-20M shape)")
    parser.add_argument("--memory-users", type=int, default=50_000)
    parser.add_argument("--quick", action="store_true",
                        help="the regression bench of make test: API rows only, small, under a minute; "
                             "records to var/bench/quick-<time>.json next to the previous ones")  # fmt: skip
    args = parser.parse_args(argv)
    if args.quick:
        return quick(args)
    parts = set(args.only.split(","))
    WORK.mkdir(parents=True, exist_ok=True)
    results = {"started_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "machine": machine()}
    if "jvm" in parts:
        from bench.jvm_start import bench_jvm_start

        print("==> jvm (driver start, with and without the class archive)")
        results["jvm"] = bench_jvm_start(args.repeats, WORK)
    if "stages" in parts:
        print("==> stages")
        with BenchRedis() as redis:
            results["stages"] = bench_stages(args.interactions, args.repeats, redis.url)
    if "nightly20m" in parts:
        print("==> nightly20m (MovieLens-20M shape, one repeat: about 25 minutes on 2 cores)")
        with BenchRedis() as redis:
            results["nightly20m"] = bench_stages(repeats=1, redis_url=redis.url, **MOVIELENS_20M)
    if "topn" in parts:
        from bench.topn import bench_topn

        print("==> top-n")
        shapes = args.topn_shapes.split(",")
        results["topn"] = bench_topn(shapes, args.repeats, WORK, trained_1m_model(args.interactions))
    if parts & {"publish", "api", "memory"}:
        with BenchRedis() as redis:
            if "memory" in parts:
                print("==> memory")
                results["memory"] = bench_memory(redis.url, args.memory_users)
            if "publish" in parts:
                print("==> publish")
                results["publish"], _ = bench_publish(redis.url, args.publish_users, args.repeats)
            if "api" in parts:
                print("==> api")
                import redis as redis_client

                from bench.api import bench_api

                with redis_client.Redis.from_url(redis.url) as client:
                    client.flushall()  # the API run starts from an empty store
                results["api"] = bench_api(redis, args.api_users, args.repeats, args.seconds, WORK)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = results["started_at"].replace(":", "").replace("-", "")
    (RESULTS / f"bench-{stamp}.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(with_earlier_parts(results))
    (RESULTS / "latest.md").write_text(table)
    update_readme(table)
    print(table)
    return 0


PARTS = ("jvm", "stages", "nightly20m", "topn", "publish", "memory", "api")


def with_earlier_parts(results: dict) -> dict:
    """The results, with each part this run skipped (--only) taken from the newest earlier run
    that has it, and marked with that run's time in ``carried``."""
    merged, carried = dict(results), {}
    for path in sorted(RESULTS.glob("bench-*.json"), reverse=True):
        earlier = json.loads(path.read_text())
        for part in PARTS:
            if part not in merged and part in earlier:
                merged[part], carried[part] = earlier[part], earlier["started_at"]
    return {**merged, "carried": carried}


README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"


def update_readme(table: str) -> None:
    """Put the latest tables into the README between its bench markers."""
    readme = ROOT / "README.md"
    text = readme.read_text()
    if README_START not in text or README_END not in text:
        return
    before, rest = text.split(README_START, 1)
    after = rest.split(README_END, 1)[1]
    body = table.split("\n", 1)[1].replace("\n## ", "\n#### ")  # below the README's own headings
    readme.write_text(f"{before}{README_START}\n{body.strip()}\n{README_END}{after}")


if __name__ == "__main__":
    sys.exit(main())
