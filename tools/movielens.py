"""Fetch MovieLens 100K from the package registry and write it in the pipeline's input format.

    python -m tools.movielens --out var/data/ml-100k

The machines this project is built on reach package registries only, and the RecBole wheel on
PyPI carries a copy of MovieLens 100K (GroupLens, https://grouplens.org/datasets/movielens/100k/:
100,000 ratings 1-5 by 943 users of 1,682 films, with timestamps and genres). The wheel is
downloaded with pip, checked against a pinned SHA-256, and only the two data files are read
from it; nothing of RecBole is installed. MovieLens may be used for research but not
redistributed, so the data stays under var/ and is never committed or bundled.

Output: ``<out>/interactions/ratings.csv`` (user_id, item_id, rating, timestamp) and
``<out>/items/items.csv`` (item_id, title, categories joined by '|'). ``conf/movielens.yaml``
points the pipeline at them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import subprocess
import sys
import zipfile
from pathlib import Path

from conf.cli import CommandParser

log = logging.getLogger("recs.movielens")

WHEEL = "recbole-1.2.1-py3-none-any.whl"
WHEEL_REQUIREMENT = "recbole==1.2.1"
WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
RATINGS_MEMBER = "recbole/dataset_example/ml-100k/ml-100k.inter"
ITEMS_MEMBER = "recbole/dataset_example/ml-100k/ml-100k.item"


def download_wheel(cache: Path) -> Path:
    """The pinned wheel in ``cache``, downloaded with pip when it is not there; checked by SHA-256."""
    wheel = cache / WHEEL
    if not wheel.exists():
        cache.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
        subprocess.run([*command, "--dest", str(cache), WHEEL_REQUIREMENT], check=True)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        wheel.unlink()
        raise ValueError(f"{WHEEL} has SHA-256 {digest}, expected {WHEEL_SHA256}; removed it, try again")
    return wheel


def read_member(wheel: Path, member: str) -> list[list[str]]:
    """One tab-separated data file of the wheel, without its header line."""
    with zipfile.ZipFile(wheel) as archive, archive.open(member) as raw:
        rows = list(csv.reader(io.TextIOWrapper(raw, encoding="utf-8"), delimiter="\t"))
    return rows[1:]


def genres(field: str) -> list[str]:
    """Split RecBole's space-separated genre field (no MovieLens genre contains a space)."""
    return [word for word in field.split(" ") if word]


def write_dataset(wheel: Path, out: Path) -> dict:
    """Write the ratings and item files under ``out``; return their row counts."""
    ratings, items = read_member(wheel, RATINGS_MEMBER), read_member(wheel, ITEMS_MEMBER)
    item_rows = [[item, title, "|".join(genres(field))] for item, title, _, field in items]
    for folder, name, header, rows in (
        ("interactions", "ratings.csv", ["user_id", "item_id", "rating", "timestamp"], ratings),
        ("items", "items.csv", ["item_id", "title", "categories"], item_rows),
    ):
        (out / folder).mkdir(parents=True, exist_ok=True)
        with open(out / folder / name, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)
    return {"ratings": len(ratings), "items": len(items), "users": len({row[0] for row in ratings})}


def main(argv: list[str] | None = None) -> int:
    """Fetch MovieLens 100K into --out."""
    parser = CommandParser(prog="python -m tools.movielens", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="var/data/ml-100k", help="folder to write (default: %(default)s)")
    parser.add_argument("--cache", default="var/cache/wheels", help="where the wheel is kept (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    counts = write_dataset(download_wheel(Path(args.cache)), Path(args.out))
    log.info("MovieLens 100K: %(ratings)d ratings, %(users)d users, %(items)d items", counts)
    log.info("written to %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
