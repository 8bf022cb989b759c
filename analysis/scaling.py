"""The scaling answer of a study: one definition, shown by ``search scaling report`` and by the
dashboard's scaling page alike.

Definition. A study run with ``algorithm: {name: scaling}`` (a scaling ladder) answers with what
the ladder recorded: its loss law, fitted to one point per finished (model size, token budget)
cell at that cell's tuned learning rate and batch size, and its prediction for the target. Nothing
is refitted: that law is the one whose prediction chose the target run's hyperparameters, and a
refit over every trial would mix the ladder's untuned learning rates into it. Any other study
answers with a Chinchilla fit L(N, D) = E + A/N^alpha + B/D^beta of its completed trials, one
point per trial, with ``DEFAULT_BOOTSTRAP`` seeded bootstrap refits for the 95% band.

Either way the answer has the same keys: ``available`` (and ``reason`` when not), ``source``
(``"ladder"`` or ``"trials"``), the ``fit`` (``to_dict`` of the law), the ``points`` it was fitted
to, curves of the predicted loss against N up to 10x past the largest N seen, and ``warning``. A
ladder's answer also carries its recorded state under ``ladder`` (what ``search scaling report
--json`` prints) and the target ``prediction``; its curves have no band (the ladder stores its
bootstrap's intervals of the parameters and of the target's loss, not the refits themselves).

``search scaling fit STUDY`` is a different question: an explicit refit of the study's trials
(``study_runs``) with the form and options given on the command line. Both say what the fit cannot
mean through ``fit_warnings`` (a size or budget that never varies, exponents or coefficients no
scaling law has), and neither fits a maximised objective as a loss (``maximised_loss_reason``).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

from storage.records import StudyRecord, TrialRecord, TrialState

if TYPE_CHECKING:
    from storage.read_api import ReadAPI

__all__ = ["DEFAULT_BOOTSTRAP", "study_runs", "scaling_view", "law_at", "fit_warnings", "maximised_loss_reason"]

DEFAULT_BOOTSTRAP = 100
_LADDER = "scaling"
# Published fits have exponents of 0.05 to 0.5 (Kaplan 0.05-0.1, Chinchilla 0.28-0.34, Epoch AI's
# refit 0.35-0.37) and Chinchilla coefficients A, B in the hundreds to thousands. A fit far outside
# (alpha = 47, A = 2e175 from a ladder with one token budget) describes the optimiser, not the runs.
MAX_EXPONENT = 1.5
MAX_COEFFICIENT = 1e12
_VARIES = {"chinchilla": ("N", "D"), "chinchilla-tied": ("N", "D"), "kaplan-n": ("N",), "kaplan-d": ("D",), "kaplan-c": ("C",)}
_AXIS = {"N": "N (params)", "D": "D (tokens)", "C": "C (FLOPs)"}


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _loss_source(study: StudyRecord, trials: Sequence[TrialRecord]) -> str | None:
    """The first objective when it is minimised, else the ``val_loss`` or ``loss`` metric."""
    if study.directions[0] == "minimize":
        return study.metrics[0]
    seen = set().union(*(t.metrics for t in trials)) if trials else set()
    return next((k for k in ("val_loss", "loss") if k in seen), None)


def maximised_loss_reason(study: StudyRecord, loss_col: str, loss_from: str | None) -> str | None:
    """Why the study's trials cannot give the loss a scaling law is fitted to, or None: the loss
    column asked for is a maximised objective (accuracy rises with scale; the law's terms fall), or
    the default ``loss`` column has no source because the objective is maximised and no
    ``val_loss`` or ``loss`` metric was recorded."""
    directions = dict(zip(study.metrics, study.directions))
    if directions.get(loss_col) == "maximize":
        return (f"study {study.name!r} maximises {loss_col!r}, and a scaling law fits a loss that falls as N "
                "and D grow; record a minimised loss metric (e.g. val_loss) and pass --loss-col NAME")
    if loss_col == "loss" and loss_from is None:
        return (f"study {study.name!r} maximises {study.metrics[0]!r} and its trials record no val_loss or loss "
                "metric to fit; record one, or name a minimised metric with --loss-col NAME")
    return None


def fit_warnings(form: str, n: Any, d: Any, c: Any, params: dict[str, float]) -> list[str]:
    """What a fitted law of ``form`` (chinchilla, chinchilla-tied, kaplan-n, kaplan-d, kaplan-c) cannot mean, given
    the runs' N, D, C arrays: a quantity of the law that no run varies, an exponent above
    ``MAX_EXPONENT`` or a Chinchilla coefficient above ``MAX_COEFFICIENT`` (a degenerate fit)."""
    import numpy as np

    out = []
    columns = {"N": np.asarray(n, float), "D": np.asarray(d, float), "C": np.asarray(c, float)}
    fixed = [_AXIS[k] for k in _VARIES.get(form, ()) if len(np.unique(columns[k])) < 2]
    if fixed:
        out.append(f"every trial has the same {' and '.join(fixed)}, so that term of the law is not "
                   "identifiable from these runs")
    absurd = [f"{k}={v:.3g}" for k, v in params.items()
              if (k.startswith("alpha") or k == "beta") and math.isfinite(v) and not 0.0 <= v <= MAX_EXPONENT]
    absurd += [f"{k}={v:.3g}" for k, v in params.items()
               if form in ("chinchilla", "chinchilla-tied") and k in ("A", "B") and math.isfinite(v) and abs(v) > MAX_COEFFICIENT]
    absurd += [f"{k}={v!r}" for k, v in params.items() if not math.isfinite(v)]
    if absurd:
        out.append(f"degenerate fit ({', '.join(absurd)}): scaling laws have exponents of 0.05 to 0.5; these runs "
                   "do not pin the law down, so do not use its predictions (add runs that vary N and D)")
    return out


def study_runs(study: StudyRecord, trials: Sequence[TrialRecord]) -> tuple[list[dict[str, Any]], str | None]:
    """One row per COMPLETE trial: the study's fixed trial params and the trial's params that are
    numbers, every finite metric it recorded (``params``, ``tokens``, ``flops`` from the built-in
    trainers), ``loss`` and ``trial`` (its number); and the name the loss was taken from."""
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    fixed = dict((study.spec.get("trial") or {}).get("params") or {})
    loss_from = _loss_source(study, done)
    rows = []
    for t in done:
        row: dict[str, Any] = {k: v for k, v in {**fixed, **t.params}.items() if _number(v)}
        row.update({k: v for k, v in t.metrics.items() if _number(v)})
        if loss_from == study.metrics[0]:
            row["loss"] = float(t.values[0]) if t.values and _number(t.values[0]) else None
        else:
            row["loss"] = row.get(loss_from) if loss_from else None
        row["trial"] = t.number
        rows.append(row)
    return rows, loss_from


def scaling_view(api: "ReadAPI", name: str, *, n_bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = 0) -> dict[str, Any]:
    """The study's scaling answer (see the module doc); ``n_bootstrap`` and ``seed`` apply to the
    fit of a study that is not a ladder."""
    from storage.read_api import json_safe

    study = api.get_study(name)
    algorithm = (study.spec.get("algorithm") or {}).get("name")
    if algorithm == _LADDER:
        return json_safe(_ladder_view(study, api.get_algorithm_state(name).get("algorithm")))
    return json_safe(_trials_view(study, api.get_trials(name, [TrialState.COMPLETE]), n_bootstrap, seed))


def _curves(law, n_lo: float, n_hi: float, d_levels) -> list[dict[str, Any]]:
    import numpy as np

    grid = np.geomspace(n_lo / 2, n_hi * 10, 60)
    out = []
    for d in d_levels:
        mean, low, high = law(grid, float(d))
        out.append({"tokens": float(d), "N": grid.tolist(), "loss": list(map(float, mean)),
                    "low": list(map(float, low)), "high": list(map(float, high))})
    return out


def _trials_view(study: StudyRecord, trials: Sequence[TrialRecord], n_bootstrap: int, seed: int) -> dict[str, Any]:
    rows, loss_from = study_runs(study, trials)
    base = {"study": study.name, "available": False, "source": "trials", "loss_from": loss_from}
    if not rows:
        return {**base, "reason": "no completed trials yet"}
    cols = set().union(*rows)
    if "params" not in cols or not ({"tokens", "flops"} & cols):
        return {**base, "reason": "trials record no 'params' and 'tokens' (or 'flops') metrics"}
    if loss_from is None:
        return {**base, "reason": f"the objective {study.metrics[0]!r} is maximised and no val_loss or loss metric exists"}
    import numpy as np
    import pandas as pd

    from surrogates.scaling import ScalingDataError, fit_chinchilla, load_runs

    df = pd.DataFrame([x for x in rows if x.get("loss") is not None and x.get("params") is not None])
    # Bootstrap refits of degenerate data (e.g. one token budget) overflow in places; those
    # refits come out as NaN/inf, which the band and json_safe handle, so the warnings are noise.
    with np.errstate(all="ignore"):
        try:
            runs = load_runs(df)
            fit = fit_chinchilla(runs, n_bootstrap=n_bootstrap, seed=seed, n_starts=20)
        except ScalingDataError as exc:
            return {**base, "reason": str(exc)}
        n_hi = float(runs.N.max())
        curves = _curves(lambda n, d: fit.predict(n, np.full_like(n, d)), float(runs.N.min()), n_hi,
                         np.unique(np.quantile(runs.D, [0.0, 0.5, 1.0])))
    warning = "; ".join(fit_warnings("chinchilla", runs.N, runs.D, runs.C, fit.params)) or None
    return {**base, "available": True, "reason": None, "warning": warning, "fit": fit.to_dict(),
            "points": {"N": runs.N.tolist(), "D": runs.D.tolist(), "C": runs.C.tolist(), "loss": runs.loss.tolist()},
            "observed_max_N": n_hi, "curves": curves}


def law_at(loss_law: dict[str, Any], n: Any, d: Any) -> Any:
    """A recorded loss law (``to_dict`` of a Chinchilla or one-budget size law) at N, D."""
    p = loss_law["params"]
    data_term = p["B"] / d ** p["beta"] if "B" in p else 0.0
    return p["E"] + p["A"] / n ** p["alpha"] + data_term


def _ladder_view(study: StudyRecord, state: dict[str, Any] | None) -> dict[str, Any]:
    base = {"study": study.name, "available": False, "source": "ladder", "loss_from": study.metrics[0]}
    if not state:
        return {**base, "reason": "the scaling ladder has recorded no state yet (no trial has finished)"}
    base["ladder"] = state
    fit = state.get("fit") or {}
    law = fit.get("loss_law")
    if not law:
        return {**base, "reason": fit.get("error") or "the ladder has fitted no loss law yet (waiting for finished cells)"}
    import numpy as np

    cells = [c for c in state.get("cells", []) if c.get("finished") and _number(c.get("loss"))]
    n = np.array([float(c["N"]) for c in cells])
    d = np.array([float(c["D"]) for c in cells])
    loss = np.array([float(c["loss"]) for c in cells])
    pred = state.get("prediction") or {}
    # the ladder's budgets, and the target's D where the law has a data term
    d_levels = [law["D"]] if "D" in law else np.unique([*np.quantile(d, [0.0, 0.5, 1.0]), *([pred["D"]] if "D" in pred else [])])
    none = np.full(60, np.nan)
    curves = _curves(lambda g, dd: (law_at(law, g, dd), none, none), float(n.min()), float(n.max()), d_levels)
    warnings = state.get("warnings") or []
    return {**base, "available": True, "reason": None, "warning": "; ".join(warnings) or None,
            "fit": law,
            "points": {"N": n.tolist(), "D": d.tolist(), "C": (6.0 * n * d).tolist(), "loss": loss.tolist()},
            "observed_max_N": float(n.max()), "curves": curves, "prediction": pred or None}
