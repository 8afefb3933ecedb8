"""Fuzzing the API with schemathesis: every operation of the live /openapi.json, every check
schemathesis has, at least 1,000 generated cases, no 5xx and no response outside the document.

    .venv/bin/pytest -m faults tests/test_fuzz_api.py

The API runs under its production server (granian) on a private redis-server, with a run
seeded so that requests reach real code: known users with context (seen items, categories),
an experiment of two variants, popular and per-category lists, cold items and similar lists.
schemathesis runs as its own CLI (``schemathesis run --checks all``: examples, coverage,
fuzzing and stateful phases, positive and negative data), with a fixed seed and a time cap.

This module is also the CLI's hooks module (SCHEMATHESIS_HOOKS): which names exist is state,
not schema, so ``map_case`` steers the values of schema-valid cases towards the seeded run.
Variants are always steered, because a well-formed variant the run does not have is refused
with a 400 by design (tests/test_experiments.py covers the lookup's answer); users, items,
categories and the experiment name are steered two times in three, outside the coverage phase,
whose boundary values are left as they are.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import schemathesis
from store_seeding import seed_run

from store.contract import NAME_PATTERN as NAME
from tools.processes import ROOT, ApiServer, project_env

pytestmark = pytest.mark.faults

RUN_ID = "2026-11-29_20261129T020000000Z"
EXPERIMENT = {"name": "ranking", "salt": "fuzz", "control": "als", "shares": {"als": 0.5, "popularity": 0.5}}
VARIANTS = tuple(EXPERIMENT["shares"])
CATEGORIES = ("Drama", "Comedy", "Sci-Fi")
ITEMS = [f"item-{k:03d}" for k in range(60)]
COLD = {category: [f"cold-{category.lower()}-{k}" for k in range(4)] for category in CATEGORIES}
# "0" and "a" are values hypothesis likes to start from: seeded, they are known users too.
KNOWN_USERS = ("0", "a", "alice", "bob", *(f"user_{u:04d}" for u in range(40)))

MAX_EXAMPLES = 100  # per operation in the fuzzing phase; with the other phases about 1,500 cases
# The lookup with the most parameters gets more: its combinations are where bugs would hide.
CONFIG = """
[[operations]]
include-name = "GET /v1/recommendations/{user_id}"
generation.max-examples = 300
"""
MIN_CASES = 1000
TIME_CAP_SECONDS = 420
ENGINE_FAILURE_LIMIT = 100


def category_of(item: str) -> str:
    """The seeded category of a warm item."""
    return CATEGORIES[int(item[-3:]) % len(CATEGORIES)]


def seed_fuzzing_run(client) -> None:
    """Publish the run the fuzzer meets: every list the endpoints read, with an experiment."""
    popular = [(item, float(100 - rank)) for rank, item in enumerate(ITEMS[:40])]
    by_category = {c: [(i, s) for i, s in popular if category_of(i) == c] for c in CATEGORIES}

    def user_list(user: str, variant: str) -> list[tuple[str, float]]:
        start = zlib.crc32(f"{variant}:{user}".encode()) % len(ITEMS)
        return [(ITEMS[(start + k) % len(ITEMS)], round(1.0 - k / 20, 4)) for k in range(15)]

    variant_lists = {variant: {user: user_list(user, variant) for user in KNOWN_USERS} for variant in VARIANTS}
    context = {user: ([item for item, _ in popular[:3]], [CATEGORIES[k % 3] for k in range(len(user) % 3 + 1)])
               for user in KNOWN_USERS}  # fmt: skip
    item_categories = {item: [category_of(item)] for item in ITEMS}
    item_categories.update({item: [category] for category, items in COLD.items() for item in items})
    similar = {item: ("als", [(other, 0.9 - k / 100) for k, other in enumerate(ITEMS[:12]) if other != item][:10])
               for item in ITEMS}  # fmt: skip
    similar.update(
        {item: ("content", [(ITEMS[k], 0.5) for k in range(5)]) for items in COLD.values() for item in items}
    )
    seed_run(client, RUN_ID, {}, popular, by_category, experiment=EXPERIMENT, variant_lists=variant_lists,
             context=context, catalogue=(item_categories, COLD), similar=similar)  # fmt: skip


@schemathesis.hook
def map_case(context, case):
    """Steer a schema-valid case towards names the seeded run has (see the module docstring)."""
    # A variant of a valid shape is mapped onto the run's own in every case: stateful steps
    # carry no generation mode to tell positive from negative, and a variant of a valid shape
    # that the run lacks is a refusal the document cannot state.
    for holder in [case.query, *(case.body if isinstance(case.body, list) else [case.body])]:
        if isinstance(holder, dict) and isinstance(holder.get("variant"), str) and NAME.fullmatch(holder["variant"]):
            holder["variant"] = pick(holder["variant"], VARIANTS, always=True)
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return case
    steer = meta.phase.name.value in ("fuzzing", "stateful")
    if isinstance(case.query, dict):
        if isinstance(case.query.get("variant"), str):
            case.query["variant"] = pick(case.query["variant"], VARIANTS, always=True)
        if isinstance(case.query.get("category"), str) and steer:
            case.query["category"] = pick(case.query["category"], CATEGORIES)
    if isinstance(case.path_parameters, dict) and steer:
        for name, names in (("user_id", KNOWN_USERS), ("item_id", ITEMS), ("name", (EXPERIMENT["name"],))):
            if isinstance(case.path_parameters.get(name), str):
                case.path_parameters[name] = pick(case.path_parameters[name], names)
    events = case.body if isinstance(case.body, list) else [case.body]
    for event in (event for event in events if isinstance(event, dict)):
        if isinstance(event.get("variant"), str):
            event["variant"] = pick(event["variant"], VARIANTS, always=True)
        for name, names in (("user_id", KNOWN_USERS), ("item_id", ITEMS)):
            if isinstance(event.get(name), str) and steer:
                event[name] = pick(event[name], names)
    return case


def pick(value: str, names: tuple | list, always: bool = False) -> str:
    """One of ``names``, chosen by a hash of ``value`` (so a run is reproducible); unless
    ``always``, one value in three is kept as generated."""
    digest = zlib.crc32(value.encode("utf-8", "replace"))
    if not always and digest % 3 == 0:
        return value
    return names[(digest // 3) % len(names)]


@pytest.fixture
def fuzzed_api(redis_server, redis_client, tmp_path):
    """The API under granian on the private Redis, with the fuzzing run published."""
    seed_fuzzing_run(redis_client)
    server = ApiServer(redis_server.url, tmp_path / "api.log", api={"workers": 2, "exploration_slots": 2})
    server.start()
    yield server
    server.stop()


def run_schemathesis(base_url: str, workdir: Path) -> subprocess.CompletedProcess:
    """``schemathesis run`` against the live document with every check, phase and mode."""
    (workdir / "schemathesis.toml").write_text(CONFIG)
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(workdir / "schemathesis.toml"),
        "run", f"{base_url}/openapi.json",
        "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful", "--mode", "all",
        "--max-examples", str(MAX_EXAMPLES), "--seed", "20261129", "--generation-database", "none",
        "--continue-on-failure", "--max-failures", str(ENGINE_FAILURE_LIMIT), "--workers", "1",
        "--request-timeout", "10", "--no-color", "--report", "json,har",
        "--report-json-path", str(workdir / "report.json"), "--report-har-path", str(workdir / "requests.har"),
    ]  # fmt: skip
    env = project_env(SCHEMATHESIS_HOOKS="test_fuzz_api", PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'tests'}")
    return subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=TIME_CAP_SECONDS)


def answers_by_operation(har: dict) -> collections.Counter:
    """How many answers each (method, first path segments, status) got, from the HAR record."""
    counts = collections.Counter()
    for entry in har["log"]["entries"]:
        segments = urlsplit(entry["request"]["url"]).path.strip("/").split("/")
        where = "/" + "/".join(segments[: 2 if segments[0] == "v1" else 1])
        counts[(entry["request"]["method"], where, entry["response"]["status"])] += 1
    return counts


def recommendation_sources(har: dict) -> collections.Counter:
    """The sources of the 200 recommendation answers: how many reached personalized lists."""
    sources = collections.Counter()
    for entry in har["log"]["entries"]:
        request, response = entry["request"], entry["response"]
        path = unquote(urlsplit(request["url"]).path)
        if request["method"] == "GET" and path.startswith("/v1/recommendations/") and response["status"] == 200:
            sources[json.loads(response["content"]["text"])["source"]] += 1
    return sources


def print_figures(report: dict, answers: collections.Counter, sources: collections.Counter) -> None:
    """The run's figures, for the test log (pytest -s, or the captured output of a failure)."""
    server_errors = sum(n for (_, _, status), n in answers.items() if status >= 500)
    print(f"\nschemathesis: {report['test_cases']['generated']} cases generated, {sum(answers.values())} "
          f"requests answered, {server_errors} 5xx, {report['running_time']:.0f} s")  # fmt: skip
    print(f"operations: {report['operations']}")
    print(f"phases: { {name: phase['status'] for name, phase in report['phases'].items()} }")
    failures = {f"{group['code']} {group['title']}": group["count"] for group in report["failures"]}
    print(f"failures by check: {failures or 'none'}; errors: {report['errors'] or 'none'}")
    print(f"recommendation answers by source: {dict(sources)}")
    for (method, where, status), count in sorted(answers.items()):
        print(f"  {method:7} {where:22} {status}: {count}")


def test_schemathesis_finds_no_5xx_and_no_answer_outside_the_document(fuzzed_api, tmp_path):
    workdir = tmp_path / "schemathesis"
    workdir.mkdir()
    result = run_schemathesis(fuzzed_api.url, workdir)
    assert (workdir / "report.json").exists(), f"schemathesis wrote no report:\n{result.stdout}\n{result.stderr}"
    report = json.loads((workdir / "report.json").read_text())
    har = json.loads((workdir / "requests.har").read_text())
    answers, sources = answers_by_operation(har), recommendation_sources(har)
    print_figures(report, answers, sources)
    assert report["failures"] == [] and report["errors"] == [], result.stdout[-20000:]
    assert result.returncode == 0, f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    assert report["stop_reason"] == "completed" and report["operations"]["errored"] == 0
    assert report["operations"]["tested"] == report["operations"]["selected"] >= 9
    assert [key for key in answers if key[2] >= 500] == []
    assert report["test_cases"]["generated"] >= MIN_CASES
    assert sum(answers.values()) >= MIN_CASES, "every generated case is a request the API answered"
    assert sources["personalized"] > 0, "the fuzzer reached the personalized lists"
