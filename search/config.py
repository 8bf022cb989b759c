"""The study file: YAML (or a dict) validated into an immutable ``StudyConfig``.

Validation happens before anything touches storage, so bad input writes nothing. Every error is
one line naming the field, what was expected, what was got, and the fix.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from search.space import CategoricalParam, FloatParam, IntParam, Param, Space

__all__ = ["ConfigError", "StudyConfig", "load_study_file", "parse_study", "NAME_RE"]

NAME_MAX = 128
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
TOP_KEYS = {"name", "objective", "trial", "space", "algorithm", "scheduler", "budget", "resources",
            "backend", "artifacts", "checkpoints", "description"}


class ConfigError(ValueError):
    """Invalid study: the message is one line naming the field and the fix."""


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: str


@dataclass(frozen=True)
class StudyConfig:
    name: str
    objectives: tuple[Objective, ...]
    entrypoint: str
    trial_params: Mapping[str, Any]
    space: Space
    algorithm: str
    seed: int
    algorithm_options: Mapping[str, Any]
    trials: int
    parallel: int
    max_failures: int
    cpus: float
    gpus: float
    backend: str = "ray"
    address: str | None = None
    scheduler: Mapping[str, Any] = field(default_factory=dict)
    artifacts: str = "search-artifacts"
    keep_last: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(o.metric for o in self.objectives)

    @property
    def directions(self) -> tuple[str, ...]:
        return tuple(o.direction for o in self.objectives)

    def to_dict(self) -> dict[str, Any]:
        """The normalised study as plain JSON data (stored with the study; parse_study reads it back)."""
        return dict(self.raw)


def _err(path: str, msg: str) -> ConfigError:
    return ConfigError(f"{path}: {msg}")


def _mapping(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _err(path, f"expected a mapping, got {type(value).__name__} {value!r}")
    return dict(value)


def _no_unknown(d: Mapping[str, Any], allowed: set[str], path: str) -> None:
    for key in d:
        if key not in allowed:
            raise _err(f"{path}.{key}" if path else str(key),
                       f"unknown key; allowed keys are {', '.join(sorted(allowed))}")


def _number(value: Any, path: str, *, integer: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _err(path, f"expected a number, got {value!r}")
    if integer and not float(value).is_integer():
        raise _err(path, f"expected an integer, got {value!r}")
    if not math.isfinite(float(value)):
        raise _err(path, f"expected a finite number, got {value!r}")
    return int(value) if integer else float(value)


def check_name(name: Any, path: str = "name") -> str:
    if not isinstance(name, str) or not name:
        raise _err(path, "must be a non-empty string of letters, digits, '_', '.', '-'; e.g. name: my-study")
    if len(name) > NAME_MAX:
        raise _err(path, f"must be at most {NAME_MAX} characters, got {len(name)}; shorten it")
    if not NAME_RE.match(name):
        raise _err(path, f"{name!r} may only use letters, digits, '_', '.', '-' and must start with a letter or digit")
    return name


def _objectives(value: Any) -> tuple[Objective, ...]:
    if value is None:
        raise _err("objective", "missing; e.g. objective: {metric: val_loss, direction: minimize}")
    items = value if isinstance(value, list) else [value]
    if not items:
        raise _err("objective", "needs at least one {metric, direction}")
    out = []
    for i, item in enumerate(items):
        path = "objective" if not isinstance(value, list) else f"objective[{i}]"
        item = _mapping(item, path)
        _no_unknown(item, {"metric", "direction"}, path)
        metric = item.get("metric")
        if not isinstance(metric, str) or not metric:
            raise _err(f"{path}.metric", "must be a metric name such as val_loss")
        direction = item.get("direction", "minimize")
        if direction not in ("minimize", "maximize"):
            raise _err(f"{path}.direction", f"must be minimize or maximize, got {direction!r}")
        out.append(Objective(metric, direction))
    if len({o.metric for o in out}) != len(out):
        raise _err("objective", "each metric may appear once")
    return tuple(out)


def _param(name: str, spec: Any, declared: list[str]) -> Param:
    path = f"space.{name}"
    if not NAME_RE.match(name) or len(name) > NAME_MAX:
        raise _err(path, "parameter names use letters, digits, '_', '.', '-' (at most 128)")
    spec = _mapping(spec, path)
    kind = spec.get("type")
    when_raw = _mapping(spec.get("when"), f"{path}.when")
    when: dict[str, tuple[Any, ...]] = {}
    for other, allowed in when_raw.items():
        if other not in declared:
            raise _err(f"{path}.when.{other}", "must name a parameter declared earlier in space")
        when[other] = tuple(allowed) if isinstance(allowed, list) else (allowed,)
    if kind in ("float", "int"):
        _no_unknown(spec, {"type", "low", "high", "log", "step", "when"}, path)
        integer = kind == "int"
        for key in ("low", "high"):
            if key not in spec:
                raise _err(f"{path}.{key}", f"missing; a {kind} parameter needs low and high")
        low = _number(spec["low"], f"{path}.low", integer=integer)
        high = _number(spec["high"], f"{path}.high", integer=integer)
        if low > high:
            raise _err(path, f"low <= high must hold, got low={low}, high={high}; swap them")
        log = spec.get("log", False)
        if not isinstance(log, bool):
            raise _err(f"{path}.log", f"must be true or false, got {log!r}")
        if log and low <= 0:
            raise _err(path, f"log: true needs low > 0, got low={low}; raise low or set log: false")
        step = spec.get("step")
        if step is not None:
            step = _number(step, f"{path}.step", integer=integer)
            if step <= 0:
                raise _err(f"{path}.step", f"must be > 0, got {step}")
            if log:
                raise _err(path, "step and log: true cannot be combined; drop one")
        if integer:
            return IntParam(name, int(low), int(high), log=log, step=int(step or 1), when=when)
        return FloatParam(name, low, high, log=log, step=step, when=when)
    if kind == "categorical":
        _no_unknown(spec, {"type", "choices", "when"}, path)
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise _err(f"{path}.choices", "must be a non-empty list, e.g. choices: [adam, sgd]")
        for c in choices:
            if not (c is None or isinstance(c, (str, int, float, bool))):
                raise _err(f"{path}.choices", f"choices must be strings, numbers, booleans or null, got {c!r}")
        if len({repr(c) for c in choices}) != len(choices):
            raise _err(f"{path}.choices", "choices must be distinct")
        return CategoricalParam(name, tuple(choices), when=when)
    from search.arch_spaces import ARCH_TYPES

    if kind in ARCH_TYPES:
        return ARCH_TYPES[kind](name, spec, when, path)
    raise _err(f"{path}.type", f"must be float, int, categorical or an architecture space "
                               f"({', '.join(sorted(ARCH_TYPES))}), got {kind!r}")


def _check_pausable(entrypoint: str, trial_params: Mapping[str, Any]) -> None:
    """A pausing scheduler pauses a trial at a report and resumes it from its newest checkpoint:
    with a built-in trainer, every report must come with a checkpoint, or the trial ends PRUNED
    (no checkpoint) or retrains from an older one."""
    if entrypoint == "builtin:classifier":
        from trials.builtin.classifier import DEFAULTS
    elif entrypoint == "builtin:lm":
        from trials.builtin.lm import DEFAULTS
    else:
        return  # a user's trainer: the README says what it must do
    every = {k: trial_params.get(k, DEFAULTS[k]) for k in ("eval_every", "checkpoint_every")}
    if all(isinstance(v, int) and not isinstance(v, bool) for v in every.values()) and every["eval_every"] > 0 \
            and (every["checkpoint_every"] <= 0 or every["eval_every"] % every["checkpoint_every"]):
        raise _err("trial.params.checkpoint_every",
                   f"is {every['checkpoint_every']}, but the scheduler pauses trials at reports (every "
                   f"{every['eval_every']}, eval_every) and resumes them from checkpoints; set checkpoint_every "
                   f"to {every['eval_every']} (or a divisor of it), or use a scheduler that stops (type: stopping)")


def parse_study(data: Any, *, check_entrypoint: bool = True) -> StudyConfig:
    """Validate a study given as plain data (the parsed YAML)."""
    from search.algorithms import ALGORITHMS

    if not isinstance(data, Mapping):
        raise ConfigError(f"study: expected a mapping at the top level, got {type(data).__name__}")
    data = dict(data)
    _no_unknown(data, TOP_KEYS, "")
    name = check_name(data.get("name"))
    objectives = _objectives(data.get("objective"))

    trial = _mapping(data.get("trial"), "trial")
    _no_unknown(trial, {"entrypoint", "params"}, "trial")
    entrypoint = trial.get("entrypoint")
    if not isinstance(entrypoint, str) or not entrypoint:
        raise _err("trial.entrypoint", "missing; e.g. builtin:classifier or mypackage.module:train")
    if check_entrypoint:
        from trials.runner import EntrypointError, resolve_entrypoint

        try:
            resolve_entrypoint(entrypoint)
        except EntrypointError as exc:
            raise _err("trial.entrypoint", str(exc)) from None
    trial_params = _mapping(trial.get("params"), "trial.params")

    space_raw = _mapping(data.get("space"), "space")
    params: list[Param] = []
    for pname, pspec in space_raw.items():
        params.append(_param(str(pname), pspec, [p.name for p in params]))
        if pname in trial_params:
            raise _err(f"space.{pname}", "is also fixed in trial.params; keep it in one place")
    space = Space(tuple(params))

    algo = _mapping(data.get("algorithm"), "algorithm")
    # `bo` by default; TPE where bo's encoder cannot go (architecture parameters).
    plain = all(isinstance(p, (FloatParam, IntParam, CategoricalParam)) for p in space.params)
    algo_name = algo.pop("name", "bo" if plain else "tpe")
    if algo_name not in ALGORITHMS:
        raise _err("algorithm.name", f"unknown algorithm {algo_name!r}; choose one of {', '.join(sorted(ALGORITHMS))}")
    seed = algo.pop("seed", None)
    if seed is None:
        import secrets

        seed = secrets.randbelow(2**31)
    seed = int(_number(seed, "algorithm.seed", integer=True))
    if not 0 <= seed < 2**32:
        raise _err("algorithm.seed", f"must be in [0, 2**32), got {seed}")

    budget = _mapping(data.get("budget"), "budget")
    _no_unknown(budget, {"trials", "parallel", "max_failures"}, "budget")
    n_trials = int(_number(budget.get("trials", 20), "budget.trials", integer=True))
    parallel = int(_number(budget.get("parallel", 1), "budget.parallel", integer=True))
    max_failures = int(_number(budget.get("max_failures", 3), "budget.max_failures", integer=True))
    if n_trials < 1:
        raise _err("budget.trials", f"must be >= 1, got {n_trials}")
    if parallel < 1:
        raise _err("budget.parallel", f"must be >= 1, got {parallel}")
    if max_failures < 0:
        raise _err("budget.max_failures", f"must be >= 0, got {max_failures}")

    res = _mapping(data.get("resources"), "resources")
    _no_unknown(res, {"cpus", "gpus"}, "resources")
    cpus = _number(res.get("cpus", 1), "resources.cpus")
    gpus = _number(res.get("gpus", 0), "resources.gpus")
    if cpus <= 0:
        raise _err("resources.cpus", f"must be > 0 (fractions allowed), got {cpus}")
    if gpus < 0:
        raise _err("resources.gpus", f"must be >= 0 (fractions such as 0.25 pack trials on a GPU), got {gpus}")

    backend = _mapping(data.get("backend"), "backend")
    _no_unknown(backend, {"name", "address"}, "backend")
    backend_name = backend.get("name", "ray")
    if backend_name not in ("ray", "inprocess", "simulated"):
        raise _err("backend.name", f"must be ray, inprocess or simulated, got {backend_name!r}")
    address = backend.get("address")
    if address is not None and not isinstance(address, str):
        raise _err("backend.address", f"must be a string such as ray://head:10001 or auto, got {address!r}")
    ckpt = _mapping(data.get("checkpoints"), "checkpoints")
    _no_unknown(ckpt, {"keep_last"}, "checkpoints")
    keep_last = ckpt.get("keep_last")
    if keep_last is not None:
        keep_last = int(_number(keep_last, "checkpoints.keep_last", integer=True))
        if keep_last < 1:
            raise _err("checkpoints.keep_last", f"must be >= 1 (the newest checkpoint is always kept), got {keep_last}")
    artifacts = data.get("artifacts", "search-artifacts")
    if not isinstance(artifacts, str) or not artifacts:
        raise _err("artifacts", "must be a folder path")

    if algo_name == "pbt":
        # The population is the study's trials unless said otherwise (issue: defaults to budget).
        algo.setdefault("population", n_trials)
    scheduler = _mapping(data.get("scheduler"), "scheduler")
    if scheduler:
        from search.schedulers import make_scheduler

        try:
            sched = make_scheduler(scheduler, tuple(o.metric for o in objectives),
                                   tuple(o.direction for o in objectives))
        except ValueError as exc:
            raise _err("scheduler", str(exc)) from None
        if sched is not None and sched.pauses:
            _check_pausable(entrypoint, trial_params)

    raw = dict(data)
    raw["algorithm"] = {"name": algo_name, "seed": seed, **algo}
    # The algorithm validates its own options now, so a typo fails before anything is written.
    try:
        ALGORITHMS[algo_name](space, tuple(o.metric for o in objectives), tuple(o.direction for o in objectives),
                              seed=seed, **algo)
    except (ValueError, TypeError) as exc:
        raise _err("algorithm", str(exc)) from None
    return StudyConfig(
        name=name, objectives=objectives, entrypoint=entrypoint, trial_params=trial_params, space=space,
        algorithm=algo_name, seed=seed, algorithm_options=algo, trials=n_trials, parallel=parallel,
        max_failures=max_failures, cpus=cpus, gpus=gpus, backend=backend_name, address=address,
        artifacts=artifacts, keep_last=keep_last, scheduler=scheduler, raw=raw,
    )


def load_study_file(path: str, **overrides: Any) -> StudyConfig:
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
    if data is None:
        raise ConfigError(f"{path}: the file is empty; see README 'Study file reference'")
    if isinstance(data, Mapping):
        data = {**data, **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return parse_study(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
