"""Neural architecture search strategies: regularized evolution and BOSHNAS, optionally warm-started
by a zero-cost proxy.

Both work over any space: architecture parameters (``search.arch_spaces``) mutate with their own
``mutate``; ordinary parameters are redrawn from their prior. Neither keeps state between calls:
each ``propose`` rebuilds everything from ``History`` with a random stream seeded by
``(seed, number of trials so far)``, so a resumed study proposes what an uninterrupted one would,
and equal seeds give equal studies.

Multi-objective studies (several ``objective`` entries, e.g. validation loss and parameter count)
are handled by non-dominated sorting (regevo's tournaments) and by random Chebyshev scalarisation
(ParEGO, Knowles 2006) of the objectives for BOSHNAS's surrogate; ``search pareto`` reads the front.
"""
from __future__ import annotations

import json
import math
from contextlib import contextmanager
from typing import Any, Mapping, Sequence

from analysis.pareto import pareto_ranks
from search.algorithms.base import Algorithm, History, Proposal
from search.arch_spaces import NasBench201Param, is_arch_param
from search.space import CategoricalParam, FloatParam, Space
from storage.records import TrialRecord, TrialState

__all__ = ["RegularizedEvolution", "Boshnas", "mutate_config", "config_key"]

ZERO_COST_PROXIES = ("synflow", "grad_norm", "naswot", "gradsign")
ACQUISITIONS = ("ucb", "thompson")


def config_key(config: Mapping[str, Any]) -> str:
    """A canonical string for a configuration (architectures included), for duplicate checks."""
    return json.dumps(config, sort_keys=True, default=repr)


def mutate_config(space: Space, config: Mapping[str, Any], rng) -> dict[str, Any]:
    """One local change: one parameter (an architecture mutates one edge or layer field; any other
    parameter is redrawn, a categorical to a different choice). Parameters that a condition
    switches on are drawn fresh; those it switches off are dropped."""
    active = [p for p in space if p.name in config]
    changeable = [p for p in active if not (isinstance(p, CategoricalParam) and len(p.choices) < 2)
                  and not (isinstance(p, FloatParam) and p.low == p.high)]
    out = dict(config)
    if changeable:
        p = changeable[int(rng.integers(len(changeable)))]
        if is_arch_param(p):
            out[p.name] = p.mutate(config[p.name], rng)
        elif isinstance(p, CategoricalParam):
            others = [c for c in p.choices if c != config[p.name]]
            out[p.name] = others[int(rng.integers(len(others)))]
        else:
            out[p.name] = p.sample(rng)
    fixed: dict[str, Any] = {}
    for p in space:
        if space.is_active(p, fixed):
            fixed[p.name] = out[p.name] if p.name in out else p.sample(rng)
    return fixed


