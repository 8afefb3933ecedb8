"""The typed sections of the configuration, with every rule a value must keep.

Each section is a frozen pydantic model that refuses unknown keys, so a typo or a bad value is
found when the configuration is loaded, not half-way through a run. conf/recs.yaml holds the
defaults and explains each setting; this module holds the types and limits.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator
from pydantic.fields import FieldInfo

from conf.redaction import redact_url
from store.contract import DEFAULT_VARIANT, EVENT_TYPES, NAME_PATTERN, check_key_prefix

INPUT_FORMATS = ("csv", "tsv", "parquet")
TIMESTAMP_FORMATS = ("epoch", "epoch_ms", "iso", "auto")
DUPLICATE_POLICIES = ("sum", "last")
WEIGHT_TRANSFORMS = ("none", "log1p", "bm25", "tfidf")
TUNABLE_SETTINGS = ("alpha", "reg_param", "weight_transform", "rank", "max_iter")
DOWN_MODES = ("fallback", "unavailable")
VARIANT_MODELS = ("als", "popularity")
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
    # A packed virtualenv (make executor-env) that executors unpack and run Python from; None:
    # their own python3. Optional here so that tools can build a section for a local session.
    python_env: str | None = Field(default=None, min_length=1)
    # A JVM class-data archive of Spark's classes (make jvm-archive) that local drivers map at
    # start when the file exists; None: never.
    class_archive: str | None = Field(default=None, min_length=1)

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
    tags: str | None


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
    bm25_k1: float = Field(gt=0)
    bm25_b: float = Field(ge=0, le=1)
    num_user_blocks: int = Field(ge=1)
    num_item_blocks: int = Field(ge=1)


def _all_optional(model: type[BaseModel], name: str) -> type[BaseModel]:
    """A section with every field of ``model`` optional (None), each keeping its type and limits."""
    fields = {
        field_name: (field.annotation | None, FieldInfo.merge_field_infos(field, default=None))
        for field_name, field in model.model_fields.items()
    }
    return create_model(name, __base__=Section, **fields)


# What one experiment variant changes in the train section.
TrainOverrides = _all_optional(TrainSection, "TrainOverrides")


class VariantSection(Section):
    # At least one bucket in 10,000.
    share: float = Field(ge=0.0001, le=1)
    # als: ALS with the train section, changed by ``train``; popularity: the most popular unseen items.
    model: Literal[VARIANT_MODELS] = "als"
    train: TrainOverrides = Field(default_factory=TrainOverrides)


class ExperimentSection(Section):
    enabled: bool = True
    salt: str = Field(min_length=1, max_length=64)
    control: str
    variants: dict[str, VariantSection]

    @field_validator("variants")
    @classmethod
    def _variants(cls, variants: dict[str, VariantSection]) -> dict[str, VariantSection]:
        if len(variants) < 2:
            raise ValueError("an experiment needs at least two variants")
        bad = [name for name in variants if not NAME_PATTERN.fullmatch(name) or name == DEFAULT_VARIANT]
        if bad:
            raise ValueError(
                f"variant names must be letters, digits, '_' or '-' (at most 32), not {DEFAULT_VARIANT!r}: {bad}"
            )
        total = sum(variant.share for variant in variants.values())
        if not math.isclose(total, 1.0, abs_tol=1e-9):
            raise ValueError(f"variant shares must sum to 1, they sum to {total:g}")
        return variants

    @model_validator(mode="after")
    def _control_is_a_variant(self) -> ExperimentSection:
        if self.control not in self.variants:
            raise ValueError(f"control {self.control!r} is not one of the variants {sorted(self.variants)}")
        return self


class EventsSection(Section):
    enabled: bool
    max_batch: int = Field(ge=1)
    max_body_bytes: int = Field(ge=1024)
    # Weight of each event type as an interaction in the next run; 0 leaves that type out.
    weights: dict[Literal[EVENT_TYPES], float]
    lookback_days: int = Field(ge=1)
    # Spark tasks that read one day of the stream in parallel, each a slice of the day.
    export_slices: int = Field(ge=1)
    write_timeout_seconds: float = Positive
    idempotency_ttl_seconds: int = Field(ge=1)

    @field_validator("weights")
    @classmethod
    def _weights(cls, weights: dict) -> dict:
        missing = sorted(set(EVENT_TYPES) - set(weights))
        if missing or any(weight < 0 for weight in weights.values()):
            raise ValueError(f"needs a weight of 0 or more for each of {', '.join(EVENT_TYPES)}")
        return weights


class SliceSection(Section):
    # Users with fewer training interactions than light_min are cold, with heavy_min or more heavy.
    light_min: int = Field(ge=1)
    heavy_min: int = Field(ge=2)
    # The most popular items that together hold this share of training interactions are the head.
    head_share: float = Field(gt=0, lt=1)

    @model_validator(mode="after")
    def _ordered(self) -> SliceSection:
        if self.heavy_min <= self.light_min:
            raise ValueError(f"heavy_min ({self.heavy_min}) must be above light_min ({self.light_min})")
        return self


class EvaluateSection(Section):
    enabled: bool
    holdout_fraction: float = Field(gt=0, lt=1)
    min_user_interactions: int = Field(ge=1)
    k: int = Field(ge=1)
    seed: int
    # Score the users tune fitted its trials on (tune.train_users), reusing tune's winner; false:
    # fit each setting again on the whole split and score every holdout user.
    on_tune_sample: bool = True
    slices: SliceSection


class TuneSection(Section):
    enabled: bool
    trials: int = Field(ge=1)
    time_limit_minutes: float = Field(gt=0)
    # Users whose holdout scores each trial: a seeded sample of at most this many.
    max_users: int = Field(ge=1)
    # Users whose training interactions each trial fits on: a seeded sample of at most this many
    # (null: every user). Those scored are drawn from them.
    train_users: int | None = Field(default=None, ge=1)
    # Setting -> values to try, searched one setting at a time in this order; [] leaves it out.
    space: dict[Literal[TUNABLE_SETTINGS], list[float | int | str]]

    @field_validator("space")
    @classmethod
    def _space(cls, space: dict[str, list]) -> dict[str, list]:
        for setting, values in space.items():
            for value in values:  # each value must be one the train section accepts
                try:
                    TrainOverrides.model_validate({setting: value})
                except ValueError as exc:
                    raise ValueError(f"space.{setting} has a bad value {value!r}: {_first_error(exc)}") from None
        return space


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    return errors()[0]["msg"] if callable(errors) else str(exc)


class GateSection(Section):
    enabled: bool
    # Hold a run whose NDCG@k is below popularity's by more than this fraction of popularity's.
    max_below_popularity: float = Field(ge=0, le=1)
    # Hold a run whose NDCG@k fell by more than this fraction of the current published run's.
    max_drop: float = Field(ge=0, le=1)


class RecommendSection(Section):
    top_n: int = Field(ge=1)
    popular_n: int = Field(ge=1)
    engine: Literal["blocked", "subset"]


class ColdStartSection(Section):
    min_users: int = Field(ge=1)
    similar_n: int = Field(ge=1)
    per_category: int = Field(ge=1)


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
            raise ValueError(f"must be a redis://, rediss:// or unix:// URL, got {redact_url(url)!r}")
        return url

    @field_validator("key_prefix")
    @classmethod
    def _key_prefix(cls, prefix: str) -> str:
        return check_key_prefix(prefix)


class PublishSection(Section):
    keep_runs: int
    batch_size: int = Field(ge=1)
    lock_ttl_seconds: float = Positive
    memory_margin: float = Field(ge=0, le=10)

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
    header_timeout_seconds: float = Field(gt=0, le=60)
    max_connections: int = Field(ge=8)
    timeout_seconds: int = Field(ge=1)
    access_log: Literal["-"] | None
    log_level: Literal[LOG_LEVELS]
    log_file: str | None = Field(min_length=1)
    log_burst: int = Field(ge=1)
    log_window_seconds: float = Positive
    down_mode: Literal[DOWN_MODES]
    retry_after_seconds: float = Field(ge=0)
    fallback_file: str | None
    metrics_dir: str = Field(min_length=1)
    fallback_max_age_seconds: float = Positive
    pointer_refresh_seconds: float = Positive
    default_n: int = Field(ge=1)
    max_n: int = Field(ge=1)
    max_exclude: int = Field(ge=0)
    exploration_slots: int = Field(ge=0)
    fast_path: bool

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
    tune: TuneSection
    evaluate: EvaluateSection
    gate: GateSection
    recommend: RecommendSection
    cold_start: ColdStartSection
    store: StoreSection
    publish: PublishSection
    api: ApiSection
    schedule: ScheduleSection
    events: EventsSection
    experiments: dict[str, ExperimentSection]

    @field_validator("experiments")
    @classmethod
    def _experiments(cls, experiments: dict[str, ExperimentSection]) -> dict[str, ExperimentSection]:
        bad = [name for name in experiments if not NAME_PATTERN.fullmatch(name)]
        if bad:
            raise ValueError(f"experiment names must be letters, digits, '_' or '-' (at most 32): {bad}")
        enabled = [name for name, experiment in experiments.items() if experiment.enabled]
        if len(enabled) > 1:
            raise ValueError(f"at most one experiment can be enabled at a time, found {enabled}")
        return experiments

    @model_validator(mode="after")
    def _lists_hold_max_n(self) -> Config:
        if self.recommend.top_n < self.api.max_n:
            raise ValueError(
                f"recommend.top_n ({self.recommend.top_n}) must be at least api.max_n ({self.api.max_n}): "
                "stored lists must hold the longest answer"
            )
        if self.api.exploration_slots > self.api.max_n:
            raise ValueError("api.exploration_slots must not exceed api.max_n")
        return self

    @model_validator(mode="after")
    def _gate_has_figures(self) -> Config:
        if self.gate.enabled and not self.evaluate.enabled:
            raise ValueError(
                "gate.enabled needs evaluate.enabled: the quality gate judges the evaluate stage's figures "
                "(turn both off to publish every run unjudged)"
            )
        return self

    def active_experiment(self) -> tuple[str, ExperimentSection] | None:
        """The enabled experiment (name, settings), or None."""
        return next(((name, e) for name, e in self.experiments.items() if e.enabled), None)

    def experiment_definition(self) -> dict | None:
        """The enabled experiment as a run records it: name, salt, control and shares."""
        active = self.active_experiment()
        if active is None:
            return None
        name, experiment = active
        shares = {variant: settings.share for variant, settings in experiment.variants.items()}
        return {"name": name, "salt": experiment.salt, "control": experiment.control, "shares": shares}

    def reference_als_variant(self) -> str | None:
        """The variant whose ALS model stands for the run (its "als" metrics, its item-to-item
        lists): the control when it is ALS, else the first ALS variant; None without one."""
        als = [variant.name for variant in self.variants() if variant.model == "als"]
        active = self.active_experiment()
        if active and active[1].control in als:
            return active[1].control
        return als[0] if als else None

    def variants(self, train: TrainSection | None = None) -> list[RunVariant]:
        """The model variants a run trains and publishes: the enabled experiment's, each with its
        own changes laid over ``train`` (the run's chosen setting; default the train section), or
        one ``default`` variant with ``train`` as it is."""
        train = train or self.train
        active = self.active_experiment()
        if active is None:
            return [RunVariant(DEFAULT_VARIANT, "als", train, 1.0)]
        _, experiment = active
        return [
            RunVariant(name, v.model, _with_overrides(train, v.train), v.share)
            for name, v in experiment.variants.items()
        ]


def _with_overrides(train: TrainSection, overrides: BaseModel) -> TrainSection:
    return TrainSection.model_validate({**train.model_dump(), **overrides.model_dump(exclude_none=True)})


@dataclass(frozen=True)
class RunVariant:
    """One variant of a run: its name, its model kind, the train settings it uses, its share."""

    name: str
    model: str
    train: TrainSection
    share: float
