"""The layered config loader: YAML file, then RECS__ environment overrides."""

import pytest

from conf import ConfigError, apply_env_overrides, load_config


def test_repository_config_loads_with_laptop_defaults(base_config):
    assert base_config["spark"]["master"] == "local[*]"
    assert base_config["train"]["implicit_prefs"] is True
    assert base_config["spark"]["checkpoint_dir"]


def test_env_override_parses_yaml_values():
    cfg = {"train": {"rank": 32, "implicit_prefs": True}, "input": {"names": None}}
    environ = {"RECS__TRAIN__RANK": "64", "RECS__TRAIN__IMPLICIT_PREFS": "false", "RECS__INPUT__NAMES": "[u, i, r, t]"}
    result = apply_env_overrides(cfg, environ)
    assert result == {"train": {"rank": 64, "implicit_prefs": False}, "input": {"names": ["u", "i", "r", "t"]}}
    assert cfg["train"]["rank"] == 32, "the input config must not be modified"


def test_env_override_of_unknown_setting_fails_loudly():
    with pytest.raises(ConfigError, match="train.rnak"):
        apply_env_overrides({"train": {"rank": 32}}, {"RECS__TRAIN__RNAK": "64"})


def test_redis_url_alias_and_explicit_variable_precedence():
    cfg = {"publish": {"redis_url": "redis://localhost"}}
    assert apply_env_overrides(cfg, {"REDIS_URL": "rediss://u:p@h:1"})["publish"]["redis_url"] == "rediss://u:p@h:1"
    both = {"REDIS_URL": "redis://alias", "RECS__PUBLISH__REDIS_URL": "redis://explicit"}
    assert apply_env_overrides(cfg, both)["publish"]["redis_url"] == "redis://explicit"


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml", environ={})