@contextmanager
def _one_torch_thread():
    """The surrogate's MLPs are tiny: intra-op threads only contend (a fit measured 0.5 s on one
    thread against 8 s on two busy cores), so fit on one and restore the setting afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _NasAlgorithm(Algorithm):
    """Shared by the strategies here: option checks, the seeded stream, losses, the zero-cost pool."""

    _options: Mapping[str, Any] = {}

    def __init__(self, space: Space, metrics, directions, seed: int | None = None, **options: Any) -> None:
        super().__init__(space, metrics, directions, seed)
        unknown = sorted(set(options) - set(self._options))
        if unknown:
            raise ValueError(f"algorithm {self.name!r} takes no option {unknown[0]!r}; its options are "
                             f"{', '.join(sorted(self._options))}")
        opts = {**self._options, **options}
        for key, default in self._options.items():
            if isinstance(default, int) and not isinstance(default, bool):
                v = opts[key]
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise ValueError(f"option {key!r} of {self.name!r} must be an integer >= 1, got {v!r}")
            elif isinstance(default, float):
                v = opts[key]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                    raise ValueError(f"option {key!r} of {self.name!r} must be a number >= 0, got {v!r}")
                opts[key] = float(v)
        self.options = opts
        zc = opts.get("zero_cost")
        if zc is not None:
            if zc not in ZERO_COST_PROXIES:
                raise ValueError(f"option 'zero_cost' of {self.name!r} must be one of "
                                 f"{', '.join(ZERO_COST_PROXIES)} (or absent), got {zc!r}")
            if not any(isinstance(p, NasBench201Param) for p in space):
                raise ValueError(f"option 'zero_cost' of {self.name!r} scores NAS-Bench-201 cells; the space has "
                                 "no {type: nas-bench-201} parameter, so drop zero_cost")
        self._pool: list[dict[str, Any]] | None = None

    def _rng(self, history: History, salt: int = 0):
        import numpy as np

        return np.random.default_rng([self.seed or 0, len(history.trials), salt])

    def _losses(self, trial: TrialRecord, history: History) -> tuple[float, ...]:
        return tuple(history.signed_value(trial, i) for i in range(len(self.directions)))

    @staticmethod
    def _done(history: History) -> list[TrialRecord]:
        return [t for t in history.trials
                if t.state == TrialState.COMPLETE and t.values is not None
                and all(v is not None and math.isfinite(v) for v in t.values)]

    def _zero_cost_pool(self) -> list[dict[str, Any]]:
        """``zero_cost_pool`` random configurations, best proxy score first (the pool is drawn from the
        seed alone, so every call and every resume sees the same one)."""
        if self._pool is None:
            import numpy as np

            from trials.zero_cost import score_nb201

            rng = np.random.default_rng([self.seed or 0, 0x2C])
            configs = [self.space.sample(rng) for _ in range(self.options["zero_cost_pool"])]
            cell = next(p for p in self.space if isinstance(p, NasBench201Param))
            scores = [score_nb201(c[cell.name], self.options["zero_cost"], seed=self.seed or 0)
                      if cell.name in c else -math.inf for c in configs]
            order = sorted(range(len(configs)), key=lambda i: -scores[i])
            self._pool = [configs[i] for i in order]
        return self._pool

    def _initial(self, rng, seen: set[str], k: int) -> list[dict[str, Any]]:
        """``k`` starting configurations: the proxy's best unseen ones, else prior draws."""
        out: list[dict[str, Any]] = []
        if self.options.get("zero_cost"):
            for c in self._zero_cost_pool():
                if len(out) == k:
                    break
                if config_key(c) not in seen:
                    seen.add(config_key(c))
                    out.append(c)
        while len(out) < k:
            out.append(self._fresh(rng, seen))
        return out

    def _fresh(self, rng, seen: set[str], tries: int = 50) -> dict[str, Any]:
        c = self.space.sample(rng)
        for _ in range(tries):
            if config_key(c) not in seen:
                break
            c = self.space.sample(rng)
        seen.add(config_key(c))
        return c

    def _mutant(self, parent: Mapping[str, Any], rng, seen: set[str], tries: int = 20) -> dict[str, Any]:
        c = mutate_config(self.space, parent, rng)
        for _ in range(tries):
            if config_key(c) not in seen:
                break
            c = mutate_config(self.space, parent, rng)
        seen.add(config_key(c))
        return c


class RegularizedEvolution(_NasAlgorithm):
    """Regularized (aging) evolution, Real et al. 2019: the population is the ``population`` most
    recent completed trials (the oldest dies as each child arrives); each child mutates the winner
    of a tournament among ``sample`` members drawn at random. The first ``population`` trials are
    prior draws, or the best of a zero-cost-ranked pool with ``zero_cost: PROXY``.
    Children avoid configurations already tried when a few re-draws allow it."""

    name = "regevo"
    _options = {"population": 20, "sample": 5, "zero_cost": None, "zero_cost_pool": 200}

    def __init__(self, space, metrics, directions, seed=None, **options) -> None:
        super().__init__(space, metrics, directions, seed, **options)
        if self.options["sample"] > self.options["population"]:
            raise ValueError(f"option 'sample' of regevo must be <= population, got sample="
                             f"{self.options['sample']}, population={self.options['population']}")

    def propose(self, history: History, n: int) -> list[Proposal]:
        rng = self._rng(history)
        seen = {config_key(t.params) for t in history.trials}
        n_init = max(0, min(n, self.options["population"] - len(history.trials)))
        out = self._initial(rng, seen, n_init)
        population = self._done(history)[-self.options["population"]:]
        losses = [self._losses(t, history) for t in population]
        ranks = pareto_ranks(losses) if len(self.directions) > 1 else [0] * len(population)
        while len(out) < n:
            if not population:
                out.append(self._fresh(rng, seen))
                continue
            k = min(self.options["sample"], len(population))
            contenders = rng.choice(len(population), size=k, replace=False)
            # Multi-objective: the lowest front wins; within it, a random weighting of the
            # objectives breaks the tie, so the whole front gets to reproduce.
            w = rng.dirichlet([1.0] * len(self.directions))
            best = min(contenders, key=lambda i: (ranks[i], sum(wi * li for wi, li in zip(w, losses[i]))))
            out.append(self._mutant(population[int(best)].params, rng, seen))
        return [Proposal(c) for c in out]


