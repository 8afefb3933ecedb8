"""The fallback file: round trip, and every reason to ignore one."""

import json

from store.fallback_file import FallbackFile
from store.snapshot import RunSnapshot

META = {"contract_version": 3, "run_id": "r1", "run_date": "2026-11-29", "published_at": "2026-11-29T02:00:00+00:00",
        "status": "complete", "counts": {}, "metrics": {}, "categories": [], "variants": ["default"],
        "experiment": None}  # fmt: skip
SNAPSHOT = RunSnapshot("r1", META, (("a", 2.0), ("b", 1.0)))


def fallback(path, store="redis://h:6379/0 prefix=recs", max_age=100.0, now=1000.0):
    return FallbackFile(path, store, max_age, clock=lambda: now)


def test_round_trip_marks_the_snapshot_as_from_the_file(tmp_path):
    fallback(tmp_path / "f.json").write(SNAPSHOT)
    restored = fallback(tmp_path / "f.json").read()
    assert restored == RunSnapshot("r1", META, (("a", 2.0), ("b", 1.0)), from_fallback_file=True)
    assert list(tmp_path.iterdir()) == [tmp_path / "f.json"], "no temporary files left behind"


def test_a_file_of_another_store_or_too_old_is_ignored(tmp_path):
    fallback(tmp_path / "f.json").write(SNAPSHOT)
    assert fallback(tmp_path / "f.json", store="redis://h:6379/0 prefix=other").read() is None
    assert fallback(tmp_path / "f.json", now=1101.0).read() is None
    assert fallback(tmp_path / "f.json", now=1099.0).read() is not None


def test_missing_or_malformed_files_read_as_none(tmp_path):
    path = tmp_path / "f.json"
    assert fallback(path).read() is None
    wrong_meta = {"format": 1, "store": "redis://h:6379/0 prefix=recs", "written_at": 1000, "run_id": "r1",
                  "meta": [], "popular": []}  # fmt: skip
    for content in ("not json", "[1, 2]", json.dumps(wrong_meta)):
        path.write_text(content)
        assert fallback(path).read() is None


def test_remove_deletes_the_file(tmp_path):
    fallback(tmp_path / "f.json").write(SNAPSHOT)
    fallback(tmp_path / "f.json").remove()
    fallback(tmp_path / "f.json").remove()  # removing twice is fine
    assert not (tmp_path / "f.json").exists()
