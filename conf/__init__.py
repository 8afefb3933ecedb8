"""Layered configuration: a YAML file from conf/, then environment overrides.

Usage:

    from conf import load_config
    cfg = load_config("conf/pipeline.yaml")

Any setting can be overridden from the environment with ``RECS__`` followed by its
path in upper case, sections joined by a double underscore:

    RECS__TRAIN__RANK=64  RECS__SPARK__MASTER='spark://head:7077'  make demo

Values are parsed as YAML, so ``64`` is an int, ``true`` a bool and ``[a, b]`` a list.
An override must name a setting the file already has (optional settings are present as
``null``), so a typo fails loudly instead of being ignored. ``REDIS_URL`` is honoured as a
shortcut for ``RECS__PUBLISH__REDIS_URL``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ENV_PREFIX = "RECS__"
CONF_DIR = Path(__file__).resolve().parent
DEFAULT_PIPELINE_CONFIG = CONF_DIR / "pipeline.yaml"
# Well-known variables that stand for a setting path; an explicit RECS__ variable wins.
ENV_ALIASES = {"REDIS_URL": ("publish", "redis_url")}


class ConfigError(ValueError):
    """A configuration file or override is invalid."""


def load_config(path: str | os.PathLike | None = None, environ: Mapping[str, str] | None = None) -> dict:
    """Load a YAML config file and apply environment overrides to it."""
    path = Path(path) if path else DEFAULT_PIPELINE_CONFIG
    try:
        with open(path, encoding="utf-8") as handle:
            base = yaml.safe_load(handle) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(base, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return apply_env_overrides(base, os.environ if environ is None else environ)


def apply_env_overrides(cfg: dict, environ: Mapping[str, str], prefix: str = ENV_PREFIX) -> dict:
    """Return a copy of cfg with RECS__SECTION__KEY variables (and aliases) applied."""
    result = copy.deepcopy(cfg)
    overrides = [(alias_path, environ[name]) for name, alias_path in ENV_ALIASES.items() if environ.get(name)]
    for name, raw in sorted(environ.items()):
        if name.startswith(prefix):
            overrides.append((tuple(part.lower() for part in name[len(prefix) :].split("__")), raw))
    for setting_path, raw in overrides:
        _set_path(result, setting_path, _parse_value(raw))
    return result


def _parse_value(raw: str) -> Any:
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _set_path(cfg: dict, setting_path: tuple[str, ...], value: Any) -> None:
    node = cfg
    for depth, key in enumerate(setting_path):
        if not isinstance(node, dict) or key not in node:
            dotted = ".".join(setting_path[: depth + 1])
            known = ", ".join(sorted(node)) if isinstance(node, dict) else "(not a section)"
            raise ConfigError(f"unknown setting {dotted!r} in environment override; known here: {known}")
        if depth == len(setting_path) - 1:
            node[key] = value
        else:
            node = node[key]