class Boshnas(_NasAlgorithm):
    """BOSHNAS-style search (Tuli et al.): a deep-ensemble surrogate of heteroscedastic MLPs
    (``surrogates.ensemble.DeepEnsemble``) on an architecture encoding gives a mean, an epistemic
    (model) and an aleatoric (data noise) variance; candidates are ranked by the upper confidence
    bound  -mu + kappa * sigma_epistemic + kappa_aleatoric * sigma_aleatoric  (on the loss, which
    the surrogate sees through a Gaussian copula of its ranks, so outliers do not dominate the fit).

    Candidates: mutants (one and two local changes) of the ``parents`` best trials plus
    ``random_candidates`` prior draws, never a configuration already tried or pending.
    Batches: after each pick, candidates close to it or to a pending trial (in the encoding) lose
    acquisition (local penalisation), so parallel workers get distinct, spread-out proposals.
    The first ``n_init`` trials are prior draws (or a zero-cost proxy's best, ``zero_cost: PROXY``).

    Options: n_init, encoding (onehot, path, wl or onehot+path; see ``surrogates.arch_encoding``),
    kappa, kappa_aleatoric, acquisition (``ucb``, the rule above, or ``thompson``: kappa times the
    epistemic deviation times a standard normal draw per candidate, BANANAS's independent Thompson
    sampling), parents, mutants, random_candidates, members, epochs, zero_cost, zero_cost_pool.
    """

    name = "boshnas"
    # Defaults chosen on four tables at once (bench/bench_nas_spaces.py: NAS-Bench-201 CIFAR-10, the
    # cells without 'none' scored by SynFlow, three-layer CNNs trained one epoch on digits, three-layer
    # LMs scored by NASWOT), not on one column: a short random start (5), the one-hot encoding
    # (position-aware on layer lists; level with the path encoding on CIFAR-10, ahead elsewhere) and
    # candidates mostly from mutating the best trials (200 mutants, 20 prior draws) each helped on
    # most tables and hurt on none; Thompson sampling and dropping the aleatoric term did not.
    _options = {"n_init": 5, "encoding": "onehot", "kappa": 1.0, "kappa_aleatoric": 0.5, "parents": 5,
                "mutants": 200, "random_candidates": 20, "members": 5, "epochs": 100, "zero_cost": None,
                "zero_cost_pool": 200, "acquisition": "ucb"}

    def __init__(self, space, metrics, directions, seed=None, **options) -> None:
        super().__init__(space, metrics, directions, seed, **options)
        from surrogates.arch_encoding import ENCODINGS, ArchEncoder

        if self.options["acquisition"] not in ACQUISITIONS:
            raise ValueError(f"option 'acquisition' of boshnas must be one of {', '.join(ACQUISITIONS)}, "
                             f"got {self.options['acquisition']!r}")
        if self.options["encoding"] not in ENCODINGS:
            raise ValueError(f"option 'encoding' of boshnas must be one of {', '.join(ENCODINGS)}, "
                             f"got {self.options['encoding']!r}")
        self._encoders = {p.name: ArchEncoder(p.schema(), self.options["encoding"])
                          for p in space if is_arch_param(p)}

    def encode(self, configs: Sequence[Mapping[str, Any]]):
        """Feature matrix: each architecture's encoding; floats and ints scaled to [0, 1] (log
        scale where declared); categoricals one-hot; an inactive parameter contributes zeros."""
        import numpy as np

        blocks = []
        for p in self.space:
            present = [p.name in c for c in configs]
            if p.name in self._encoders:
                enc = self._encoders[p.name]
                X = np.zeros((len(configs), enc.n_features))
                idx = [i for i, ok in enumerate(present) if ok]
                if idx:
                    X[idx] = enc.transform([configs[i][p.name] for i in idx])
            elif isinstance(p, CategoricalParam):
                X = np.array([[float(ok and c[p.name] == ch) for ch in p.choices]
                              for c, ok in zip(configs, present)]).reshape(len(configs), len(p.choices))
            else:
                def unit(v: float, p=p) -> float:
                    if p.high == p.low:
                        return 0.0
                    if p.log:
                        return (math.log(v) - math.log(p.low)) / (math.log(p.high) - math.log(p.low))
                    return (v - p.low) / (p.high - p.low)
                X = np.array([[unit(c[p.name]) if ok else 0.0] for c, ok in zip(configs, present)])
            blocks.append(X)
        return np.hstack(blocks) if blocks else np.zeros((len(configs), 0))

    def _targets(self, done: list[TrialRecord], history: History, rng):
        """One loss per trial: the loss itself, or a random augmented Chebyshev scalarisation of
        the objectives (each normalised to [0, 1]) when there are several."""
        import numpy as np

        from scipy.stats import norm, rankdata

        L = np.array([self._losses(t, history) for t in done], dtype=float)
        if L.shape[1] == 1:
            y = L[:, 0]
        else:
            span = np.where(L.max(0) > L.min(0), L.max(0) - L.min(0), 1.0)
            U = (L - L.min(0)) / span
            w = rng.dirichlet(np.ones(L.shape[1]))
            y = (U * w).max(1) + 0.05 * (U * w).sum(1)
        # Gaussian copula of the ranks: a few disastrous architectures (a cell of 'none' edges sits
        # at 10% accuracy) would otherwise dominate the squared error, and the search only needs
        # the surrogate to order the good region well.
        return norm.ppf((rankdata(y) - 0.5) / len(y))

    def propose(self, history: History, n: int) -> list[Proposal]:
        import numpy as np

        from surrogates.ensemble import DeepEnsemble

        rng = self._rng(history)
        seen = {config_key(t.params) for t in history.trials}
        n_init = max(0, min(n, self.options["n_init"] - len(history.trials)))
        out = self._initial(rng, seen, n_init)
        done = self._done(history)
        if len(out) == n:
            return [Proposal(c) for c in out]
        if len(done) < 2:
            return [Proposal(c) for c in out + [self._fresh(rng, seen) for _ in range(n - len(out))]]

        y = self._targets(done, history, rng)
        cands = self._candidates(done, y, rng, seen)
        if not cands:
            return [Proposal(c) for c in out + [self._fresh(rng, seen) for _ in range(n - len(out))]]
        Xc = self.encode(cands)
        model = DeepEnsemble(n_members=self.options["members"], hidden=(64, 64), epochs=self.options["epochs"],
                             random_state=int(rng.integers(2**31 - 1)))
        with _one_torch_thread():
            model.fit(self.encode([t.params for t in done]), y)
            mu, epi, ale = model.predict_decomposed(Xc)
        acq = -mu + self.options["kappa_aleatoric"] * np.sqrt(ale)
        if self.options["acquisition"] == "thompson":
            acq = acq + self.options["kappa"] * np.sqrt(epi) * rng.standard_normal(len(mu))
        else:
            acq = acq + self.options["kappa"] * np.sqrt(epi)
        scale = float(acq.std()) or 1.0
        length = self._length_scale(Xc, rng)
        pending = [t.params for t in history.pending()] + out
        if pending:
            acq = acq - self._penalty(Xc, self.encode(pending), length, scale)
        chosen: list[int] = []
        while len(out) < n and len(chosen) < len(cands):
            masked = acq.copy()
            masked[chosen] = -np.inf
            i = int(np.argmax(masked))
            chosen.append(i)
            out.append(cands[i])
            acq = acq - self._penalty(Xc, Xc[i:i + 1], length, scale)
        while len(out) < n:
            out.append(self._fresh(rng, seen))
        return [Proposal(c) for c in out]

    def _candidates(self, done, y, rng, seen: set[str]) -> list[dict[str, Any]]:
        order = sorted(range(len(done)), key=lambda i: y[i])[: self.options["parents"]]
        out: dict[str, dict[str, Any]] = {}
        per_parent = max(1, self.options["mutants"] // max(1, len(order)))
        for i in order:
            for j in range(per_parent):
                c = mutate_config(self.space, done[i].params, rng)
                if j % 2:
                    c = mutate_config(self.space, c, rng)
                out.setdefault(config_key(c), c)
        for _ in range(self.options["random_candidates"]):
            c = self.space.sample(rng)
            out.setdefault(config_key(c), c)
        return [c for k, c in out.items() if k not in seen]

    @staticmethod
    def _length_scale(X, rng) -> float:
        import numpy as np

        m = min(len(X), 64)
        sub = X[rng.choice(len(X), size=m, replace=False)]
        d = np.sqrt(((sub[:, None, :] - sub[None, :, :]) ** 2).sum(-1))
        med = float(np.median(d[np.triu_indices(m, 1)])) if m > 1 else 1.0
        return 0.5 * med if med > 0 else 1.0

    @staticmethod
    def _penalty(X, P, length: float, scale: float):
        import numpy as np

        d2 = ((X[:, None, :] - P[None, :, :]) ** 2).sum(-1)
        return scale * np.exp(-d2 / (2 * length ** 2)).sum(1)
