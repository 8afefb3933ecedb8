"""The typed sections of the configuration, with every rule a value must keep.

Each section is a frozen pydantic model that refuses unknown keys, so a typo or a bad value is
found when the configuration is loaded, not half-way through a run. conf/recs.yaml holds the
defaults and explains each setting; this module holds the types and limits.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from store.contract import check_key_prefix

INPUT_FORMATS = ("csv", "tsv", "parquet")
TIMESTAMP_FORMATS = ("epoch", "epoch_ms", "iso", "auto")
DUPLICATE_POLICIES = ("sum", "last")
WEIGHT_TRANSFORMS = ("none", "log1p")
DOWN_MODES = ("fallback", "unavailable")
REDIS_SCHEMES = ("redis", "rediss", "unix")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

SparkValue = bool | int | float | str
Positive = Field(gt=0)


class Section(BaseModel):
    """A configuration section: unknown keys are errors and loaded values never change."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SparkSection(Section):
    master: str = Field(min_length=1)
    checkpoint_dir: str = Field(min_length=1)
    conf: dict[str, SparkValue]

    def conf_strings(self) -> dict[str, str]:
        """The Spark settings as SparkConf expects them: text, booleans in lower case."""
        return {key: _spark_text(value) for key, value in self.conf.items()}


def _spark_text(value: SparkValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class PathsSection(Section):
    runs_root: str = Field(min_length=1)


class InputColumns(Section):
    user: str = Field(min_length=1)
    item: str = Field(min_length=1)
    weight: str | None
    timestamp: str | None


class InputSection(Section):
    path: str = Field(min_length=1)
    format: Literal[INPUT_FORMATS]
    delimiter: str = Field(min_length=1)
    header: bool
    names: list[str] | None
    columns: InputColumns
    timestamp_format: Literal[TIMESTAMP_FORMATS]


class ItemColumns(Section):
    item: str = Field(min_length=1)
    title: str | None
    categories: str | None


class ItemsSection(Section):
    path: str | None
    format: Literal[INPUT_FORMATS]
    delimiter: str = Field(min_length=1)
    header: bool
    names: list[str] | None
    columns: ItemColumns
    categories_delimiter: str = Field(min_length=1)


class PrepareSection(Section):
    max_bad_fraction: float = Field(ge=0, le=1)
    duplicate_policy: Literal[DUPLICATE_POLICIES]


class TrainSection(Section):
    implicit_prefs: bool
    rank: int = Field(ge=1)
    reg_param: float = Field(ge=0)
    alpha: float = Field(ge=0)
    max_iter: int = Field(ge=1)
    seed: int
    checkpoint_interval: int = Field(ge=1)
    weight_transform: Literal[WEIGHT_TRANSFORMS]
    num_user_blocks: int = Field(ge=1)
    num_item_blocks: int = Field(ge=1)


class EvaluateSection(Section):
    enabled: bool
    holdout_fraction: float = Field(gt=0, lt=1)
    min_user_interactions: int = Field(ge=1)
    k: int = Field(ge=1)
    seed: int


class RecommendSection(Section):
    top_n: int = Field(ge=1)
    popular_n: int = Field(ge=1)


class StoreSection(Section):
    url: str
    cluster: bool
    key_prefix: str
    max_connections: int = Field(ge=1)
    reader_timeout_seconds: float = Positive
    writer_timeout_seconds: float = Positive
    reader_retries: int = Field(ge=0)
    writer_retries: int = Field(ge=0)

    @field_validator("url")
    @classmethod
    def _redis_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in REDIS_SCHEMES or not (parts.hostname or parts.path):
            raise ValueError(f"must be a redis://, rediss:// or unix:// URL, got {_without_password(url)!r}")
        return url

    @field_validator("key_prefix")
    @classmethod
    def _key_prefix(cls, prefix: str) -> str:
        return check_key_prefix(prefix)


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    return url.replace(f":{parts.password}@", ":***@") if parts.password else url


class PublishSection(Section):
    keep_runs: int
    batch_size: int = Field(ge=1)
    lock_ttl_seconds: float = Positive

    @field_validator("keep_runs")
    @classmethod
    def _keep_runs(cls, keep: int) -> int:
        if keep < 2:
            raise ValueError(f"must be at least 2, got {keep}: readers may still hold the previous run")
        return keep


class ApiSection(Section):
    bind: str = Field(min_length=1)
    workers: int | None = Field(ge=1)
    threads: int = Field(ge=1)
    timeout_seconds: int = Field(ge=1)
    access_log: str | None
    log_level: Literal[LOG_LEVELS]
    down_mode: Literal[DOWN_MODES]
    retry_after_seconds: float = Field(ge=0)
    fallback_file: str | None
    fallback_max_age_seconds: float = Positive
    pointer_refresh_seconds: float = Positive
    default_n: int = Field(ge=1)
    max_n: int = Field(ge=1)

    @model_validator(mode="after")
    def _default_n_within_max(self) -> ApiSection:
        if self.default_n > self.max_n:
            raise ValueError(f"default_n ({self.default_n}) must not exceed max_n ({self.max_n})")
        return self


class ScheduleSection(Section):
    cron: str = Field(min_length=1)
    start_date: dt.date
    retries: int = Field(ge=0)
    retry_delay_minutes: float = Positive
    max_retry_delay_minutes: float = Positive
    execution_timeout_minutes: float = Positive
    spark_conn_id: str = Field(min_length=1)

    @field_validator("cron")
    @classmethod
    def _cron(cls, cron: str) -> str:
        from croniter import croniter  # an Airflow dependency, which parses the same expressions

        if not croniter.is_valid(cron):
            raise ValueError(f"is not a cron expression: {cron!r}")
        return cron


class Config(Section):
    """The whole configuration; each command reads the sections it needs."""

    spark: SparkSection
    paths: PathsSection
    input: InputSection
    items: ItemsSection
    prepare: PrepareSection
    train: TrainSection
    evaluate: EvaluateSection
    recommend: RecommendSection
    store: StoreSection
    publish: PublishSection
    api: ApiSection
    schedule: ScheduleSection
