"""Bayesian optimisation over mixed and conditional spaces (algorithm name ``bo``).

Each ``propose`` rebuilds everything from the history it is given (plus any ``warm_start``
records), so a resumed study proposes from its full history and a fresh instance with the same
seed and history proposes the same configurations.

The recipe borrows from the NeurIPS 2020 black-box challenge winners:
- a seeded scrambled-Sobol initial design;
- a GP (ARD Matérn-5/2, marginal likelihood) on power-transformed targets with learned input
  warping (HEBO); one-hot columns learn their lengthscales like any other under the unit prior
  (an upper bound of 1, which kept categories apart, did worse on mixed_quadratic,
  categorical_chain and svr_diabetes and no better elsewhere, and the flat-problem trap it was
  made for no longer shows under the unit prior: docs/benchmarks/bo.md); above ``max_gp_points``
  observations the GP sees the best half of that budget plus a random rest, so proposal time
  stays bounded;
- acquisitions: numerically stable log-EI, UCB, Thompson sampling, or ``mace`` (the default): the
  first pick of a batch maximises log-EI, later picks come from the Pareto front of
  (log-EI, UCB, log-PI), as HEBO does;
- the acquisition is optimised over random candidates plus perturbations of the best points inside
  a TuRBO-style trust region whose size is replayed from the history (doubling after successes,
  halving after failures), then refined around the best candidates;
- batches and running trials via Kriging believer: pending and already-picked points are added to
  the GP at their posterior mean, which removes their uncertainty and spreads the batch;
- failed trials feed a feasibility estimate (distance-weighted share of successes among the
  nearest finished trials) that screens candidates and scales the acquisitions;
- with a scheduler (ASHA, Hyperband, median), BOHB-style: trials stopped early join the data,
  every trial ranked by (step reached, then objective) and modelled as normal scores of its rank
  (``_with_stopped``);
- several objectives via ParEGO: each pick scalarises the normalised objectives with fresh random
  weights (augmented Chebyshev).
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Mapping, Sequence

import numpy as np

from analysis.pareto import pareto_mask
from search.algorithms.base import Algorithm, History, Proposal
from search.space import Space
from storage.records import TrialRecord, TrialState

__all__ = ["BayesOpt", "log_ei"]

_ACQUISITIONS = ("mace", "ei", "ucb", "ts")
_SURROGATES = ("gp", "forest")


def log_ei(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
    """log of expected improvement below ``best`` for Gaussian predictions, accurate far into the
    tail where EI itself underflows (the LogEI formulation of Ament et al., NeurIPS 2023)."""
    from scipy.special import erfcx
    from scipy.stats import norm

    u = (best - mean) / std
    out = np.empty_like(u)
    hi = u > -1.0
    uh = u[hi]
    out[hi] = np.log(np.maximum(norm.pdf(uh) + uh * norm.cdf(uh), 1e-300))
    lo = ~hi
    ul = u[lo]
    log_phi = -0.5 * ul * ul - 0.5 * math.log(2 * math.pi)
    mid = ul > -1e6
    # h(u) = phi(u) * (1 - |u| * Phi(u)/phi(u)) and Phi/phi = sqrt(pi/2) * erfcx(-u/sqrt(2))
    t = np.log(-ul[mid] * erfcx(-ul[mid] / math.sqrt(2)) * math.sqrt(math.pi / 2))
    val = np.empty_like(ul)
    val[mid] = log_phi[mid] + np.log(-np.expm1(np.minimum(t, -1e-300)))
    val[~mid] = log_phi[~mid] - 2.0 * np.log(-ul[~mid])
    out[lo] = val
    return out + np.log(std)


def _log_pi(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
    from scipy.special import log_ndtr
    return log_ndtr((best - mean) / std)


class BayesOpt(Algorithm):
    """Model-based proposals (see the module docstring).

    Options (the study file's ``algorithm:`` mapping):
    - ``n_initial`` (int, default max(8, d + 1) with d encoded columns): Sobol points before the
      model takes over; warm-start records count towards it.
    - ``acquisition``: "mace" (default), "ei", "ucb" or "ts".
    - ``surrogate``: "gp" (default) or "forest" (extra-trees, cheaper at many thousands of trials).
    - ``input_warping`` (bool, default True), ``ucb_beta`` (float, default 2.0: UCB = mean - beta * std
      on losses), ``n_candidates`` (int, default 1024), ``max_gp_points`` (int, default 256),
      ``refine_rounds`` (int, default 1: local refinements of the best candidates, each at a fifth
      of the previous scale), ``lengthscale_prior`` ("unit", the default: LogNormal(0, sqrt 3) on
      each lengthscale of the unit cube, or "dim-scaled": Hvarfner et al.'s prior, whose median
      grows with sqrt(d); in 10-D it assumed too smooth a function for Ackley and Levy).
    """

    name = "bo"

    def __init__(self, space: Space, metrics: tuple[str, ...], directions: tuple[str, ...],
                 seed: int | None = None, **options: Any) -> None:
        opts = dict(options)
        known = {"n_initial", "acquisition", "surrogate", "input_warping", "ucb_beta",
                 "n_candidates", "max_gp_points", "refine_rounds", "lengthscale_prior"}
        unknown = sorted(set(opts) - known)
        if unknown:
            raise ValueError(
                f"algorithm 'bo' takes no option {unknown[0]!r}; known options: {sorted(known)}")
        super().__init__(space, tuple(metrics), tuple(directions), seed=seed)
        for d in self.directions:
            if d not in ("minimize", "maximize"):
                raise ValueError(f"directions must be 'minimize' or 'maximize', got {d!r}")
        if not self.directions or len(self.directions) != len(self.metrics):
            raise ValueError(
                f"need one direction per metric, got metrics={self.metrics} directions={self.directions}")
        from search.encoding import TrialEncoder

        self._encoder = TrialEncoder(space.params)
        self.acquisition = opts.get("acquisition", "mace")
        if self.acquisition not in _ACQUISITIONS:
            raise ValueError(f"acquisition must be one of {list(_ACQUISITIONS)}, got {self.acquisition!r}")
        self.surrogate = opts.get("surrogate", "gp")
        if self.surrogate not in _SURROGATES:
            raise ValueError(f"surrogate must be one of {list(_SURROGATES)}, got {self.surrogate!r}")
        self.input_warping = opts.get("input_warping", True)
        if not isinstance(self.input_warping, bool):
            raise ValueError(f"input_warping must be true or false, got {self.input_warping!r}")
        self.n_initial = self._int_option(opts, "n_initial", max(8, self._encoder.n_features + 1), 1)
        self.n_candidates = self._int_option(opts, "n_candidates", 1024, 16)
        self.max_gp_points = self._int_option(opts, "max_gp_points", 256, 16)
        self.refine_rounds = self._int_option(opts, "refine_rounds", 1, 1)
        from surrogates.gp import LENGTHSCALE_PRIORS

        self.lengthscale_prior = opts.get("lengthscale_prior", "unit")
        if self.lengthscale_prior not in LENGTHSCALE_PRIORS:
            raise ValueError(f"lengthscale_prior must be one of {list(LENGTHSCALE_PRIORS)}, "
                             f"got {self.lengthscale_prior!r}")
        beta = opts.get("ucb_beta", 2.0)
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or beta < 0:
            raise ValueError(f"ucb_beta must be a number >= 0, got {beta!r}")
        self.ucb_beta = float(beta)
        # Without a seed, draw one now so the instance is at least self-consistent.
        self._seed = int(seed) if seed is not None else int(np.random.SeedSequence().entropy % 2**63)
        self._warm: tuple[TrialRecord, ...] = ()

    @staticmethod
    def _int_option(opts: Mapping[str, Any], key: str, default: int, minimum: int) -> int:
        v = opts.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ValueError(f"{key} must be an integer >= {minimum}, got {v!r}")
        return v

    # -- warm start ----------------------------------------------------------------------------
    def warm_start(self, records: Sequence[TrialRecord]) -> None:
        """Add completed (and failed) trials of earlier studies over the same parameter names as
        extra observations. Replaces any earlier warm start; call again after a restart."""
        kept = []
        names = set(self.space.names)
        for r in records:
            if r.state not in (TrialState.COMPLETE, TrialState.FAILED):
                continue
            extra = sorted(set(r.params) - names)
            if extra:
                raise ValueError(
                    f"warm-start trial {r.number} has parameters {extra} that are not in this "
                    f"space {sorted(names)}; warm start only from studies over the same parameters")
            if r.state == TrialState.COMPLETE and (r.values is None or len(r.values) != len(self.directions)):
                raise ValueError(
                    f"warm-start trial {r.number} has values {r.values}, expected "
                    f"{len(self.directions)} objective(s) as in this study")
            self._encoder.encode([r.params])  # raises on values outside the choices
            kept.append(r)
        self._warm = tuple(kept)

    # -- proposals -----------------------------------------------------------------------------
    def propose(self, history: History, n: int) -> list[Proposal]:
        if n <= 0:
            return []
        enc = self._encoder
        rng = np.random.default_rng([self._seed, len(history.trials), n])
        records = self._warm + history.finished()
        data = [enc.encode_trials(records, i, d) for i, d in enumerate(self.directions)]
        if len(self.directions) == 1:
            data = [self._with_stopped(history, records, data[0])]
        feasible = np.logical_and.reduce([dt.feasible for dt in data])
        n_seen = len(history.trials) + len(self._warm)
        n_sobol = min(n, max(self.n_initial - n_seen, 0))
        if feasible.sum() < 2:
            n_sobol = n
        out: list[Proposal] = []
        if n_sobol:
            U = self._sobol(len(history.trials), n_sobol)
            out += [Proposal(params=c) for c in enc.decode(enc.canonical(U))]
        if len(out) == n:
            return out
        X = data[0].X
        Y = np.stack([dt.y for dt in data], axis=1)
        pending = [t.params for t in history.pending()]
        X_pend = enc.encode(pending) if pending else np.zeros((0, enc.n_features))
        with _one_blas_thread():
            chosen = self._model_based(X, Y, feasible, X_pend, n - len(out), rng)
        out += [Proposal(params=c) for c in enc.decode(chosen)]
        return out

    def _with_stopped(self, history: History, records: Sequence[TrialRecord], data):
        """BOHB-style use of the trials a scheduler stopped (single objective). A stopped trial's
        objective at the step it reached is not comparable with a finished trial's, but the order
        is: a trial that went further was ranked better by the scheduler on the way. So when there
        are stopped trials, every trial is ranked by (step reached, descending; objective) —
        finished trials first — and the GP models normal scores of those ranks. Without stopped
        trials the data are unchanged."""
        from scipy.stats import norm

        from search.encoding import EncodedTrials

        sign = -1.0 if self.directions[0] == "maximize" else 1.0
        stopped = [(t, at[0], sign * at[1]) for t in records if (at := history.stopped_at(t)) is not None]
        if not stopped:
            return data
        ok = np.flatnonzero(data.feasible)
        keys = [(0, float(data.y[i])) for i in ok] + [(1, -step, loss) for _, step, loss in stopped]
        order = sorted(range(len(keys)), key=lambda j: keys[j])
        ranks = np.empty(len(keys))
        ranks[order] = np.arange(len(keys))
        scores = norm.ppf((ranks + 0.5) / len(keys))
        y = data.y.copy()
        y[ok] = scores[:len(ok)]
        X_stopped = self._encoder.encode([t.params for t, _, _ in stopped])
        return EncodedTrials(X=np.vstack([data.X, X_stopped]), y=np.concatenate([y, scores[len(ok):]]),
                             feasible=np.concatenate([data.feasible, np.ones(len(stopped), dtype=bool)]),
                             numbers=np.concatenate([data.numbers, [t.number for t, _, _ in stopped]]).astype(int))

    def _sobol(self, start: int, m: int) -> np.ndarray:
        from scipy.stats import qmc
        sob = qmc.Sobol(self._encoder.n_features, scramble=True, seed=self._seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # balance properties need powers of two; fine here
            if start:
                sob.fast_forward(start)
            return sob.random(m)

    def _scalarise(self, Y: np.ndarray, ok: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if Y.shape[1] == 1:
            return Y[:, 0]
        F = Y[ok]
        lo, hi = F.min(0), F.max(0)
        Fn = (Y - lo) / np.where(hi > lo, hi - lo, 1.0)
        lam = rng.dirichlet(np.ones(Y.shape[1]))
        return (Fn * lam).max(1) + 0.05 * (Fn * lam).sum(1)

    def _fit(self, X: np.ndarray, y: np.ndarray,
             rng: np.random.Generator) -> "_GPModel | _ForestModel":
        if len(X) > self.max_gp_points and self.surrogate == "gp":
            half = self.max_gp_points // 2
            order = np.argsort(y, kind="stable")
            rest = rng.choice(order[half:], self.max_gp_points - half, replace=False)
            keep = np.sort(np.concatenate([order[:half], rest]))
            X, y = X[keep], y[keep]
        if self.surrogate == "forest":
            return _ForestModel(X, y, int(rng.integers(2**31 - 1)))
        from surrogates.gp import GaussianProcess
        gp = GaussianProcess(input_warping=self.input_warping,
                             warp_columns=self._encoder.numeric_columns, normalize_inputs=False,
                             lengthscale_prior=self.lengthscale_prior,
                             max_fit_samples=100, random_state=int(rng.integers(2**31 - 1)))
        return _GPModel(gp.fit(X, y))

    def _model_based(self, X, Y, feasible, X_pend, m, rng) -> np.ndarray:
        """``m`` encoded picks, each conditioned (Kriging believer) on pending and earlier picks."""
        Xf = X[feasible]
        single = Y.shape[1] == 1
        model = None
        picks: list[np.ndarray] = []
        tr_length = self._trust_region_length(Y[:, 0] if single else None, feasible)
        for slot in range(m):
            y = self._scalarise(Y, feasible, rng)
            if model is None or not single:
                model = self._fit(Xf, y[feasible], rng)
                base_model = model
                extra = np.vstack([X_pend] + [p[None, :] for p in picks]) if (len(X_pend) or picks) else None
                if extra is not None:
                    model = model.believe(extra)
            best_z = float(base_model.to_latent(y[feasible]).min())
            incumbents = Xf[np.argsort(y[feasible], kind="stable")[:5]]
            avoid = np.vstack([X, X_pend] + [p[None, :] for p in picks])
            feas = _Feasibility(X, feasible) if not feasible.all() else None
            x = self._maximise(model, best_z, incumbents, avoid, feas, tr_length, slot, rng)
            picks.append(x)
            if single:
                model = model.believe(x[None, :])
        return np.array(picks)

    def _trust_region_length(self, y: np.ndarray | None, feasible: np.ndarray) -> float:
        """TuRBO's side length (in the unit cube), replayed over the history in order."""
        length, lmin, lmax = 0.8, 0.5 ** 7, 1.6
        if y is None:
            return length
        d = self._encoder.n_features
        succ = fail = 0
        best = math.inf
        tol_fail = max(4, d)
        for v, ok in zip(y, feasible):
            if not ok:
                continue
            improved = not math.isfinite(best) or v < best - 1e-3 * abs(best)
            if improved:
                succ, fail = succ + 1, 0
            else:
                succ, fail = 0, fail + 1
            best = min(best, v)
            if succ >= 3:
                length, succ = min(2 * length, lmax), 0
            elif fail >= tol_fail:
                length, fail = length / 2, 0
            if length < lmin:
                length = 0.8
        return length

    def _candidates(self, incumbents, tr_length, lengthscales, rng, scale: float = 1.0,
                    n: int | None = None) -> np.ndarray:
        enc = self._encoder
        D = enc.n_features
        n = n or self.n_candidates
        n_local = n // 2
        parts = [rng.random((n - n_local, D))]
        centres = incumbents[rng.integers(len(incumbents), size=n_local)]
        # TuRBO: per-column widths proportional to lengthscales, geometric mean one.
        w = np.ones(D)
        if lengthscales is not None:
            w = lengthscales / np.exp(np.mean(np.log(lengthscales)))
            w = np.clip(w, 0.25, 4.0)
        sig = tr_length * scale * w * rng.choice([0.05, 0.15, 0.4], size=(n_local, 1))
        local = centres + rng.standard_normal((n_local, D)) * sig
        # perturb only some coordinates in higher dimensions: TuRBO's probability min(1, 20 / d)
        # (an earlier 4 / d moved too few coordinates at once to cross a 10-D bowl: Levy-10 and
        # Ackley-10 ended about twice as far from the optimum)
        n_params = len(self.space.params)
        p = min(1.0, 20.0 / n_params)
        mask = rng.random((n_local, D)) < p
        mask[np.arange(n_local), rng.integers(D, size=n_local)] = True
        local = np.where(mask, local, centres)
        for start, width in enc.categorical_blocks:
            flip = rng.random(n_local) < p
            new = np.zeros((flip.sum(), width))
            new[np.arange(flip.sum()), rng.integers(width, size=flip.sum())] = 1.0
            local[flip, start:start + width] = new
        parts.append(local)
        return enc.canonical(np.vstack(parts))

    def _maximise(self, model, best_z, incumbents, avoid, feas, tr_length, slot, rng) -> np.ndarray:
        def screen(Cand: np.ndarray) -> np.ndarray:
            """Unseen candidates, and only likely-feasible ones when any are."""
            Cand = _drop_seen(Cand, avoid)
            if feas is not None and len(Cand):
                likely = feas(Cand) > math.log(0.5)
                if likely.any():
                    Cand = Cand[likely]
            return Cand

        C = screen(self._candidates(incumbents, tr_length, model.lengthscales(), rng))
        if len(C) == 0:
            return self._encoder.canonical(rng.random((1, self._encoder.n_features)))[0]
        kind = self.acquisition
        if kind == "mace":
            kind = "ei" if slot == 0 else "mace"

        def score(Cand):
            mu, var = model.latent(Cand)
            sd = np.sqrt(var)
            logp = feas(Cand) if feas is not None else np.zeros(len(Cand))
            if kind == "ei" or kind == "mace":
                return log_ei(mu, sd, best_z) + logp, mu, sd, logp
            return -(mu - self.ucb_beta * sd) + logp, mu, sd, logp

        if kind == "ts":
            if len(C) > 512:
                C = C[rng.choice(len(C), 512, replace=False)]
            draw = model.sample(C, rng)
            if feas is not None:
                draw = np.where(feas(C) < math.log(0.5), np.inf, draw)
            return C[int(np.argmin(draw))]

        s, mu, sd, logp = score(C)
        # refine: perturb the best few candidates at a smaller scale, `refine_rounds` times, each
        # round around the best so far at a fifth of the previous scale
        for r in range(self.refine_rounds):
            top = C[np.argsort(-s, kind="stable")[:8]]
            R = screen(self._candidates(top, tr_length, model.lengthscales(), rng, scale=0.2 ** (r + 1), n=256))
            if len(R):
                s2, mu2, sd2, logp2 = score(R)
                C, s = np.vstack([C, R]), np.concatenate([s, s2])
                mu, sd, logp = np.concatenate([mu, mu2]), np.concatenate([sd, sd2]), np.concatenate([logp, logp2])
        if kind != "mace":
            return C[int(np.argmax(s))]
        # HEBO's MACE: a random member of the Pareto front of (log-EI, UCB, log-PI)
        A = np.stack([s, -(mu - self.ucb_beta * sd) + logp, _log_pi(mu, sd, best_z) + logp], axis=1)
        order = np.argsort(-A[:, 0], kind="stable")  # the front, best log-EI first
        return C[rng.choice(order[np.asarray(pareto_mask(-A), dtype=bool)[order]])]


_BLAS: list[Any] = []


def _one_blas_thread():
    """BLAS limited to one thread while proposing: the GP's matrices are at most
    ``max_gp_points`` wide, where a second thread only adds hand-offs, and on a machine whose cores
    are busy (trials training beside the controller) they cost far more: one proposal at 200
    trials took 53 ms with one OpenBLAS thread and 144-223 ms with two on 2 cores under load 3."""
    from threadpoolctl import ThreadpoolController

    if not _BLAS:
        _BLAS.append(ThreadpoolController())
    return _BLAS[0].limit(limits=1, user_api="blas")


def _drop_seen(C: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Candidates that are not (numerically) already observed, pending or picked."""
    if len(seen) == 0:
        return C
    C = np.unique(C, axis=0)
    d2 = (C * C).sum(1)[:, None] + (seen * seen).sum(1)[None, :] - 2 * C @ seen.T
    return C[d2.min(1) > 1e-12]


class _Feasibility:
    """P(success) at x from the k nearest finished trials (inverse-distance weights, lightly
    smoothed towards the overall success rate). Nearest neighbours rather than a kernel average:
    a kernel estimate falls back to the prior far from the data, which is exactly where the
    surrogate's uncertainty pulls the acquisition, while neighbours carry the local outcome
    outwards (a corner next to failures is predicted to fail)."""

    def __init__(self, X: np.ndarray, ok: np.ndarray, k: int = 5) -> None:
        self.X, self.ok = X, ok.astype(float)
        self.k = min(k, len(X))
        self.rate = float(self.ok.mean())

    def __call__(self, C: np.ndarray) -> np.ndarray:
        """log P(success) per candidate row."""
        d = np.sqrt(_sqdist(C, self.X))
        idx = np.argpartition(d, self.k - 1, axis=1)[:, :self.k]
        w = 1.0 / (np.take_along_axis(d, idx, axis=1) + 1e-3)
        p = (0.5 * self.rate + (w * self.ok[idx]).sum(1)) / (0.5 + w.sum(1))
        return np.log(np.clip(p, 1e-6, 1.0))


def _sqdist(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    return np.maximum((A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2 * A @ B.T, 0.0)


class _GPModel:
    def __init__(self, gp) -> None:
        self.gp = gp

    def to_latent(self, y: np.ndarray) -> np.ndarray:
        return self.gp.transform_y(y)

    def latent(self, C: np.ndarray):
        return self.gp.predict_latent(C)

    def lengthscales(self) -> np.ndarray:
        return self.gp.lengthscales_

    def believe(self, X: np.ndarray) -> "_GPModel":
        mu, _ = self.gp.predict_latent(X)
        return _GPModel(self.gp.condition(X, mu))

    def sample(self, C: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.gp.sample_latent(C, 1, rng)[0]


class _ForestModel:
    """Extra-trees on standardised losses; believing a point refits with it at its mean."""

    def __init__(self, X: np.ndarray, y: np.ndarray, seed: int) -> None:
        from surrogates.forest import ForestSurrogate
        self.X, self.y, self.seed = X, y, seed
        self.mean, self.std = float(y.mean()), float(y.std()) or 1.0
        self.forest = ForestSurrogate(n_estimators=32, random_state=seed).fit(X, (y - self.mean) / self.std)

    def to_latent(self, y: np.ndarray) -> np.ndarray:
        return (y - self.mean) / self.std

    def latent(self, C: np.ndarray):
        return self.forest.predict(C)

    def lengthscales(self) -> None:
        return None

    def believe(self, X: np.ndarray) -> "_ForestModel":
        mu = self.forest.predict(X)[0] * self.std + self.mean
        other = _ForestModel.__new__(_ForestModel)
        other.X, other.y, other.seed = np.vstack([self.X, X]), np.concatenate([self.y, mu]), self.seed
        other.mean, other.std = self.mean, self.std
        from surrogates.forest import ForestSurrogate
        other.forest = ForestSurrogate(n_estimators=32, random_state=self.seed).fit(
            other.X, (other.y - self.mean) / self.std)
        return other

    def sample(self, C: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        P = self.forest.predict_trees(C)
        return P[rng.integers(len(P))]
