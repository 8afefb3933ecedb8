"""Print a finished run in a few lines: where its Parquet is, a few users' lists, and ALS
against popularity. Reads local run folders with pyarrow, no Spark.

    python -m tools.run_summary --run-date 2026-11-29 [--users 3]

Exit status: 0 for a complete run, 1 for a run without its manifest, 2 for a bad date or config.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from conf import ConfigError, load_config
from conf.cli import CommandParser, add_config_argument, add_run_date_argument, refuse
from jobs.metrics import METRIC_NAMES
from jobs.run_layout import RunLayout
from jobs.stages import PIPELINE

BEYOND_ACCURACY = ("coverage", "novelty", "arp", "head_share", "diversity")
MAX_CATEGORIES_SHOWN = 8


def metric_columns(metrics: dict) -> dict:
    """The columns of the run's tables: each variant, then popularity."""
    variants = metrics.get("variants") or {"ALS": metrics["als"]}
    if list(variants) == ["default"]:
        variants = {"ALS": variants["default"]}
    return {**variants, "popularity": metrics["popularity"]}


def metrics_table(metrics: dict) -> list[str]:
    """Lines comparing each variant with the popularity baseline, metric by metric; with one
    ALS variant, its lift over popularity on the ranking metrics too."""
    k = metrics.get("k", "k")
    columns = metric_columns(metrics)
    show_lift = len(columns) == 2
    header = "".join(f"{name:>12}" for name in columns) + (f"{'lift':>8}" if show_lift else "")
    lines = [f"    {'metric @' + str(k):<16}{header}"]
    for name in (*METRIC_NAMES, *BEYOND_ACCURACY):
        if any(column.get(name) is None for column in columns.values()):
            continue
        values = "".join(f"{column[name]:>12.4f}" for column in columns.values())
        if show_lift and name in METRIC_NAMES:  # a ratio of novelty or diversity says little
            first, baseline = next(iter(columns.values()))[name], metrics["popularity"][name]
            values += f"{first / baseline:.2f}x".rjust(8) if baseline else f"{'-':>8}"
        lines.append(f"    {name.removesuffix('_at_k'):<16}{values}")
    return lines


def slices_table(metrics: dict) -> list[str]:
    """NDCG@k of each column per slice: user activity, item popularity, the largest categories."""
    columns = metric_columns(metrics)
    if not all("slices" in column for column in columns.values()):
        return []
    first = next(iter(columns.values()))["slices"]
    rows = [("users", name) for name in first["users"]] + [("items", name) for name in first["items"]]
    categories = sorted((first.get("categories") or {}).items(), key=lambda item: -item[1]["users"])
    rows += [("categories", name) for name, _ in categories[:MAX_CATEGORIES_SHOWN]]
    header = "".join(f"{name:>12}" for name in columns)
    lines = [f"==> NDCG@{metrics.get('k')} by slice (users scored):", f"    {'slice':<34}{header}"]
    for group, name in rows:
        cells = [column["slices"][group].get(name) for column in columns.values()]
        values = "".join(f"{cell['ndcg_at_k']:>12.4f}" if cell and cell["users"] else f"{'-':>12}" for cell in cells)
        users = first[group][name]["users"]
        lines.append(f"    {f'{group}: {name} ({users})':<34}{values}")
    if len(categories) > MAX_CATEGORIES_SHOWN:
        lines.append(f"    ... {len(categories) - MAX_CATEGORIES_SHOWN} more categories in the manifest")
    return lines


def tuning_lines(tuning: dict | None) -> list[str]:
    """The trials table, and the setting chosen with its reason."""
    if not tuning:
        return []
    lines = []
    if tuning.get("trials"):
        start = ", ".join(f"{key}={value}" for key, value in tuning["start"].items())
        fitted = f", fitted on {tuning['users_trained']}" if tuning.get("trained_on") == "user sample" else ""
        lines += [f"==> tuning: {len(tuning['trials'])} trials scored on {tuning['users_scored']} users{fitted}, "
                  f"from {start}",
                  f"    {'trial':>5}  {'NDCG@' + str(tuning['k']):>9}  {'seconds':>7}  setting"]  # fmt: skip
        for trial in tuning["trials"]:
            change = ", ".join(f"{key}={value}" for key, value in trial["setting"].items()) or "(the start)"
            score = f"{trial['ndcg_at_k']:.4f}" if trial["ndcg_at_k"] is not None else "failed"
            lines.append(f"    {trial['trial']:>5}  {score:>9}  {trial['seconds']:>7.1f}  {change}")
    chosen = tuning["chosen"]
    setting = ", ".join(f"{key}={value}" for key, value in chosen["setting"].items())
    lines += [f"==> setting used ({chosen['source']}): {setting}", f"    {chosen['reason']}"]
    return lines


