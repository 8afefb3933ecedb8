"""The one config loader: layers, typed sections, and refusals that name the key and its source."""

import pytest

from conf import ConfigError, load_config, with_overrides
from conf.schema import Config


def test_repository_config_loads_with_laptop_defaults(base_config):
    assert isinstance(base_config, Config)
    assert base_config.spark.master == "local[*]"
    assert base_config.train.implicit_prefs is True and base_config.train.rank == 32
    assert base_config.store.url == "redis://127.0.0.1:6379/0" and base_config.store.key_prefix == "recs"
    assert base_config.api.max_n == 20 and base_config.recommend.top_n == 100 and base_config.publish.keep_runs == 3


def test_environment_overrides_are_parsed_as_yaml():
    environ = {"RECS__TRAIN__RANK": "64", "RECS__TRAIN__IMPLICIT_PREFS": "false", "RECS__INPUT__NAMES": "[u, i, r, t]"}
    cfg = load_config(environ=environ)
    assert (cfg.train.rank, cfg.train.implicit_prefs, cfg.input.names) == (64, False, ["u", "i", "r", "t"])


def test_spark_settings_keep_their_case_and_may_be_new():
    environ = {
        "RECS__SPARK__CONF__SPARK.DRIVER.MEMORY": "1g",  # matches the existing key whatever the case
        "RECS__SPARK__CONF__spark.sql.adaptive.coalescePartitions.enabled": "false",
    }
    conf = load_config(environ=environ).spark.conf_strings()
    assert conf["spark.driver.memory"] == "1g"
    assert conf["spark.sql.adaptive.coalescePartitions.enabled"] == "false"


BAD_SETTINGS = [
    ({"RECS__TRAIN__RNAK": "4"}, "unknown setting 'train.rnak' [from environment variable RECS__TRAIN__RNAK]"),
    ({"RECS__TRAINN__RANK": "4"}, "unknown setting 'trainn' [from environment variable RECS__TRAINN__RANK]"),
    ({"RECS__TRAIN__RANK": "0"}, "train.rank: Input should be greater than or equal to 1 (value 0)"),
    ({"RECS__TRAIN__RANK": "3.5"}, "train.rank: Input should be a valid integer"),
    ({"RECS__TRAIN__RANK__X": "1"}, "train.rank is not a section"),
    ({"RECS__PREPARE__DUPLICATE_POLICY": "avg"}, "prepare.duplicate_policy: Input should be 'sum' or 'last'"),
    ({"RECS__INPUT__FORMAT": "json"}, "input.format: Input should be 'csv', 'tsv' or 'parquet'"),
    ({"RECS__EVALUATE__HOLDOUT_FRACTION": "1.5"}, "evaluate.holdout_fraction: Input should be less than 1"),
    ({"RECS__PUBLISH__KEEP_RUNS": "1"}, "publish.keep_runs: must be at least 2, got 1"),
    ({"RECS__STORE__KEY_PREFIX": "a:b"}, "store.key_prefix: invalid key prefix 'a:b'"),
    ({"RECS__STORE__URL": "http://u:secret@h/0"}, "store.url: must be a redis://, rediss:// or unix:// URL, got 'http://u:***@h/0'"),
    ({"RECS__API__MAX_M": "5"}, "unknown setting 'api.max_m'"),
    ({"RECS__API__DOWN_MODE": "ignore"}, "api.down_mode: Input should be 'fallback' or 'unavailable'"),
    ({"RECS__API__DEFAULT_N": "500"}, "api: default_n (500) must not exceed max_n (20)"),
    ({"RECS__SCHEDULE__CRON": "nightly"}, "schedule.cron: is not a cron expression: 'nightly'"),
    ({"RECS__RECOMMEND__TOP_N": "10"}, "config error: recommend.top_n (10) must be at least api.max_n (20)"),
    ({"RECS__EXPERIMENTS": "{x: {salt: s, control: a, variants: {a: {share: 0.99995}, b: {share: 0.00005}}}}"},
     "experiments.x.variants.b.share: Input should be greater than or equal to 0.0001"),
    ({"RECS__EXPERIMENTS": "{x: {salt: s, control: a, variants: {a: {share: 1.0}}}}"},
     "experiments.x.variants: an experiment needs at least two variants"),
    ({"RECS__SCHEDULE__START_DATE": "someday"}, "schedule.start_date: Input should be a valid date"),
]  # fmt: skip


@pytest.mark.parametrize(("environ", "message"), BAD_SETTINGS, ids=[next(iter(e)) for e, _ in BAD_SETTINGS])
def test_a_bad_setting_is_one_line_naming_the_key(environ, message):
    with pytest.raises(ConfigError) as refused:
        load_config(environ=environ)
    text = str(refused.value)
    assert text.startswith("config error: ") and "\n" not in text
    assert message in text
    assert "secret" not in text


def test_a_config_file_names_only_what_it_changes(tmp_path):
    (tmp_path / "site.yaml").write_text("train:\n  rank: 64\nstore:\n  key_prefix: shop\n")
    cfg = load_config(tmp_path / "site.yaml", environ={})
    assert (cfg.train.rank, cfg.store.key_prefix) == (64, "shop")
    assert cfg.train.max_iter == load_config(environ={}).train.max_iter, "everything else keeps its default"


def test_the_config_file_switch_and_its_precedence(tmp_path):
    (tmp_path / "a.yaml").write_text("train:\n  rank: 11\n")
    (tmp_path / "b.yaml").write_text("train:\n  rank: 22\n")
    assert load_config(environ={"RECS_CONFIG": str(tmp_path / "a.yaml")}).train.rank == 11
    assert load_config(tmp_path / "b.yaml", environ={"RECS_CONFIG": str(tmp_path / "a.yaml")}).train.rank == 22
    both = {"RECS_CONFIG": str(tmp_path / "a.yaml"), "RECS__TRAIN__RANK": "33"}
    assert load_config(environ=both).train.rank == 33, "the environment is laid over the file"


def test_a_bad_config_file_names_the_file(tmp_path):
    (tmp_path / "typo.yaml").write_text("publish:\n  keep_run: 5\n")
    with pytest.raises(ConfigError, match=r"unknown setting 'publish.keep_run' \[from config file .*typo.yaml\]"):
        load_config(tmp_path / "typo.yaml", environ={})
    (tmp_path / "broken.yaml").write_text("train: [rank\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(tmp_path / "broken.yaml", environ={})
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml", environ={})


def test_redis_url_stands_for_the_store_url_unless_that_is_set_too():
    assert load_config(environ={"REDIS_URL": "rediss://u:p@h:1/0"}).store.url == "rediss://u:p@h:1/0"
    both = {"REDIS_URL": "redis://alias/0", "RECS__STORE__URL": "redis://explicit/0"}
    assert load_config(environ=both).store.url == "redis://explicit/0"


def test_overrides_are_validated_and_loaded_configs_never_change(base_config):
    changed = with_overrides(base_config, {"train": {"rank": 8}})
    assert changed.train.rank == 8 and base_config.train.rank == 32
    with pytest.raises(ConfigError, match=r"unknown setting 'train.rnak' \[from overrides\]"):
        with_overrides(base_config, {"train": {"rnak": 8}})
    with pytest.raises(ValueError, match="frozen"):
        base_config.train.rank = 1
