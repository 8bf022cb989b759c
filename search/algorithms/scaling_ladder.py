"""The scaling ladder: small trials over model sizes × token budgets × learning rate × batch size,
fitted into a loss law and hyperparameter laws, ending with a prediction for a target run.

Plan (all of it fixed by the options, so a resumed study rebuilds it from history alone):

- a *rung* is a model size, for ``builtin:lm`` a homogeneous stack of attention layers
  ``{layers: L, width: W}`` (heads = ``width // head_dim`` rounded down to a divisor of the width,
  ffn = 4·width unless given);
- a *cell* is a (rung, token budget) pair, the budget given as ``tokens_per_param``, ``tokens`` or
  ``steps``; cells run in order of planned compute, smallest first;
- inside a cell, every batch size is a *line* over the learning rates. A line starts at the
  learning rate that was best in the nearest finished cell (the middle of ``lrs`` before any cell
  finished) and walks to the neighbours of its best point; it is pinned, and its remaining learning
  rates skipped, once the loss has been seen to rise on both sides of the best one (or the best one
  sits at the end of the sweep). Batch sizes are walked the same way over the lines' tuned losses.

Each finished cell contributes one point: N and D as the trials reported them, the tuned loss and
the tuned learning rate (the vertex of a parabola in log lr through the best point and its two
neighbours, when the best is interior) and batch size. Every time a cell finishes, the Chinchilla
law L(N, D) = E + A/N^α + B/D^β (``surrogates.scaling.fit_chinchilla``) and the Step Law forms
lr* = c·N^a·D^b, batch* = d·D^e (``fit_step_law`` over the per-cell optima) are refitted; the
prediction for the target (loss with its bootstrap interval, learning rate, batch size, and N, D
for a compute budget) lives in ``state_dict()["prediction"]``. With ``run_target: true`` the target
run is proposed last with the predicted hyperparameters and the state records predicted vs observed.

With a single ``tokens`` (or ``steps``) budget every rung trains on the target's tokens, and the
laws are fitted at that D: L(N) = E + A/N^α (``fit_size_law``; the data term folds into E) and
lr* = c·N^a. This is the design for predicting one target run: at a few hundred steps these small
models are step-limited, so a longer budget helps a larger model much more than a smaller one,
and the additive Chinchilla form fitted over short and long budgets extrapolates N poorly at the
target's D (the short cells flatten the N term). The target must then train on that D.

N is the trial's reported ``params_non_embedding`` by default (``size_metric``): Kaplan et al. found
the non-embedding count gives cleaner laws across shapes, and in byte-level models of width 16-64
the token and position embeddings are 15-35% of all parameters while doing almost none of the
compute (the trainer's FLOPs are 6·non-embedding·tokens plus attention). D is the reported
``tokens``. A compute target C is split with C = 6·N·D in those units.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from analysis.scaling import law_at
from search.algorithms.base import Algorithm, History, Proposal
from storage.read_api import json_safe
from storage.records import TrialRecord, TrialState
# N and the heads rule come from the model's own definition (``ByteLM``), not a copy of it.
from trials.models import lm_heads as heads_for
from trials.models import lm_param_counts

__all__ = ["ScalingLadder"]

SIZE_METRICS = ("params_non_embedding", "params")
BUDGET_KEYS = ("tokens_per_param", "tokens", "steps")
_OPTIONS = ("target", "rungs", *BUDGET_KEYS, "lrs", "batch_sizes", "context", "head_dim", "size_metric",
            "early_stop", "run_target", "bootstrap", "seeds")
_FIT_MIN_CELLS = 5  # the Chinchilla form has 5 parameters
_SIZE_LAW_MIN_RUNGS = 4  # the one-budget size law E + A/N^alpha has 3


def _err(option: str, msg: str) -> ValueError:
    return ValueError(f"scaling option '{option}' {msg}")


def _positive_list(value: Any, option: str, *, integer: bool = False) -> list[float]:
    example = "[16, 32]" if integer else "[1e-3, 3e-3, 1e-2]"
    if not isinstance(value, (list, tuple)) or not value:
        raise _err(option, f"must be a non-empty list such as {example}, got {value!r}")
    out = []
    for v in value:
        ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) and v > 0
        if not ok or (integer and not float(v).is_integer()):
            kind = "positive integers" if integer else "positive numbers"
            raise _err(option, f"must hold {kind}, got {v!r} in {list(value)!r}")
        out.append(int(v) if integer else float(v))
    if len(set(out)) != len(out):
        raise _err(option, f"must not repeat values, got {list(value)!r}")
    return sorted(out)


# Past these the ladder describes no model this service can train, and planning it would take
# time proportional to the number (the heads rule searches the width's divisors).
MAX_LAYERS, MAX_WIDTH = 4096, 1 << 20


def _positive_int(value: Any, option: str, at_most: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _err(option, f"must be an integer >= 1, got {value!r}")
    if at_most is not None and value > at_most:
        raise _err(option, f"must be at most {at_most}, got {value!r}")
    return value


def _flag(value: Any, option: str) -> bool:
    if not isinstance(value, bool):
        raise _err(option, f"must be true or false, got {value!r}")
    return value


def _architecture(spec: Any, option: str, head_dim: int) -> list[dict[str, Any]]:
    if not isinstance(spec, Mapping):
        raise _err(option, f"must be a mapping like {{layers: 2, width: 32}}, got {spec!r}")
    unknown = sorted(set(spec) - {"layers", "width", "heads", "ffn"})
    if unknown:
        raise _err(option, f"has unknown key {unknown[0]!r}; a rung is {{layers, width, heads, ffn}}")
    for key in ("layers", "width"):
        if key not in spec:
            raise _err(option, f"needs '{key}', e.g. {{layers: 2, width: 32}}")
    layers = _positive_int(spec["layers"], f"{option}.layers", MAX_LAYERS)
    width = _positive_int(spec["width"], f"{option}.width", MAX_WIDTH)
    heads = _positive_int(spec.get("heads", heads_for(width, head_dim)), f"{option}.heads", width)
    ffn = _positive_int(spec.get("ffn", 4 * width), f"{option}.ffn", 4 * MAX_WIDTH)
    if width % heads:
        raise _err(f"{option}.heads", f"must divide the width: width {width} is not a multiple of heads {heads}")
    return [{"op": "attention", "width": width, "heads": heads, "ffn": ffn} for _ in range(layers)]


def _key(layers: Any, steps: Any, batch_size: Any, lr: Any, seed: Any = None) -> str:
    return json.dumps([layers, steps, batch_size, lr] + ([] if seed is None else [seed]), sort_keys=True)


@dataclass(frozen=True)
class _Cell:
    index: int
    rung: int
    budget: int
    layers: tuple[dict[str, Any], ...]
    n_planned: int
    tokens: float
    steps: tuple[int, ...]  # per batch size

    @property
    def compute(self) -> float:
        return 6.0 * self.n_planned * self.tokens


def _walk(status: Mapping[int, float | None], size: int, start: int, exhaustive: bool) -> tuple[list[int], bool]:
    """Indices to try next on a line of ``size`` values and whether the line is finished.

    ``status`` maps tried indices to their loss (None while pending, inf when failed). The walk
    starts at ``start`` and moves to the untried neighbours of the best finished point; the line is
    finished when nothing is pending and both neighbours of the best were tried.
    """
    untried = [i for i in range(size) if i not in status]
    pending = any(v is None for v in status.values())
    if exhaustive:
        return untried, not untried and not pending
    done = {i: v for i, v in status.items() if v is not None}
    if not done:
        return ([start] if start not in status else []), False
    best = min(done, key=lambda i: (done[i], i))
    todo = [i for i in (best - 1, best + 1) if 0 <= i < size and i not in status]
    return todo, not todo and not pending


def _vertex(xs: Sequence[float], ys: Sequence[float], best: int) -> tuple[float, float, str]:
    """(x*, y*) of the parabola through the best point and its two neighbours in x, or the best
    point itself when it has no neighbour on one side (optimum at the end of the sweep)."""
    if not 0 < best < len(xs) - 1:
        return xs[best], ys[best], "best swept point (at the end of the sweep)"
    if not all(math.isfinite(y) for y in ys[best - 1:best + 2]):
        return xs[best], ys[best], "best swept point (a neighbour failed)"
    (x0, x1, x2), (y0, y1, y2) = xs[best - 1:best + 2], ys[best - 1:best + 2]
    d1, d2 = (y1 - y0) / (x1 - x0), (y2 - y1) / (x2 - x1)
    curv = (d2 - d1) / (x2 - x0)
    if curv <= 0:
        return x1, y1, "best swept point (flat bracket)"
    x = 0.5 * (x0 + x1) - d1 / (2.0 * curv)
    x = min(max(x, x0), x2)
    y = y0 + d1 * (x - x0) + curv * (x - x0) * (x - x1)  # Newton form through the three points
    return x, min(y, y1), "parabola through the best point and its neighbours"


class ScalingLadder(Algorithm):
    """Plan a scaling ladder, walk each cell's learning rates until the optimum is pinned, fit
    loss and hyperparameter laws, predict (and optionally run) the target. See the module doc."""

    name = "scaling"

    def __init__(self, space, metrics, directions, seed=None, *, target: Any = None, rungs: Any = None,
                 tokens_per_param: Any = None, tokens: Any = None, steps: Any = None, lrs: Any = None,
                 batch_sizes: Any = (32,), context: Any = 64, head_dim: Any = 16,
                 size_metric: Any = "params_non_embedding", early_stop: Any = True, run_target: Any = False,
                 bootstrap: Any = 200, seeds: Any = 1, **unknown: Any) -> None:
        super().__init__(space, metrics, directions, seed)
        if unknown:
            raise ValueError(f"algorithm 'scaling' takes no option {sorted(unknown)[0]!r}; "
                             f"known options: {', '.join(_OPTIONS)}")
        if len(space):
            raise ValueError(f"algorithm 'scaling' plans its own trials and uses no space; remove space "
                             f"(declared: {', '.join(p.name for p in space.params)})")
        if directions[0] != "minimize":
            raise ValueError(f"algorithm 'scaling' fits a loss: the first objective {metrics[0]!r} must be "
                             f"minimized, got direction {directions[0]!r}")
        self.context = _positive_int(context, "context")
        self.head_dim = _positive_int(head_dim, "head_dim")
        if size_metric not in SIZE_METRICS:
            raise _err("size_metric", f"must be one of {', '.join(SIZE_METRICS)}, got {size_metric!r}")
        self.size_metric = size_metric
        self.early_stop = _flag(early_stop, "early_stop")
        self.run_target = _flag(run_target, "run_target")
        if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 0:
            raise _err("bootstrap", f"must be an integer >= 0, got {bootstrap!r}")
        self.bootstrap = bootstrap
        # seeds > 1: every point (and the target) trains with trial seeds 0..seeds-1 (initialisation
        # and batch order; the train/validation split stays the study's) and counts their mean loss.
        self.seeds = _positive_int(seeds, "seeds", 1000)
        self._seed_values: tuple[int | None, ...] = (None,) if self.seeds == 1 else tuple(range(self.seeds))
        if lrs is None:
            raise _err("lrs", "is required: the learning rates to sweep, e.g. lrs: [1e-3, 2e-3, 4e-3, 8e-3]")
        self.lrs = _positive_list(lrs, "lrs")
        self.batch_sizes = [int(b) for b in _positive_list(batch_sizes, "batch_sizes", integer=True)]
        if not isinstance(rungs, (list, tuple)) or len(rungs) < 2:
            raise _err("rungs", f"must list at least 2 model sizes like [{{layers: 2, width: 16}}, "
                                f"{{layers: 2, width: 32}}], got {rungs!r}")
        self.rungs = [_architecture(r, f"rungs[{i}]", self.head_dim) for i, r in enumerate(rungs)]
        sizes = [self._size(r) for r in self.rungs]
        if len(set(sizes)) != len(sizes):
            raise _err("rungs", f"must be distinct model sizes, got {self.size_metric} {sizes}")
        given = {k: v for k, v in (("tokens_per_param", tokens_per_param), ("tokens", tokens), ("steps", steps))
                 if v is not None}
        if len(given) != 1:
            raise ValueError(f"algorithm 'scaling' needs exactly one token budget of {', '.join(BUDGET_KEYS)} "
                             f"(a list, e.g. tokens_per_param: [5, 10, 20]), got {sorted(given) or 'none'}")
        (self.budget_key, raw_budget), = given.items()
        self.budgets = _positive_list(raw_budget, self.budget_key, integer=self.budget_key == "steps")
        # One budget in tokens or steps: every rung trains on the target's tokens and the loss law
        # is L(N) = E + A/N^alpha at that D (no data term to extrapolate); several budgets fit the
        # Chinchilla law in N and D.
        self.fixed_d = len(self.budgets) == 1
        if self.fixed_d and self.budget_key == "tokens_per_param":
            raise _err(self.budget_key, f"needs at least 2 values so that N and D vary independently (one "
                                        f"tokens_per_param value ties D to N), got {list(self.budgets)}; give "
                                        f"tokens: [D] to train every rung on the target's D")
        if self.fixed_d and len(self.rungs) < _SIZE_LAW_MIN_RUNGS:
            raise _err("rungs", f"with one token budget the loss law L(N) = E + A/N^alpha needs at least "
                                f"{_SIZE_LAW_MIN_RUNGS} model sizes, got {len(self.rungs)}; add rungs")
        if self.budget_key == "steps" and len(self.batch_sizes) > 1:
            raise _err("steps", "fixes the tokens only for one batch size; with several batch_sizes give "
                                "tokens_per_param or tokens")
        self.cells = self._plan()
        if not self.fixed_d and len(self.cells) < _FIT_MIN_CELLS:
            raise ValueError(f"algorithm 'scaling' needs at least {_FIT_MIN_CELLS} (rung, budget) cells for the "
                             f"5-parameter loss law, got {len(self.rungs)} rungs x {len(self.budgets)} budgets")
        self.target = self._parse_target(target)
        if self.fixed_d:
            d_ladder = self.cells[0].tokens
            if "compute" in self.target:
                raise _err("target", "compute needs the data term of a ladder over several token budgets; with one "
                                     "budget give the target's size and tokens, e.g. {layers: 2, width: 48, tokens: D}")
            if abs(self.target["tokens"] / d_ladder - 1.0) > 0.01:
                raise _err("target.tokens", f"must equal the ladder's one token budget D={d_ladder:.6g} (the law is "
                                            f"fitted at that D), got {self.target['tokens']:.6g}; set "
                                            f"target.tokens to {d_ladder:.6g} or give several budgets")
        # Derived from history on every call; kept only to skip refits that would give the same answer.
        self._fit_key: tuple | None = None
        self._fit_state: dict[str, Any] = {}
        self._saved_final: dict[str, Any] | None = None
        self._state: dict[str, Any] = {}
        self._proposals: list[Proposal] = []
        self._all_done = False

    # -- plan -----------------------------------------------------------------------------------

    def _size(self, layers: Sequence[Mapping[str, Any]]) -> int:
        total, non_emb = lm_param_counts(layers, self.context)
        return non_emb if self.size_metric == "params_non_embedding" else total

    def _steps_for(self, tokens: float, bs: int) -> int:
        return max(1, math.ceil(tokens / (bs * self.context)))

    def _plan(self) -> list[_Cell]:
        cells = []
        for r, layers in enumerate(self.rungs):
            n = self._size(layers)
            for b, budget in enumerate(self.budgets):
                if self.budget_key == "steps":
                    tokens = float(budget * self.batch_sizes[0] * self.context)
                else:
                    tokens = float(budget * n if self.budget_key == "tokens_per_param" else budget)
                steps = tuple(int(budget) if self.budget_key == "steps" else self._steps_for(tokens, bs)
                              for bs in self.batch_sizes)
                cells.append(_Cell(0, r, b, tuple(layers), n, tokens, steps))
        cells.sort(key=lambda c: (c.compute, c.rung, c.budget))
        cells = [_Cell(i, c.rung, c.budget, c.layers, c.n_planned, c.tokens, c.steps) for i, c in enumerate(cells)]
        # Trials are matched to cells by (layers, steps, batch size, lr), so these must not collide.
        seen: set[tuple[int, int, int]] = set()
        for c in cells:
            for steps, bs in zip(c.steps, self.batch_sizes):
                if (c.rung, steps, bs) in seen:
                    raise _err(self.budget_key, f"gives rung {c.rung} the same {steps} steps at batch size {bs} for "
                                                "two budgets; spread the values further apart")
                seen.add((c.rung, steps, bs))
        return cells

    def _parse_target(self, target: Any) -> dict[str, Any]:
        if not isinstance(target, Mapping) or not target:
            raise _err("target", f"is required: {{params: N, tokens: D}}, {{compute: C}} or "
                                 f"{{layers: L, width: W, tokens_per_param: R}}, got {target!r}")
        t = dict(target)
        known = {"params", "tokens", "tokens_per_param", "compute", "layers", "width", "heads", "ffn"}
        unknown = sorted(set(t) - known)
        if unknown:
            raise _err("target", f"has unknown key {unknown[0]!r}; known keys: {', '.join(sorted(known))}")

        def number(key: str) -> float:
            v = t[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise _err(f"target.{key}", f"must be a positive number, got {v!r}")
            return float(v)

        arch = {k: t.pop(k) for k in ("layers", "width", "heads", "ffn") if k in t}
        if "compute" in t:
            if set(t) != {"compute"}:
                raise _err("target", f"compute fixes N and D itself; remove {sorted(set(t) - {'compute'})}")
            out: dict[str, Any] = {"compute": number("compute"), "layers_count": arch.get("layers")}
            if set(arch) - {"layers"}:
                raise _err("target", "with compute only 'layers' may shape the model; width follows from the optimal N")
            if arch.get("layers") is not None:
                _positive_int(arch["layers"], "target.layers")
            return out
        if arch:
            layers = _architecture(arch, "target", self.head_dim)
            n = float(self._size(layers))
            if "params" in t:
                raise _err("target", "give params or an architecture (layers, width), not both")
        elif "params" in t:
            layers, n = None, number("params")
        else:
            raise _err("target", "needs params: N (or layers and width), or compute: C")
        budgets = [k for k in ("tokens", "tokens_per_param") if k in t]
        if len(budgets) != 1:
            raise _err("target", f"needs exactly one of tokens or tokens_per_param, got {budgets or 'none'}")
        d = number("tokens") if "tokens" in t else number("tokens_per_param") * n
        return {"params": n, "tokens": d, "layers": layers}

    # -- history --------------------------------------------------------------------------------

    def _index(self) -> dict[str, tuple[int, int, int, int | None]]:
        out = {}
        for c in self.cells:
            for j, bs in enumerate(self.batch_sizes):
                for i, lr in enumerate(self.lrs):
                    for seed in self._seed_values:
                        out[_key(list(c.layers), c.steps[j], bs, lr, seed)] = (c.index, j, i, seed)
        return out

    def _trial_key(self, t: TrialRecord) -> str:
        p = t.params
        seed = p.get("seed") if self.seeds > 1 else None
        return _key(p.get("layers"), p.get("steps"), p.get("batch_size"), p.get("lr"), seed)

    @staticmethod
    def _mean_loss(losses: Sequence[float | None]) -> float | None:
        """A point's loss over its seeds: None while any is pending, inf if any failed."""
        if any(v is None for v in losses):
            return None
        return sum(losses) / len(losses)  # type: ignore[arg-type]

    def _loss(self, history: History, t: TrialRecord) -> float | None:
        if t.state == TrialState.COMPLETE:
            v = history.signed_value(t)
            return float(v) if v is not None and math.isfinite(v) else math.inf
        if t.state in (TrialState.FAILED, TrialState.PRUNED):
            return math.inf  # a diverged learning rate is a rise in the loss
        return None

    def _gather(self, history: History) -> tuple[dict[int, dict[int, dict[int, tuple[float | None, TrialRecord]]]],
                                                 dict[int, dict[tuple[int, int], list[Any]]], list[TrialRecord]]:
        """cell -> batch index -> lr index -> (mean loss over seeds or None, first seed's trial);
        cell -> (batch index, lr index) -> seeds not yet proposed; and trials outside the grid."""
        index = self._index()
        by_seed: dict[int, dict[int, dict[int, dict[Any, tuple[float | None, TrialRecord]]]]] = {}
        other = []
        for t in history.trials:
            where = index.get(self._trial_key(t))
            if where is None:
                other.append(t)
                continue
            c, j, i, seed = where
            by_seed.setdefault(c, {}).setdefault(j, {}).setdefault(i, {})[seed] = (self._loss(history, t), t)
        grid: dict[int, dict[int, dict[int, tuple[float | None, TrialRecord]]]] = {}
        missing: dict[int, dict[tuple[int, int], list[Any]]] = {}
        for c, lines in by_seed.items():
            for j, points in lines.items():
                for i, runs in points.items():
                    absent = [s for s in self._seed_values if s not in runs]
                    if absent:
                        missing.setdefault(c, {})[(j, i)] = absent
                    losses = [runs[s][0] if s in runs else None for s in self._seed_values]
                    first = runs[min(runs, key=lambda s: -1 if s is None else s)][1]
                    grid.setdefault(c, {}).setdefault(j, {})[i] = (self._mean_loss(losses), first)
        return grid, missing, other

    # -- the walk -------------------------------------------------------------------------------

    def _line(self, points: Mapping[int, tuple[float | None, TrialRecord]], start: int) -> tuple[list[int], bool]:
        return _walk({i: v for i, (v, _) in points.items()}, len(self.lrs), start, not self.early_stop)

    def _line_optimum(self, points: Mapping[int, tuple[float | None, TrialRecord]]) -> dict[str, Any]:
        tried = sorted(points)
        losses = [points[i][0] for i in tried]
        best_pos = min(range(len(tried)), key=lambda k: (losses[k], tried[k]))
        # the parabola needs the best point's grid neighbours; use only contiguous tried indices
        ok = 0 < best_pos < len(tried) - 1 and tried[best_pos - 1] == tried[best_pos] - 1 \
            and tried[best_pos + 1] == tried[best_pos] + 1
        xs = [math.log(self.lrs[i]) for i in tried]
        if ok:
            x, y, how = _vertex(xs, losses, best_pos)
        else:
            x, y, how = xs[best_pos], losses[best_pos], "best swept point (at the end of the sweep)"
        best_trial = points[tried[best_pos]][1]
        return {"lr": math.exp(x), "loss": y, "lr_method": how, "best_trial": best_trial.number,
                "best_lr_index": tried[best_pos], "trials": len(tried), "trial": best_trial}

    def _cell_status(self, cell: _Cell, lines: Mapping[int, Mapping[int, tuple[float | None, TrialRecord]]],
                     lr_start: int) -> tuple[list[tuple[int, int]], dict[str, Any] | None]:
        """(batch index, lr index) pairs to try next, and the cell's optimum once it is finished."""
        todo: list[tuple[int, int]] = []
        line_status: dict[int, float | None] = {}
        optima: dict[int, dict[str, Any]] = {}
        for j, points in lines.items():
            nxt, finished = self._line(points, lr_start)
            todo += [(j, i) for i in nxt]
            if finished:
                optima[j] = self._line_optimum(points)
                line_status[j] = optima[j]["loss"]
            else:
                line_status[j] = None
        bs_start = len(self.batch_sizes) // 2
        nxt, finished = _walk(line_status, len(self.batch_sizes), bs_start, not self.early_stop)
        todo += [(j, lr_start) for j in nxt]
        if not finished:
            return todo, None
        order = sorted(optima)
        losses = [optima[j]["loss"] for j in order]
        best_pos = min(range(len(order)), key=lambda k: (losses[k], order[k]))
        contiguous = 0 < best_pos < len(order) - 1 and order[best_pos + 1] - order[best_pos - 1] == 2
        xs = [math.log(self.batch_sizes[j] * self.context) for j in order]
        x, y, how = (_vertex(xs, losses, best_pos) if contiguous else
                     (xs[best_pos], losses[best_pos], "best swept batch size (at the end of the sweep)"))
        best = optima[order[best_pos]]
        trial = best.pop("trial")
        for o in optima.values():
            o.pop("trial", None)
        n = trial.metrics.get(self.size_metric)
        d = trial.metrics.get("tokens")
        return [], {
            "N": float(n) if n is not None else float(cell.n_planned),
            "N_source": f"reported {self.size_metric}" if n is not None else "planned (trial reported none)",
            "D": float(d) if d is not None else cell.tokens,
            "D_source": "reported tokens" if d is not None else "planned (trial reported none)",
            "loss": min(y, best["loss"]), "lr": best["lr"], "lr_method": best["lr_method"],
            "batch_size": math.exp(x), "batch_size_method": how,
            "lines": {str(self.batch_sizes[j]): optima[j] for j in order},
        }

    def _lr_start(self, cell: _Cell, finished: Mapping[int, dict[str, Any]]) -> int:
        """The sweep index nearest the tuned lr of the nearest finished cell (in log N, log D)."""
        if not finished:
            return len(self.lrs) // 2
        def dist(k: int) -> tuple[float, int]:
            o = self.cells[k]
            return (math.log(o.n_planned / cell.n_planned) ** 2 + math.log(o.tokens / cell.tokens) ** 2, k)
        lr = finished[min(finished, key=dist)]["lr"]
        return min(range(len(self.lrs)), key=lambda i: (abs(math.log(self.lrs[i] / lr)), i))

    def _analyse(self, history: History) -> tuple[list[Proposal], dict[int, dict[str, Any]], dict[int, int], list[TrialRecord]]:
        grid, missing, other = self._gather(history)
        finished: dict[int, dict[str, Any]] = {}
        proposals: list[Proposal] = []
        tried = {}
        for cell in self.cells:
            lines = grid.get(cell.index, {})
            tried[cell.index] = sum(len(p) for p in lines.values())
            todo, optimum = self._cell_status(cell, lines, self._lr_start(cell, finished))
            if optimum is not None:
                finished[cell.index] = optimum
            # a point some of whose seeds were never proposed (e.g. an interrupted proposal batch)
            todo_seeds = [(j, i, s) for (j, i), seeds in missing.get(cell.index, {}).items() for s in seeds]
            todo_seeds += [(j, i, s) for j, i in todo for s in self._seed_values]
            for j, i, seed in todo_seeds:
                params = {"layers": [dict(s) for s in cell.layers], "steps": cell.steps[j],
                          "batch_size": self.batch_sizes[j], "lr": self.lrs[i], "context": self.context}
                if seed is not None:
                    params["seed"] = seed
                proposals.append(Proposal(params))
        return proposals, finished, tried, other

    # -- fits and the prediction ----------------------------------------------------------------

    def _fit(self, finished: Mapping[int, dict[str, Any]], final: bool) -> dict[str, Any]:
        import numpy as np

        from surrogates.scaling import Runs, ScalingDataError, fit_chinchilla, fit_size_law, fit_step_law

        points = [o for o in finished.values() if math.isfinite(o["loss"])]
        out: dict[str, Any] = {"cells_fitted": len(points), "final": final}
        need = _SIZE_LAW_MIN_RUNGS if self.fixed_d else _FIT_MIN_CELLS
        if len(points) < need:
            out["error"] = f"{len(points)} finished cells with a finite loss; the loss law needs {need}"
            return out
        n = np.array([p["N"] for p in points])
        d = np.array([p["D"] for p in points])
        runs = Runs(N=n, D=d, C=6.0 * n * d, loss=np.array([p["loss"] for p in points]),
                    lr=np.array([p["lr"] for p in points]), batch_size=np.array([p["batch_size"] for p in points]))
        try:
            if self.fixed_d:
                # Cells report D from their own steps; at one budget they share it up to rounding.
                runs = Runs(N=runs.N, D=np.full_like(runs.D, self.cells[0].tokens), C=runs.C, loss=runs.loss,
                            lr=runs.lr, batch_size=runs.batch_size)
                chin = fit_size_law(runs, n_bootstrap=self.bootstrap if final else 0, seed=self.seed or 0)
            else:
                # Provisional fits only keep the report current: 20 of the grid's best starts find
                # the same optimum on the Epoch AI data, and they skip the bootstrap.
                chin = fit_chinchilla(runs, n_bootstrap=self.bootstrap if final else 0, seed=self.seed or 0,
                                      n_starts=100 if final else 20)
        except ScalingDataError as exc:
            out["error"] = str(exc)
            return out
        out["loss_law"] = chin.to_dict()
        warnings = []
        for name, var in (("alpha", "N"),) if self.fixed_d else (("alpha", "N"), ("beta", "D")):
            value = chin.params[name]
            if not value > 0:
                warnings.append(f"fitted {name}={value:.3g} is not positive: the tuned loss does not fall with {var} "
                                "across the ladder, so the extrapolation is not trustworthy; train the rungs longer "
                                "or spread their sizes further")
            elif value >= 2.0 - 1e-9:
                # Epoch AI's start grid stops at 2; beyond it the term is a step, not a power law.
                warnings.append(f"fitted {name}={value:.3g} is at or above 2: the {var} term is degenerate (it vanishes past "
                                "the ladder), so the extrapolation is not trustworthy; train the rungs longer or "
                                "spread their sizes further")
        try:
            # one row per cell: fit_step_law takes it as the cell's optimum and fits the laws over cells
            law = fit_step_law(runs)
        except ScalingDataError as exc:
            law = None
            out["hparam_law_error"] = str(exc)
        if law is not None:
            out["hparam_law"] = {
                "form": "step-law", "formula": "lr = lr_coef * N**lr_N_exp * D**lr_D_exp; batch_size = bs_coef * D**bs_D_exp",
                "constants": law.constants, "rmse_log_lr": law.rmse_log_lr, "rmse_log_batch_size": law.rmse_log_bs,
                "fitted_to": "per-cell tuned lr and batch size (tokens per step), least squares in log space",
                "lr_interval": "95% t-interval of the lr law at the target from the scatter of the cells' tuned lr "
                               "about it (the law's uncertainty, not the width of the target's flat region)",
            }
        out["prediction"] = self._predict(chin, law)
        out["prediction"]["extrapolation"] = {"N": out["prediction"]["N"] / float(n.max()),
                                              "D": out["prediction"]["D"] / float(d.max())}
        out["warnings"] = warnings
        return out

    def _predict(self, chin: Any, law: Any) -> dict[str, Any]:
        t = self.target
        pred: dict[str, Any] = {}
        if "compute" in t:
            opt = chin.compute_optimal(t["compute"])
            n, d = float(opt["N"]), float(opt["D"])
            pred.update(compute=t["compute"], N=n, D=d, tokens_per_param=d / n,
                        N_interval=list(opt["intervals"]["N"]), D_interval=list(opt["intervals"]["D"]))
        else:
            n, d = t["params"], t["tokens"]
            pred.update(N=n, D=d)
        loss, low, high = chin.predict(n) if self.fixed_d else chin.predict(n, d)
        pred.update(loss=float(loss), loss_interval=[float(low), float(high)],
                    interval="bootstrap 95% of the fitted law over cells (not run-to-run noise)")
        if law is not None:
            hp = law.predict(n, d)
            low, high = law.lr_interval(n, d)
            pred.update(lr=float(hp["lr"]), lr_interval=[float(low), float(high)],
                        batch_size_tokens=float(hp["batch_size"]),
                        batch_size=max(1, round(float(hp["batch_size"]) / self.context)))
        return pred

    def _target_params(self, pred: Mapping[str, Any]) -> dict[str, Any] | None:
        if "lr" not in pred:
            return None
        layers = self.target.get("layers")
        if layers is None:
            depth = self.target.get("layers_count") or len(self.rungs[-1])
            layers = self._width_for(pred["N"], depth)
        bs = int(pred["batch_size"])
        return {"layers": [dict(s) for s in layers], "steps": self._steps_for(pred["D"], bs), "batch_size": bs,
                "lr": float(pred["lr"]), "context": self.context}

    def _width_for(self, n: float, depth: int) -> list[dict[str, Any]]:
        """The homogeneous model of ``depth`` layers whose size is nearest N (in log)."""
        best = None
        for w in range(4, 8193, 4):
            layers = _architecture({"layers": depth, "width": w}, "target", self.head_dim)
            gap = abs(math.log(self._size(layers) / n))
            if best is None or gap < best[0]:
                best = (gap, layers)
        return best[1]  # type: ignore[index]

    def _refresh(self, history: History) -> None:
        proposals, finished, tried, other = self._analyse(history)
        all_done = len(finished) == len(self.cells)
        key = (all_done, tuple(sorted((k, v["loss"], v["lr"], v["batch_size"]) for k, v in finished.items())))
        if key != self._fit_key:
            if all_done and self._saved_final is not None:
                self._fit_state = self._saved_final
            else:
                self._fit_state = self._fit(finished, final=all_done)
            self._fit_key = key
        planned = len(self.lrs) * len(self.batch_sizes)
        cells = []
        for c in self.cells:
            row: dict[str, Any] = {"cell": c.index, "rung": c.rung, "layers": len(c.layers), "width": c.layers[0]["width"],
                                   "N_planned": c.n_planned, "D_planned": c.tokens, "steps": list(c.steps),
                                   "trials": tried[c.index], "grid": planned, "finished": c.index in finished}
            if c.index in finished:
                row.update({k: v for k, v in finished[c.index].items() if k != "lines"})
                row["lines"] = finished[c.index]["lines"]
                row["skipped"] = planned - tried[c.index]
            cells.append(row)
        state: dict[str, Any] = {
            "version": 1, "method": "scaling-ladder", "objective": self.metrics[0], "size_metric": self.size_metric,
            "target": {k: v for k, v in self.target.items() if k not in ("layers", "layers_count")},
            "cells_finished": len(finished), "cells": cells,
            "seeds": self.seeds, "trials_run": sum(tried.values()) * self.seeds,
            "trials_planned_grid": planned * len(self.cells) * self.seeds,
            "fit": {k: v for k, v in self._fit_state.items() if k != "prediction"},
            "warnings": list(self._fit_state.get("warnings", [])) + [
                f"cell {c['cell']} (width {c['width']}, D={c['D']:.4g}): the best lr {c['lr']:.4g} is at the end of "
                "the sweep; extend lrs" for c in cells if c["finished"] and c["lr_method"].endswith("end of the sweep)")],
            "prediction": self._fit_state.get("prediction"),
        }
        if self.run_target and all_done and state["prediction"]:
            state["target_run"] = self._target_record(history, state["prediction"], other)
        state["complete"] = all_done and (not self.run_target or "observed_loss" in state.get("target_run", {}))
        self._state = json_safe(state)
        self._proposals = proposals
        self._all_done = all_done

    def _target_record(self, history: History, pred: Mapping[str, Any], other: list[TrialRecord]) -> dict[str, Any]:
        params = self._target_params(pred)
        if params is None:
            return {"error": "no hyperparameter law was fitted; the target run cannot be planned"}
        rec: dict[str, Any] = {"params": {k: v for k, v in params.items() if k != "layers"},
                               "width": params["layers"][0]["width"], "layers": len(params["layers"]),
                               "predicted_loss": pred["loss"], "predicted_interval": pred["loss_interval"]}
        keys = {self._trial_key_of(params, seed): seed for seed in self._seed_values}
        found = {keys[k]: t for t in other if (k := self._trial_key(t)) in keys}
        if not found:
            rec["status"] = "not started"
            return rec
        trials = [found[s] for s in self._seed_values if s in found]
        rec["trial"] = trials[0].number
        rec["seeds_not_started"] = [s for s in self._seed_values if s not in found]
        if self.seeds > 1:
            rec["trials"] = [t.number for t in trials]
        done = [t for t in trials if t.state == TrialState.COMPLETE and t.values]
        rec["status"] = TrialState.COMPLETE if len(done) == self.seeds else next(
            (t.state for t in trials if t.state != TrialState.COMPLETE), TrialState.RUNNING)
        if len(done) == self.seeds:
            losses = [float(t.values[0]) for t in done]
            observed = sum(losses) / len(losses)
            n = done[0].metrics.get(self.size_metric, pred["N"])
            d = done[0].metrics.get("tokens", pred["D"])
            loss_law = self._fit_state.get("loss_law")
            at_observed = law_at(loss_law, float(n), float(d)) if loss_law else pred["loss"]
            rec.update(observed_loss=observed, observed_N=float(n), observed_D=float(d),
                       predicted_loss_at_observed_N_D=at_observed,
                       relative_error=(at_observed - observed) / observed)
            if self.seeds > 1:
                rec["observed_losses"] = losses
        return rec

    def _trial_key_of(self, params: Mapping[str, Any], seed: int | None = None) -> str:
        return _key(params["layers"], params["steps"], params["batch_size"], params["lr"], seed)

    # -- the contract ---------------------------------------------------------------------------

    def propose(self, history: History, n: int) -> list[Proposal]:
        self._refresh(history)
        out = self._proposals[:n]
        if out or not self._all_done or not self.run_target:
            return out
        run = self._state.get("target_run") or {}
        todo = list(self._seed_values) if run.get("status") == "not started" else run.get("seeds_not_started", [])
        params = self._target_params(self._state["prediction"]) if todo else None
        if params is None:
            return []
        return [Proposal(params if seed is None else {**params, "seed": seed}) for seed in todo][:n]

    def on_complete(self, history: History, trial: TrialRecord) -> None:
        self._refresh(history)

    def state_dict(self) -> dict[str, Any]:
        return dict(self._state)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        # A finished ladder's fit is reused as recorded, so a resumed study runs the target with
        # exactly the hyperparameters the report shows (and skips the bootstrap refits).
        fit = state.get("fit") or {}
        if fit.get("final") and state.get("prediction"):
            self._saved_final = {**fit, "prediction": state["prediction"]}
        self._state = dict(state)