def gate_lines(gate: dict | None) -> list[str]:
    """The quality gate's decision and reason."""
    if not gate:
        return []
    return [f"==> quality gate: {'passed' if gate['passed'] else 'HELD (not published)'}: {gate['reason']}"]


def sample_lists(recommendations: Path, users: int, per_user: int = 5) -> list[str]:
    """Lines showing the first users' top items (by user id order)."""
    from tools.run_reading import recommendation_rows

    table = recommendation_rows(recommendations)
    lines = []
    for user_id in sorted(table["user_id"].unique())[:users]:
        for variant, rows in table[table["user_id"] == user_id].groupby("variant", observed=True):
            shown = ", ".join(
                f"{row.item_id} ({row.score:.3f})" for row in rows.sort_values("rank").head(per_user).itertuples()
            )
            lines.append(f"    {user_id} [{variant}]: {shown}, ...")
    return lines


def summary_lines(layout: RunLayout, users: int) -> list[str]:
    """The whole summary of one completed run."""
    manifest_path = Path(layout.manifest)
    if not manifest_path.exists():
        return [f"run {layout.run_date} is not complete: {manifest_path} does not exist"]
    manifest = json.loads(manifest_path.read_text())
    counts = manifest["counts"]
    lines = [
        f"==> run {manifest['run_id']} (code {manifest['code_version']})",
        f"    recommendations: {layout.recommendations}  ({counts['output']['rows']} rows, "
        f"{counts['output']['users']} users, variants {', '.join(manifest['variants'])})",
        f"    popular lists:   {layout.popular}",
        f"    input rows {counts['input']['rows_read']}, quarantined {counts['quarantine']['rows']} "
        f"{counts['quarantine']['by_reason']} -> {counts['quarantine']['path']}",
        "    stage seconds: " + ", ".join(f"{stage} {secs:.1f}" for stage, secs in _in_pipeline_order(manifest)),
        "==> a few users' top items (score):",
        *sample_lists(Path(layout.recommendations), users),
    ]
    if manifest.get("experiment"):
        experiment = manifest["experiment"]
        shares = ", ".join(f"{name} {share:.0%}" for name, share in experiment["shares"].items())
        lines.append(f"==> experiment {experiment['name']}: control {experiment['control']}; {shares}")
    lines += tuning_lines(manifest.get("tuning"))
    if manifest["metrics"].get("variants"):
        split = manifest["metrics"]["split"]
        sampled = f" (a sample of at most {split['user_sample']})" if split.get("user_sample") else ""
        lines.append(f"==> evaluation on {split['users_evaluated']} users{sampled}, holdout = {split['method']}:")
        lines += metrics_table(manifest["metrics"])
        lines += slices_table(manifest["metrics"])
    if "cold_start" in manifest["metrics"]:
        lines += cold_start_lines(manifest["metrics"]["cold_start"])
    lines += gate_lines(manifest.get("gate"))
    return lines


def cold_start_lines(evaluation: dict | None) -> list[str]:
    """Lines with the cold-start figures: exploration and similar items, per method."""
    if not evaluation or "skipped" in evaluation:
        return [f"==> cold start: not evaluated ({(evaluation or {}).get('skipped', 'no figures')})"]
    k = evaluation["k"]
    lines = [f"==> cold start: {evaluation['new_items']} items new after the cut-off, k = {k}"]
    exploration, similar = evaluation["exploration"], evaluation["similar_items"]
    lines.append(f"    {'method':<12}{'hit rate':>10}{'recall':>10}{'similar precision':>20}   "
                 f"({exploration.get('users', 0)} users, {similar.get('items', 0)} items)")  # fmt: skip
    for method in ("content", "popularity", "random"):
        if method in exploration and method in similar:
            hits, recall = exploration[method]["hit_rate_at_k"], exploration[method]["recall_at_k"]
            lines.append(f"    {method:<12}{hits:>10.4f}{recall:>10.4f}{similar[method]['precision_at_k']:>20.4f}")
    return lines


def _in_pipeline_order(manifest: dict) -> list[tuple[str, float]]:
    timings = manifest["timings_seconds"]
    return [(stage, timings[stage]) for stage in PIPELINE.names if stage in timings]


def main(argv: Sequence[str] | None = None) -> int:
    """Print the summary of the run for --run-date."""
    parser = CommandParser(__doc__, prog="python -m tools.run_summary")
    add_config_argument(parser)
    add_run_date_argument(parser)
    parser.add_argument("--users", type=int, default=3, help="how many users' lists to show")
    args = parser.parse_args(argv)
    try:
        layout = RunLayout.from_config(load_config(args.config), args.run_date)
    except ConfigError as exc:
        return refuse("run summary", exc)
    lines = summary_lines(layout, args.users)
    print("\n".join(lines))
    return 0 if Path(layout.manifest).exists() else 1


if __name__ == "__main__":
    sys.exit(main())
