"""The study file: YAML (or a dict) validated into an immutable ``StudyConfig``.

Validation happens before anything touches storage, so bad input writes nothing. Every error is
one line naming the field, what was expected, what was got, and the fix.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from search.space import CategoricalParam, FloatParam, IntParam, Param, Space, grid_round

__all__ = ["ConfigError", "StudyConfig", "load_study_file", "parse_study", "check_params", "check_artifacts", "NAME_RE",
           "MAX_BYTES", "MAX_DEPTH"]

NAME_MAX = 128
MAX_BYTES = 1_000_000
"""The study-file limit: a document, and what its aliases expand to, holds at most 1 MB."""
MAX_DEPTH = 64
"""The deepest nesting of mappings and lists a study file may have (aliases expanded)."""
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*\Z")  # \Z: "$" would let a trailing newline through
TOP_KEYS = {"name", "objective", "trial", "space", "algorithm", "scheduler", "budget", "resources",
            "backend", "artifacts", "checkpoints", "description", "enqueue", "warm_start", "tracking"}


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
    cpus: float  # per worker
    gpus: float  # per worker
    backend: str = "ray"
    address: str | None = None
    scheduler: Mapping[str, Any] = field(default_factory=dict)
    artifacts: str = "search-artifacts"
    keep_last: int | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)
    trial_timeout: float | None = None  # seconds an attempt may run
    hang_timeout: float | None = None  # seconds an attempt may go without a report or checkpoint
    on_timeout: str = "fail"  # or "retry": a timed-out attempt is retried like a lost worker
    workers: int = 1  # processes one trial runs on (Ray Train, torch.distributed)
    enqueue: tuple[Mapping[str, Any], ...] = ()  # configurations tried first, when the study is created
    warm_start: tuple[str, ...] = ()  # studies of the same storage whose trials bo starts from
    tracking: Mapping[str, Any] = field(default_factory=dict)  # {mlflow: tracking URI}

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


def _key(key: Any) -> str:
    """A key as it appears in a field path: plain names as they are, anything else quoted."""
    return key if isinstance(key, str) and NAME_RE.match(key) else repr(key)


def _no_unknown(d: Mapping[str, Any], allowed: set[str], path: str) -> None:
    for key in d:
        if key not in allowed:
            raise _err(f"{path}.{_key(key)}" if path else _key(key),
                       f"unknown key; allowed keys are {', '.join(sorted(allowed))}")


def _check_json_data(value: Any, path: str, depth: int = 0) -> None:
    """The study is stored as JSON and read back from it on resume, so it must be JSON data:
    string keys, finite numbers, no dates or binary (YAML makes those from unquoted text)."""
    if depth > MAX_DEPTH:
        raise _err(path, f"nests deeper than {MAX_DEPTH} levels, the study-file limit; flatten it")
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _err(path, f"expected a finite number, got {value!r}")
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise _err(f"{path}.{_key(k)}" if path else _key(k),
                           f"keys must be strings, got {type(k).__name__} {k!r}; quote it "
                           "(the study is stored as JSON)")
            _check_json_data(v, f"{path}.{_key(k)}" if path else _key(k), depth + 1)
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_json_data(v, f"{path}[{i}]", depth + 1)
        return
    raise _err(path, f"expected text, a number, true/false, null, a list or a mapping, got {type(value).__name__} "
                     f"{value!r}; quote it (the study is stored as JSON)")


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


def _when(spec: Mapping[str, Any], path: str, declared: Mapping[str, Param]) -> dict[str, tuple[Any, ...]]:
    """The condition: each value must be one the named parameter can take, or the parameter
    would never be sampled."""
    when: dict[str, tuple[Any, ...]] = {}
    for other, allowed in _mapping(spec.get("when"), f"{path}.when").items():
        if other not in declared:
            raise _err(f"{path}.when.{_key(other)}", "must name a parameter declared earlier in space")
        values = tuple(allowed) if isinstance(allowed, list) else (allowed,)
        if not values:
            raise _err(f"{path}.when.{other}", f"needs at least one value of {other}, e.g. when: {{{other}: [a, b]}}")
        target = declared[other]
        if isinstance(target, FloatParam) and not target.step:
            raise _err(f"{path}.when.{other}", f"{other} is a continuous float, which never takes one exact value; "
                                               f"give {other} a step, or condition on a categorical or int")
        if isinstance(target, (FloatParam, IntParam, CategoricalParam)):
            for v in values:
                if not _can_take(target, v):
                    can = (f"its choices are {list(target.choices)!r}" if isinstance(target, CategoricalParam)
                           else f"it takes {'integers' if isinstance(target, IntParam) else 'numbers'} "
                                f"in [{target.low}, {target.high}]")
                    raise _err(f"{path}.when.{other}", f"{v!r} is not a value {other} can take ({can}), "
                                                       "so this parameter would never be sampled; fix the value")
        when[other] = values
    return when


def _can_take(param: Param, v: Any) -> bool:
    if isinstance(param, CategoricalParam):
        # a number matches an equal number; anything else only its own type (true is not 1)
        def number(x: Any) -> bool:
            return isinstance(x, (int, float)) and not isinstance(x, bool)

        return any(v == c and (type(v) is type(c) or number(v) and number(c)) for c in param.choices)
    return param.contains(v) and param.snap(v) == v  # on the parameter's grid


def _check_step(path: str, low: float, high: float, step: float) -> None:
    """A step must divide high - low: otherwise the grid's last point is not high, and a step
    larger than the range leaves low as the only value."""
    span = high - low
    if span == 0:
        return
    if step > span:
        raise _err(f"{path}.step", f"step={step} is larger than the range high - low = {span:g}, so every "
                                   f"trial would get low={low}; lower step or widen the range")
    k = span / step
    if abs(k - round(k)) > 1e-9 * max(1.0, k):
        n = math.floor(k + 1e-9)
        fit = grid_round(low + n * step, low, step)
        raise _err(f"{path}.step", f"step must divide high - low, got step={step} for low={low}, high={high} "
                                   f"({k:.4g} steps); set high to {fit:g} or choose a step that divides {span:g}")


def _param(name: str, spec: Any, declared: Mapping[str, Param]) -> Param:
    path = f"space.{_key(name)}"
    if not NAME_RE.match(name) or len(name) > NAME_MAX:
        raise _err(path, "parameter names use letters, digits, '_', '.', '-' (at most 128)")
    spec = _mapping(spec, path)
    kind = spec.get("type")
    when = _when(spec, path, declared)
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
            _check_step(path, low, high, step)
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
        for i, a in enumerate(choices):
            for b in choices[:i]:
                if a == b:  # 1, 1.0 and true are one value to Python, JSON and the encoders
                    same = "" if repr(a) == repr(b) else f": {b!r} and {a!r} are the same value; quote them as strings to keep both"
                    raise _err(f"{path}.choices", f"choices must be distinct{same or f'; {a!r} appears twice'}")
        return CategoricalParam(name, tuple(choices), when=when)
    from search.arch_spaces import ARCH_TYPES

    if isinstance(kind, str) and kind in ARCH_TYPES:
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


def _check_artifacts_url(artifacts: str) -> None:
    """An artifacts URL must name a filesystem fsspec knows, with its package installed."""
    from trials.artifacts import is_url

    if not is_url(artifacts):
        return
    import fsspec
    from fsspec.core import split_protocol

    for part in artifacts.split("::"):
        protocol = split_protocol(part)[0] or "file"
        try:
            fsspec.get_filesystem_class(protocol)
        except ValueError:
            raise _err("artifacts", f"unknown filesystem {protocol!r} in {artifacts!r}; use a folder path or a "
                                    "URL such as s3://bucket/path, gs://bucket/path or file:///shared/path") from None
        except ImportError as exc:
            raise _err("artifacts", f"{protocol}:// needs a package that is not installed ({exc}); install it "
                                    "or use a folder path") from None


def check_artifacts(artifacts: str) -> None:
    """Write and delete a probe file where the study's checkpoints will go, so a location that
    cannot be written fails before the study is created rather than at the first checkpoint.
    A folder that does not exist yet is probed at its nearest existing parent (nothing is created)."""
    import os
    import uuid

    from trials.artifacts import is_url

    _check_artifacts_url(artifacts)
    probe_name = f".search-probe-{uuid.uuid4().hex}"
    try:
        if is_url(artifacts):
            from fsspec.core import url_to_fs

            fs, root = url_to_fs(artifacts)
            fs.makedirs(root, exist_ok=True)
            probe = root.rstrip("/") + "/" + probe_name
            fs.pipe_file(probe, b"")
            fs.rm(probe)
            return
        folder = os.path.abspath(artifacts)
        while not os.path.lexists(folder):
            folder = os.path.dirname(folder)
        if not os.path.isdir(folder):
            raise _err("artifacts", f"{folder} is a file, not a folder, so {artifacts} cannot hold checkpoints; "
                                    "choose a folder path")
        probe = os.path.join(folder, probe_name)
        with open(probe, "xb"):
            pass
        os.remove(probe)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - any filesystem's failure, said in one line
        why = getattr(exc, "strerror", None) or f"{type(exc).__name__}: {exc}"
        raise _err("artifacts", f"cannot write to {artifacts} ({' '.join(str(why).split())}); choose a location "
                                "this user can write, e.g. artifacts: ./search-artifacts") from None


def parse_study(data: Any, *, check_entrypoint: bool = True) -> StudyConfig:
    """Validate a study given as plain data (the parsed YAML)."""
    from search.algorithms import ALGORITHMS

    if not isinstance(data, Mapping):
        raise ConfigError(f"study: expected a mapping at the top level, got {type(data).__name__}")
    data = dict(data)
    _no_unknown(data, TOP_KEYS, "")
    _check_json_data(data, "")
    name = check_name(data.get("name"))
    objectives = _objectives(data.get("objective"))

    trial = _mapping(data.get("trial"), "trial")
    _no_unknown(trial, {"entrypoint", "params"}, "trial")
    entrypoint = trial.get("entrypoint")
    if entrypoint is None or entrypoint == "":
        raise _err("trial.entrypoint", "missing; e.g. builtin:classifier or mypackage.module:train")
    if not isinstance(entrypoint, str):
        raise _err("trial.entrypoint", f"must be a string such as builtin:classifier or mypackage.module:train, "
                                       f"got {type(entrypoint).__name__} {entrypoint!r}")
    if check_entrypoint and not entrypoint.startswith("python:"):  # a callable comes with optimize()
        from trials.runner import EntrypointError, resolve_entrypoint

        try:
            resolve_entrypoint(entrypoint)
        except EntrypointError as exc:
            raise _err("trial.entrypoint", str(exc)) from None
    trial_params = _mapping(trial.get("params"), "trial.params")

    space_raw = _mapping(data.get("space"), "space")
    params: list[Param] = []
    for pname, pspec in space_raw.items():
        params.append(_param(str(pname), pspec, {p.name: p for p in params}))
        if pname in trial_params:
            raise _err(f"space.{pname}", "is also fixed in trial.params; keep it in one place")
    space = Space(tuple(params))

    algo = _mapping(data.get("algorithm"), "algorithm")
    # `bo` by default; TPE where bo's encoder cannot go (architecture parameters).
    plain = all(isinstance(p, (FloatParam, IntParam, CategoricalParam)) for p in space.params)
    algo_name = algo.pop("name", "bo" if plain else "tpe")
    if not isinstance(algo_name, str) or algo_name not in ALGORITHMS:
        raise _err("algorithm.name", f"unknown algorithm {algo_name!r}; choose one of {', '.join(sorted(ALGORITHMS))}")
    seed = algo.pop("seed", None)
    if seed is None:
        import secrets

        seed = secrets.randbelow(2**31)
    seed = int(_number(seed, "algorithm.seed", integer=True))
    if not 0 <= seed < 2**32:
        raise _err("algorithm.seed", f"must be in [0, 2**32), got {seed}")

    budget = _mapping(data.get("budget"), "budget")
    _no_unknown(budget, {"trials", "parallel", "max_failures", "trial_timeout", "hang_timeout", "on_timeout"}, "budget")
    n_trials = int(_number(budget.get("trials", 20), "budget.trials", integer=True))
    parallel = int(_number(budget.get("parallel", 1), "budget.parallel", integer=True))
    max_failures = int(_number(budget.get("max_failures", 3), "budget.max_failures", integer=True))
    if n_trials < 1:
        raise _err("budget.trials", f"must be >= 1, got {n_trials}")
    if parallel < 1:
        raise _err("budget.parallel", f"must be >= 1, got {parallel}")
    if max_failures < 0:
        raise _err("budget.max_failures", f"must be >= 0, got {max_failures}")
    timeouts = {}
    for key in ("trial_timeout", "hang_timeout"):
        if budget.get(key) is not None:
            timeouts[key] = _number(budget[key], f"budget.{key}")
            if timeouts[key] <= 0:
                raise _err(f"budget.{key}", f"must be > 0 seconds (leave it out for no limit), got {budget[key]!r}")
    on_timeout = budget.get("on_timeout", "fail")
    if on_timeout not in ("fail", "retry"):
        raise _err("budget.on_timeout", f"must be 'fail' (the trial ends FAILED) or 'retry' (retried up to "
                                        f"budget.max_failures times), got {on_timeout!r}")

    res = _mapping(data.get("resources"), "resources")
    _no_unknown(res, {"cpus", "gpus", "workers"}, "resources")
    cpus = _number(res.get("cpus", 1), "resources.cpus")
    gpus = _number(res.get("gpus", 0), "resources.gpus")
    workers = int(_number(res.get("workers", 1), "resources.workers", integer=True))
    if workers < 1:
        raise _err("resources.workers", f"must be >= 1 (processes one trial runs on), got {workers}")
    if cpus <= 0:
        raise _err("resources.cpus", f"must be > 0 (fractions allowed), got {cpus}")
    if gpus < 0:
        raise _err("resources.gpus", f"must be >= 0 (fractions such as 0.25 pack trials on a GPU), got {gpus}")

    backend = _mapping(data.get("backend"), "backend")
    _no_unknown(backend, {"name", "address"}, "backend")
    backend_name = backend.get("name", "ray")
    if backend_name not in ("ray", "inprocess", "simulated"):
        raise _err("backend.name", f"must be ray, inprocess or simulated, got {backend_name!r}")
    if workers > 1 and backend_name != "ray":
        raise _err("resources.workers", f"a trial on {workers} workers runs on Ray Train: use backend: {{name: ray}} "
                                        f"(or resources.workers: 1 with {backend_name})")
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
    _check_artifacts_url(artifacts)

    if algo_name == "pbt":
        # The population is the study's trials unless said otherwise (issue: defaults to budget).
        algo.setdefault("population", n_trials)
    scheduler = _mapping(data.get("scheduler"), "scheduler")
    if scheduler:
        from search.schedulers import SCHEDULERS, make_scheduler

        # without a name (or with name: none) every other key would be ignored in silence
        sched_name = scheduler.get("name")
        names = ", ".join(["none", *sorted(SCHEDULERS)])
        if sched_name is None:
            raise _err("scheduler", f"needs a name; choose one of {names}, e.g. scheduler: {{name: asha}}")
        if not isinstance(sched_name, str):
            raise _err("scheduler", f"unknown scheduler {sched_name!r}; choose one of {names}")
        if sched_name == "none" and len(scheduler) > 1:
            raise _err("scheduler", "name: none takes no options; remove them or name a scheduler")
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
    enqueue = [] if data.get("enqueue") is None else data["enqueue"]  # enqueue: false is not "none"
    if not isinstance(enqueue, list):
        raise _err("enqueue", f"expected a list of configurations ({{param: value}} each), got {type(enqueue).__name__}")
    enqueue = [check_params(space, _mapping(c, f"enqueue[{i}]"), f"enqueue[{i}]") for i, c in enumerate(enqueue)]
    warm = [] if data.get("warm_start") is None else data["warm_start"]
    if not isinstance(warm, list) or not all(isinstance(w, str) and w for w in warm):
        raise _err("warm_start", f"expected a list of study names of this storage, got {warm!r}")
    if warm and not hasattr(ALGORITHMS[algo_name], "warm_start"):
        raise _err("warm_start", f"algorithm {algo_name!r} cannot start from earlier trials; use algorithm: bo")
    tracking = _mapping(data.get("tracking"), "tracking")
    _no_unknown(tracking, {"mlflow"}, "tracking")
    if "mlflow" in tracking:
        if not isinstance(tracking["mlflow"], str) or not tracking["mlflow"]:
            raise _err("tracking.mlflow", f"expected an MLflow tracking URI such as sqlite:///mlflow.db or "
                                          f"http://host:5000, got {tracking['mlflow']!r}")
        import importlib.util

        if importlib.util.find_spec("mlflow") is None:
            raise _err("tracking.mlflow", "needs the mlflow package: pip install mlflow")
    return StudyConfig(
        name=name, objectives=objectives, entrypoint=entrypoint, trial_params=trial_params, space=space,
        algorithm=algo_name, seed=seed, algorithm_options=algo, trials=n_trials, parallel=parallel,
        max_failures=max_failures, cpus=cpus, gpus=gpus, workers=workers, backend=backend_name, address=address,
        artifacts=artifacts, keep_last=keep_last, scheduler=scheduler, raw=raw, on_timeout=on_timeout, **timeouts,
        enqueue=tuple(enqueue), warm_start=tuple(warm), tracking=tracking,
    )


def check_params(space: Space, params: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``params`` as a configuration of ``space``: every active parameter given and within its
    bounds or choices, nothing the space does not have (conditions applied)."""
    unknown = sorted(set(params) - set(space.names), key=str)
    if unknown:
        raise _err(f"{where}.{_key(unknown[0])}", f"not a parameter of the space; it has {', '.join(space.names)}")
    out: dict[str, Any] = {}
    for p in space:
        if not space.is_active(p, out):
            if p.name in params:
                raise _err(f"{where}.{p.name}", "inactive under its when: condition; leave it out")
            continue
        if p.name not in params:
            raise _err(f"{where}.{p.name}", "missing; every active parameter needs a value")
        v = params[p.name]
        contains = getattr(p, "contains", None)
        if contains is not None and not contains(v):
            raise _err(f"{where}.{p.name}", f"{v!r} is outside the space's {p.name}; give a value it can take")
        out[p.name] = v
    return out


