"""The study file declared as pydantic v2 models, for its JSON Schema (`search schema`).

Editors' YAML support reads the schema (a study file's first line
``# yaml-language-server: $schema=study.schema.json``) to complete keys and flag typos as you
type. ``search.config.parse_study`` stays the one validator and its messages are the ones users
see: it checks what a schema cannot say (low <= high, a step that divides the range, conditions on
earlier parameters, each algorithm's and scheduler's own options). The schema accepts every study
the loader accepts (the loader's fuzz test checks that); names of algorithms, schedulers and
architecture spaces come from their registries, so it cannot fall behind them.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from search.algorithms import ALGORITHMS
from search.arch_spaces import LM_OPS, NB201_OPS
from search.config import NAME_MAX
from search.schedulers import SCHEDULERS

__all__ = ["study_schema", "StudyFile"]

# NAME_RE in JSON Schema's (ECMA-262) dialect
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=NAME_MAX)]
Scalar = Union[str, int, float, bool, None]
When = Annotated[dict[str, Union[Scalar, list[Scalar]]], Field(
    description="active only when each named parameter (declared earlier) takes one of these values")]
PositiveInts = Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)]
Range = Union[Annotated[int, Field(ge=1)], Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=2,
                                                                                              max_length=2)]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Objective(_Strict):
    metric: str = Field(min_length=1, description="a metric the trainer reports, e.g. val_loss")
    direction: Literal["minimize", "maximize"] = "minimize"


class Trial(_Strict):
    entrypoint: str = Field(min_length=1, description="builtin:NAME (classifier, lm, tabular) or "
                                                      "package.module:function")
    params: Optional[dict[str, Any]] = Field(None, description="fixed arguments passed to every trial")


class FloatSpec(_Strict):
    type: Literal["float"]
    low: float
    high: float = Field(description="low <= high")
    log: bool = Field(False, description="sample on a log scale (needs low > 0)")
    step: Optional[float] = Field(None, gt=0, description="a grid step that divides high - low")
    when: Optional[When] = None


class IntSpec(_Strict):
    type: Literal["int"]
    low: int
    high: int = Field(description="low <= high")
    log: bool = Field(False, description="sample on a log scale (needs low > 0)")
    step: Optional[int] = Field(None, ge=1, description="a grid step that divides high - low")
    when: Optional[When] = None


class CategoricalSpec(_Strict):
    type: Literal["categorical"]
    choices: list[Scalar] = Field(min_length=1, description="distinct values (1, 1.0 and true are one value)")
    when: Optional[When] = None


class NasBench201Spec(_Strict):
    type: Literal["nas-bench-201"]
    ops: Optional[Annotated[list[Literal[NB201_OPS]], Field(min_length=2)]] = None  # type: ignore[valid-type]
    when: Optional[When] = None


class CnnSpec(_Strict):
    type: Literal["cnn"]
    depth: Optional[Range] = None
    widths: Optional[PositiveInts] = None
    kernels: Optional[PositiveInts] = Field(None, description="odd kernel sizes")
    skip: Optional[bool] = None
    when: Optional[When] = None


class LmLayersSpec(_Strict):
    type: Literal["lm-layers"]
    layers: Optional[Range] = None
    ops: Optional[Annotated[list[Literal[LM_OPS]], Field(min_length=1)]] = None  # type: ignore[valid-type]
    widths: Optional[PositiveInts] = None
    heads: Optional[PositiveInts] = None
    ffn_mult: Optional[PositiveInts] = None
    kernels: Optional[PositiveInts] = None
    max_params: Optional[Annotated[int, Field(ge=1)]] = None
    when: Optional[When] = None


ParamSpec = Annotated[Union[FloatSpec, IntSpec, CategoricalSpec, NasBench201Spec, CnnSpec, LmLayersSpec],
                      Field(discriminator="type")]


class Budget(_Strict):
    trials: int = Field(20, ge=1)
    parallel: int = Field(1, ge=1, description="trials running at once")
    max_failures: int = Field(3, ge=0)
    trial_timeout: Optional[float] = Field(None, gt=0, description="seconds an attempt may run")
    hang_timeout: Optional[float] = Field(None, gt=0, description="seconds an attempt may go without a report "
                                                                  "or checkpoint")
    on_timeout: Literal["fail", "retry"] = Field("fail", description="retry: a timed-out attempt is retried "
                                                                     "like a lost worker")


class Resources(_Strict):
    cpus: float = Field(1, gt=0, description="per worker; fractions allowed")
    gpus: float = Field(0, ge=0, description="per worker; fractions such as 0.25 pack trials on a GPU")
    workers: int = Field(1, ge=1, description="processes one trial runs on (Ray Train workers, torch.distributed)")


class Backend(_Strict):
    name: Literal["ray", "inprocess", "simulated"] = "ray"
    address: Optional[str] = Field(None, description="a Ray address such as ray://head:10001 or auto")


class Checkpoints(_Strict):
    keep_last: Optional[int] = Field(None, ge=1, description="keep each trial's newest N checkpoints")


class Tracking(_Strict):
    mlflow: Optional[str] = Field(None, min_length=1, description="an MLflow tracking URI such as "
                                                                  "sqlite:///mlflow.db or http://host:5000")


class Algorithm(BaseModel):
    """name, seed, and the algorithm's own options (each algorithm checks its own)."""

    model_config = ConfigDict(extra="allow")
    name: Optional[Literal[tuple(ALGORITHMS)]] = Field(  # type: ignore[valid-type]
        None, description="bo by default (tpe for architecture spaces)")
    seed: Optional[int] = Field(None, ge=0, lt=2**32, description="drawn and recorded when absent")


class Scheduler(BaseModel):
    """name, and the scheduler's own options (each scheduler checks its own)."""

    model_config = ConfigDict(extra="allow")
    name: Optional[Literal[("none", *SCHEDULERS)]] = None  # type: ignore[valid-type]
    metric: Optional[str] = None
    mode: Optional[Literal["minimize", "maximize"]] = None


class StudyFile(_Strict):
    """A search-service study file (`search run study.yaml`)."""

    model_config = ConfigDict(extra="forbid", title="search-service study file")
    name: Name
    objective: Union[Objective, Annotated[list[Objective], Field(min_length=1)]]
    trial: Trial
    space: Optional[dict[str, ParamSpec]] = Field(
        None, description="parameters, in declaration order",
        json_schema_extra={"propertyNames": {"pattern": NAME_PATTERN, "maxLength": NAME_MAX}})
    algorithm: Optional[Algorithm] = None
    scheduler: Optional[Scheduler] = None
    budget: Optional[Budget] = None
    resources: Optional[Resources] = None
    backend: Optional[Backend] = None
    artifacts: str = Field("search-artifacts", min_length=1,
                           description="checkpoint folder, or an fsspec URL such as s3://bucket/path")
    checkpoints: Optional[Checkpoints] = None
    description: Any = Field(None, description="free text or data, stored with the study")
    enqueue: Optional[list[dict[str, Any]]] = Field(
        None, description="configurations ({param: value}) tried first, in order, when the study is created")
    warm_start: Optional[list[Annotated[str, Field(min_length=1)]]] = Field(
        None, description="studies of the same storage whose trials the algorithm (bo) starts from")
    tracking: Optional[Tracking] = None


def study_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the study file."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **StudyFile.model_json_schema()}
