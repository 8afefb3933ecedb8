"""The project's one configuration loader, used by every job, the DAG, the admin commands and
the API alike.

    from conf import load_config
    cfg = load_config()                      # conf/recs.yaml, then RECS_CONFIG's file, then RECS__*
    cfg.train.rank, cfg.store.url

Layers, each over the one before:
1. ``conf/recs.yaml``: every setting with a default that runs on a laptop;
2. the file given as ``path`` (``--config``), else the file named by ``RECS_CONFIG``: it names
   only the settings it changes;
3. environment variables ``RECS__<SECTION>__<KEY>`` (``RECS__TRAIN__RANK=64``; keys of
   ``spark.conf`` keep their case, ``RECS__SPARK__CONF__spark.driver.memory=2g``), values parsed
   as YAML; ``REDIS_URL`` stands for ``RECS__STORE__URL`` unless that is set too;
4. ``overrides``, a nested mapping (tests, ``create_app(config)``).

The result is validated against conf.schema as a whole. Anything wrong (an unknown key, a
value of the wrong type or out of range) raises ConfigError with one line that names the key
and the layer it came from.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from conf.schema import Config

CONF_DIR = Path(__file__).resolve().parent
DEFAULTS_FILE = CONF_DIR / "recs.yaml"
CONFIG_FILE_ENV = "RECS_CONFIG"
ENV_PREFIX = "RECS__"
# Well-known variables that stand for a setting; an explicit RECS__ variable wins.
ENV_ALIASES = {"REDIS_URL": ("store", "url")}
# Sections whose keys are free-form (Spark's own settings), not fields of the schema.
FREE_FORM_SECTIONS = {("spark", "conf")}

__all__ = ["CONFIG_FILE_ENV", "Config", "ConfigError", "config_file", "load_config", "with_overrides"]


class ConfigError(ValueError):
    """The configuration is invalid; the message is one line naming the key and its source."""


def config_file(path: str | os.PathLike | None = None, environ: Mapping[str, str] | None = None) -> Path | None:
    """The config file laid over the defaults: ``path`` if given, else $RECS_CONFIG, else none."""
    environ = os.environ if environ is None else environ
    chosen = path or environ.get(CONFIG_FILE_ENV)
    return Path(chosen) if chosen else None


def load_config(
    path: str | os.PathLike | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Load and validate the configuration from its layers (see the module docstring)."""
    environ = os.environ if environ is None else environ
    # Read as a package resource, so the defaults load from the bundle zip on Spark too.
    raw, sources = _parse_yaml(resources.files("conf").joinpath("recs.yaml").read_text("utf-8"), "conf/recs.yaml"), {}
    chosen = config_file(path, environ)
    if chosen is not None and chosen.resolve() != DEFAULTS_FILE:
        _merge(raw, _read_yaml(chosen), (), sources, f"config file {chosen}")
    for name, setting, value in _environment_overrides(environ):
        _set(raw, setting, value, sources, f"environment variable {name}")
    if overrides:
        _merge(raw, overrides, (), sources, "overrides")
    return _validated(raw, sources)


def with_overrides(cfg: Config, overrides: Mapping[str, Any]) -> Config:
    """A copy of a loaded config with some settings changed, validated again."""
    raw, sources = cfg.model_dump(), {}
    _merge(raw, overrides, (), sources, "overrides")
    return _validated(raw, sources)


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    return _parse_yaml(text, path)


def _parse_yaml(text: str, path: str | Path) -> dict:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {' '.join(str(exc).split())}") from exc
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections at the top level")
    return document


def _merge(base: dict, layer: Mapping, prefix: tuple, sources: dict, source: str) -> None:
    if not isinstance(layer, Mapping):
        raise ConfigError(f"{source}: {'.'.join(prefix) or 'the top level'} must be a mapping")
    for key, value in layer.items():
        setting = (*prefix, str(key))
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value, setting, sources, source)
        else:
            base[key] = copy.deepcopy(value)
            sources[setting] = source


def _environment_overrides(environ: Mapping[str, str]) -> Iterator[tuple[str, tuple[str, ...], Any]]:
    for name, setting in ENV_ALIASES.items():
        explicit = ENV_PREFIX + "__".join(part.upper() for part in setting)
        if environ.get(name) and explicit not in environ:
            yield name, setting, environ[name]
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX):
            parts = tuple(name[len(ENV_PREFIX) :].split("__"))
            yield name, parts, _parse_value(environ[name])


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _set(raw: dict, parts: tuple[str, ...], value: Any, sources: dict, source: str) -> None:
    node, setting = raw, ()
    for depth, part in enumerate(parts):
        if not isinstance(node, dict):
            raise ConfigError(f"config error: {'.'.join(setting)} is not a section [from {source}]")
        key = _key_for(node, part, free_form=setting in FREE_FORM_SECTIONS)
        setting = (*setting, key)
        if depth == len(parts) - 1:
            node[key] = value
            sources[setting] = source
        else:
            node = node.setdefault(key, {})


def _key_for(node: dict, part: str, free_form: bool) -> str:
    """Schema keys are lower case; a free-form key matches an existing one in any case, or is new as written."""
    if not free_form:
        return part.lower()
    return next((key for key in node if key.lower() == part.lower()), part)


def _validated(raw: dict, sources: dict) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, raw, sources)) from None


def _describe(exc: ValidationError, raw: dict, sources: dict) -> str:
    """One line for the first error, naming the key and where its value came from."""
    errors = exc.errors(include_url=False)
    error = errors[0]
    setting = _setting_of(error["loc"], raw)
    key = ".".join(setting)
    kind = error["type"]
    if kind == "extra_forbidden":
        text = f"unknown setting {key!r}"
    elif kind == "missing":
        text = f"missing setting {key!r}"
    else:
        message = error["msg"].removeprefix("Value error, ")
        text = f"{key}: {message}" if key else message
        if kind != "value_error" and "url" not in key:
            text += f" (value {repr(error.get('input'))[:80]})"
    origin = _origin(setting, sources)
    text += f" [from {origin}]" if origin else f" [in {DEFAULTS_FILE.name}]"
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return "config error: " + text


def _origin(setting: tuple[str, ...], sources: dict) -> str | None:
    """The layer that set this setting, or the section holding it, or a setting inside it."""
    for depth in range(len(setting), 0, -1):
        if setting[:depth] in sources:
            return sources[setting[:depth]]
    inside = [source for key, source in sources.items() if key[: len(setting)] == setting]
    return inside[0] if inside else None


def _setting_of(loc: tuple, raw: dict) -> tuple[str, ...]:
    """The part of a validation error's location that names a setting (not a type tag)."""
    setting, node = [], raw
    for part in loc:
        if not isinstance(node, dict):
            break
        setting.append(str(part))
        if part not in node:
            break
        node = node[part]
    return tuple(setting)