def _bounded_loader():
    """A SafeLoader that rejects duplicate keys (with their lines), nesting deeper than MAX_DEPTH,
    and aliases that expand past MAX_BYTES (the "billion laughs" document), before anything is
    built from the document."""
    import yaml
    from yaml.nodes import MappingNode, ScalarNode, SequenceNode

    class Loader(yaml.SafeLoader):
        _depth = 0
        _aliases = 0

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                self._aliases += 1
                return super().compose_node(parent, index)
            self._depth += 1
            try:
                if self._depth > MAX_DEPTH:
                    line = self.peek_event().start_mark.line + 1
                    raise ConfigError(f"line {line}: nesting deeper than {MAX_DEPTH} levels, the study-file limit; "
                                      "flatten the document")
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

        def compose_mapping_node(self, anchor):
            node = super().compose_mapping_node(anchor)
            seen: dict[Any, int] = {}
            for key_node, _value in node.value:
                if not isinstance(key_node, ScalarNode) or key_node.tag in (
                        "tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"):
                    continue
                key = self.construct_object(key_node)
                line = key_node.start_mark.line + 1
                try:
                    first = seen.get(key)
                except TypeError:
                    continue  # an unhashable key is refused when the mapping is built
                if first is not None:
                    raise ConfigError(f"line {line}: duplicate key {key!r} (first at line {first}); keep one")
                seen[key] = line
            return node

        def construct_document(self, node):
            if self._aliases:
                _measure(node, 0, {}, set())
            return super().construct_document(node)

    def _measure(node, depth: int, memo: dict[int, tuple[int, int]], stack: set[int]) -> tuple[int, int]:
        """(characters, height) of ``node`` with every alias written out; raises past the limits."""
        if depth > MAX_DEPTH:
            raise ConfigError(f"line {node.start_mark.line + 1}: aliases nest the document deeper than "
                              f"{MAX_DEPTH} levels, the study-file limit; write the values out")
        key = id(node)
        if key in stack:
            raise ConfigError(f"line {node.start_mark.line + 1}: an alias refers to a node that contains it "
                              "(a recursive structure); write the values out")
        if key not in memo:
            if isinstance(node, ScalarNode):
                memo[key] = (len(node.value) + 1, 0)
            else:
                children = node.value if isinstance(node, SequenceNode) else \
                    [n for pair in node.value for n in pair] if isinstance(node, MappingNode) else []
                size, height = 1, 0
                stack.add(key)
                for child in children:
                    s, h = _measure(child, depth + 1, memo, stack)
                    size, height = size + s, max(height, h + 1)
                    if size > MAX_BYTES:
                        raise ConfigError(f"aliases (*) expand the document past {MAX_BYTES:,} bytes (1 MB), the "
                                          "study-file limit; write the values out or drop the anchors")
                stack.discard(key)
                memo[key] = (size, height)
        size, height = memo[key]
        if depth + height > MAX_DEPTH:
            raise ConfigError(f"line {node.start_mark.line + 1}: aliases nest the document deeper than "
                              f"{MAX_DEPTH} levels, the study-file limit; write the values out")
        return size, height

    return Loader


def _read_text(path: str) -> str:
    """The file's text: at most MAX_BYTES of UTF-8, or a one-line error saying what was expected."""
    import os

    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder; expected a study file (YAML text)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__}); "
                          "expected a readable study file (YAML text)") from None
    if len(data) > MAX_BYTES:
        size = os.path.getsize(path) if os.path.isfile(path) else 0  # a pipe has no size
        size_text = f"{size:,} bytes, " if size > MAX_BYTES else ""
        raise ConfigError(f"{path}: the file is {size_text}over the study-file limit of {MAX_BYTES:,} bytes (1 MB); "
                          "a study file needs a few KB: keep data in files the trainer reads")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                          "expected a study file in YAML, saved as UTF-8") from None


def load_study_file(path: str, **overrides: Any) -> StudyConfig:
    """Read, bound (MAX_BYTES, MAX_DEPTH, duplicate keys) and validate a study file."""
    import yaml

    text = _read_text(path)
    try:
        data = yaml.load(text, Loader=_bounded_loader())  # noqa: S506 - a SafeLoader subclass
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
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
