"""`search scaling ...`: fit scaling laws to runs, predict losses, allocate compute, pick lr and batch size,
and report a study's scaling answer.

A study SOURCE and `report` read through ``storage.read_api`` and ``analysis.scaling``, as the
dashboard does; `report` prints ``analysis.scaling.scaling_view``, the one definition of a study's
scaling answer (a ladder's recorded law and prediction, else a fit of the completed trials), which
the dashboard's scaling page shows too.

numpy, scipy, pandas and matplotlib are imported inside `run` so that `search --help` stays instant.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any

from storage.read_api import json_safe

FORMS = ("chinchilla", "kaplan-n", "kaplan-d", "kaplan-c")
_COLUMN_FLAGS = (
    ("--params-col", "params", "column with the parameter count N"),
    ("--tokens-col", "tokens", "column with training tokens D (optional when FLOPs are given)"),
    ("--loss-col", "loss", "column with the final loss"),
    ("--flops-col", "flops", "column with training FLOPs C (default 6*N*D)"),
    ("--lr-col", "lr", "column with the learning rate (hparams only)"),
    ("--bs-col", "batch_size", "column with the batch size in tokens (hparams only)"),
)


def _source_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("source", metavar="SOURCE", help="CSV of runs, or a study name read from --storage")
    parent.add_argument("--storage", default=None, help="storage URL for a study SOURCE (default: the local database)")
    for flag, default, text in _COLUMN_FLAGS:
        parent.add_argument(flag, default=default, help=f"{text} (default: {default})")
    parent.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")
    return parent


def _fit_parent(forms: tuple[str, ...]) -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--form", choices=forms, default="chinchilla", help="functional form (default: chinchilla)")
    parent.add_argument("--drop-highest-loss", type=_count(10**9), default=0, metavar="K", help="drop the K highest-loss runs before fitting (Epoch AI drop 5)")
    parent.add_argument("--bootstrap", type=_count(MAX_BOOTSTRAP), default=200, metavar="N", help=f"bootstrap refits for 95%% intervals, at most {MAX_BOOTSTRAP} (default: 200)")
    parent.add_argument("--seed", type=_count(2**32 - 1), default=0, help="bootstrap seed (default: 0)")
    parent.add_argument("--starts", type=_starts, default=100, metavar="K|all", help="Chinchilla: optimise from the K best of Epoch AI's 4,500 grid starts, or all (default: 100)")
    parent.add_argument("--all-points", action="store_true", help="Kaplan forms: fit every run, not only the lower envelope")
    return parent


# Each refit is a full optimisation: 10,000 takes minutes and tightens a 95% band no further.
MAX_BOOTSTRAP = 10_000


def _count(high: int):
    """An argparse type: an integer in [0, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = -1
        if not 0 <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an integer in [0, {high}], got {text!r}")
        return value

    return parse


def _starts(text: str) -> int | None:
    if text == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {text!r}")
    return value


def add_parser(subparsers: Any) -> None:
    """Add the `scaling` command and its verbs to an argparse subparsers object."""
    parser = subparsers.add_parser(
        "scaling",
        help="fit scaling laws (Chinchilla, Kaplan, Step Law) to runs",
        description="Fit scaling laws to a table of runs and use them to predict and allocate.",
    )
    verbs = parser.add_subparsers(dest="scaling_verb", metavar="VERB", required=True)
    source = _source_parent()

    fit = verbs.add_parser("fit", parents=[source, _fit_parent(FORMS)], help="fit a loss law and print parameters with intervals")
    fit.add_argument("--plot", metavar="PATH", default=None, help="write the fit, the runs and the extrapolation band as a PNG")
    holdout = fit.add_mutually_exclusive_group()
    holdout.add_argument("--validate-largest", type=int, default=None, metavar="K", help="also refit without the K largest-compute runs and report the errors predicting them")
    holdout.add_argument("--validate-above", type=float, default=None, metavar="C", help="also refit on runs up to C FLOPs and report the errors predicting the rest")

    predict = verbs.add_parser("predict", parents=[source, _fit_parent(FORMS)], help="predict the loss of a run")
    predict.add_argument("--params", type=float, default=None, metavar="N", help="parameter count")
    predict.add_argument("--tokens", type=float, default=None, metavar="D", help="training tokens")
    predict.add_argument("--compute", type=float, default=None, metavar="C", help="training FLOPs (instead of --tokens: D = C/(6N))")

    optimal = verbs.add_parser("optimal", parents=[source, _fit_parent(("chinchilla",))], help="compute-optimal (or inference-aware) N and D")
    goal = optimal.add_mutually_exclusive_group(required=True)
    goal.add_argument("--compute", type=float, metavar="C", help="training FLOPs budget")
    goal.add_argument("--target-loss", type=float, metavar="L", help="loss to reach (needs --inference-tokens)")
    optimal.add_argument("--inference-tokens", type=float, default=None, metavar="T", help="tokens served over the model's life (2N FLOPs each)")

    hparams = verbs.add_parser("hparams", parents=[source], help="Step Law learning rate and batch size for N and D")
    hparams.add_argument("--params", type=float, required=True, metavar="N", help="parameter count")
    hparams.add_argument("--tokens", type=float, required=True, metavar="D", help="training tokens")
    hparams.add_argument("--critical-tolerance", type=float, default=0.01, metavar="X", help="loss tolerance of the critical batch size estimate (default: 0.01)")

    report = verbs.add_parser("report", help="a study's scaling answer, as the dashboard shows it: a scaling ladder's "
                                             "recorded law and prediction, else a Chinchilla fit of its trials")
    report.add_argument("source", metavar="STUDY", help="name of a study (a scaling ladder: algorithm: {name: scaling, ...})")
    report.add_argument("--storage", default=None, help="storage URL (default: the local database)")
    report.add_argument("--json", action="store_true", help="print one JSON object: a ladder's stored state, else the fit")


def run(args: argparse.Namespace) -> int:
    """Run a `scaling` verb; returns the exit code (2 on bad input, with one `error:` line on stderr)."""
    try:
        out, summary = _VERBS[args.scaling_verb](args)
    except ValueError as exc:  # ScalingDataError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(json_safe(out), allow_nan=False))
    else:
        print(summary)
    return 0


def _load(args: argparse.Namespace) -> Any:
    from surrogates.scaling import ScalingDataError, load_runs

    columns = dict(
        params_col=args.params_col, tokens_col=args.tokens_col, loss_col=args.loss_col,
        flops_col=args.flops_col, lr_col=args.lr_col, bs_col=args.bs_col,
    )
    if os.path.isfile(args.source):
        return load_runs(args.source, **columns)
    import pandas as pd

    from analysis.scaling import maximised_loss_reason, study_runs
    from storage import StorageError
    from storage.read_api import open_read_api

    try:
        with open_read_api(args.storage) as api:
            study = api.get_study(args.source)
            rows, loss_from = study_runs(study, api.get_trials(args.source))
    except (StorageError, LookupError, OSError) as exc:
        raise ScalingDataError(f"SOURCE {args.source!r} is neither a file nor a readable study: {exc}") from None
    reason = maximised_loss_reason(study, args.loss_col, loss_from)
    if reason:
        raise ScalingDataError(reason)
    return load_runs(pd.DataFrame(rows), **columns)


def _fit(args: argparse.Namespace, runs: Any) -> Any:
    from surrogates.scaling import fit_chinchilla, fit_kaplan

    if args.bootstrap < 0:
        raise ValueError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    common = dict(n_bootstrap=args.bootstrap, seed=args.seed, drop_highest_loss=args.drop_highest_loss)
    if args.form == "chinchilla":
        return fit_chinchilla(runs, n_starts=args.starts, **common)
    return fit_kaplan(runs, args.form.removeprefix("kaplan-").upper(), frontier=not args.all_points, **common)


def _warnings(args: argparse.Namespace, runs: Any, fit: Any, out: dict[str, Any]) -> str:
    """``analysis.scaling.fit_warnings`` of the fit, put in ``out["warnings"]`` (and on stderr with
    --json, where no summary is printed); the summary's lines."""
    from analysis.scaling import fit_warnings

    out["warnings"] = fit_warnings(args.form, runs.N, runs.D, runs.C, fit.params)
    if args.json:
        for w in out["warnings"]:
            print(f"warning: {w}", file=sys.stderr)
    return "".join(f"\n  warning: {w}" for w in out["warnings"])


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _band(interval: Any) -> str:
    """" [95% low, high]" for a stored interval; "" when there is none (stored state turns NaN
    bounds into null)."""
    if not interval or not all(isinstance(b, (int, float)) and math.isfinite(b) for b in interval):
        return ""
    return f" [95% {_fmt(interval[0])}, {_fmt(interval[1])}]"


def _param_lines(fit: Any) -> str:
    lines = []
    for k, v in fit.params.items():
        low, high = fit.intervals[k]
        band = f"  [95% {_fmt(low)}, {_fmt(high)}]" if math.isfinite(low) else ""
        lines.append(f"  {k:>8} = {_fmt(v)}{band}")
    return "\n".join(lines)


def _cmd_fit(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    runs = _load(args)
    fit = _fit(args, runs)
    out = fit.to_dict()
    dropped = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in fit.n_dropped.items() if v) or "none"
    summary = f"{out['form']} fit, {fit.n_points} runs kept (dropped: {dropped}): {out['formula']}\n{_param_lines(fit)}"
    warnings = _warnings(args, runs, fit, out)
    if args.form == "chinchilla":
        c_max = float(runs.C.max())
        opt = fit.compute_optimal(c_max)
        out["compute_optimal_at_max_compute"] = opt
        summary += f"\n  compute-optimal at C={_fmt(c_max)}: N={_fmt(opt['N'])}, D={_fmt(opt['D'])}, {opt['tokens_per_param']:.1f} tokens/param"
    if args.validate_largest is not None or args.validate_above is not None:
        from surrogates.scaling import leave_largest_out

        if args.validate_above is not None:
            kept = int((runs.C <= args.validate_above).sum())
            if kept < 2 or kept == len(runs):
                raise ValueError(
                    f"--validate-above {args.validate_above:g} must split the runs (C from {_fmt(float(runs.C.min()))} "
                    f"to {_fmt(float(runs.C.max()))}), keeping at least 2 to fit and 1 to predict; it keeps {kept} "
                    f"of {len(runs)}")
        options = {"n_starts": args.starts} if args.form == "chinchilla" else {"frontier": not args.all_points}
        check = leave_largest_out(
            runs, k=args.validate_largest, max_compute=args.validate_above, form=args.form,
            drop_highest_loss=args.drop_highest_loss, n_bootstrap=0, **options,
        )
        out["leave_largest_out"] = check
        summary += (
            f"\n  refit on {check['n_train']} runs up to C={_fmt(check['train_max_compute'])}: predicts the "
            f"{check['n_held_out']} larger runs with {check['mean_abs_rel_error']:.2%} mean, "
            f"{check['max_abs_rel_error']:.2%} worst relative error"
        )
    if args.plot:
        _plot(fit, runs, args)
        out["plot"] = args.plot
        summary += f"\n  plot written to {args.plot}"
    return out, summary + warnings


def _cmd_predict(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    need = {"chinchilla": "--params and --tokens (or --compute)", "kaplan-n": "--params", "kaplan-d": "--tokens (or --params and --compute)", "kaplan-c": "--compute (or --params and --tokens)"}[args.form]
    n, d, c = args.params, args.tokens, args.compute
    if d is None and n is not None and c is not None:
        d = c / (6.0 * n)
    if c is None and n is not None and d is not None:
        c = 6.0 * n * d
    x = {"chinchilla": d if n is not None else None, "kaplan-n": n, "kaplan-d": d, "kaplan-c": c}[args.form]
    if x is None:
        raise ValueError(f"--form {args.form} needs {need}")
    runs = _load(args)
    fit = _fit(args, runs)
    if args.form == "chinchilla":
        loss, low, high = fit.predict(n, d)
    else:
        loss, low, high = fit.predict(x)
    out = {"form": args.form, "N": n, "D": d, "C": c, "loss": loss, "low": low, "high": high, "params": fit.params}
    warnings = _warnings(args, runs, fit, out)
    return out, f"predicted loss {_fmt(loss)} [95% {_fmt(low)}, {_fmt(high)}] ({args.form}, N={n}, D={d}, C={c})" + warnings


def _cmd_optimal(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    if args.target_loss is not None and args.inference_tokens is None:
        raise ValueError("--target-loss needs --inference-tokens (use 0 for training cost alone)")
    runs = _load(args)
    fit = _fit(args, runs)
    if args.inference_tokens is None:
        out = fit.compute_optimal(args.compute)
        iv = out["intervals"]
        summary = (
            f"compute-optimal at C={_fmt(args.compute)} FLOPs: N={_fmt(out['N'])} [95% {_fmt(iv['N'][0])}, {_fmt(iv['N'][1])}], "
            f"D={_fmt(out['D'])} [95% {_fmt(iv['D'][0])}, {_fmt(iv['D'][1])}], loss={_fmt(out['loss'])}, "
            f"{out['tokens_per_param']:.1f} tokens/param"
        )
    else:
        out = fit.inference_aware_optimal(
            inference_tokens=args.inference_tokens, train_compute=args.compute, target_loss=args.target_loss
        )
        summary = (
            f"inference-aware optimum for loss {_fmt(out['loss'])} with {_fmt(args.inference_tokens)} inference tokens: "
            f"N={_fmt(out['N'])}, D={_fmt(out['D'])} ({out['tokens_per_param']:.1f} tokens/param), "
            f"total {_fmt(out['total_flops'])} FLOPs vs {_fmt(out['chinchilla_total_flops'])} for the Chinchilla-optimal model"
        )
    out["fit"] = fit.to_dict()
    return out, summary + _warnings(args, runs, fit, out)


def _cmd_hparams(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    from surrogates.scaling import fit_step_law

    law = fit_step_law(_load(args), critical_tolerance=args.critical_tolerance)
    pred = law.predict(args.params, args.tokens)
    fallback = sum(c.method == "grid" for c in law.cells)
    out = {"N": args.params, "D": args.tokens, **pred, "fit": law.to_dict()}
    k = law.constants
    summary = (
        f"lr={_fmt(pred['lr'])}, batch_size={_fmt(pred['batch_size'])} tokens for N={_fmt(args.params)}, D={_fmt(args.tokens)}\n"
        f"  lr = {_fmt(k['lr_coef'])} * N^{k['lr_N_exp']:.3f} * D^{k['lr_D_exp']:.3f}; "
        f"batch_size = {_fmt(k['bs_coef'])} * D^{k['bs_D_exp']:.3f}\n"
        f"  {len(law.cells)} (N, D) cells, {len(law.cells) - fallback} optimum from a quadratic fit, {fallback} from the best swept point"
    )
    return out, summary


def _cmd_report(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    from analysis.scaling import scaling_view
    from storage import StorageError
    from storage.read_api import open_read_api

    try:
        with open_read_api(args.storage) as api:
            view = scaling_view(api, args.source)
    except (StorageError, LookupError, OSError) as exc:
        raise ValueError(f"cannot read study {args.source!r}: {exc}".splitlines()[0]) from None
    if "ladder" in view:  # a ladder's answer is its recorded state, shown as recorded
        return view["ladder"], _report_summary(args.source, view["ladder"])
    if not view["available"]:
        raise ValueError(f"study {args.source!r} has no scaling answer: {view['reason']}")
    return view, _fit_summary(args.source, view)


def _fit_summary(name: str, view: dict[str, Any]) -> str:
    fit = view["fit"]
    lines = [f"study {name!r}: {fit['formula']}, fitted to {fit['n_points']} completed trials (loss: {view['loss_from']})"]
    for k, v in fit["params"].items():
        lines.append(f"  {k:>8} = {_fmt(v)}{_band(fit['intervals'].get(k))}")
    if view.get("warning"):
        lines.append(f"  warning: {view['warning']}")
    return "\n".join(lines)


def _report_summary(name: str, state: dict[str, Any]) -> str:
    cells = state.get("cells", [])
    lines = [
        f"scaling ladder {name!r}: {state.get('cells_finished', 0)} of {len(cells)} cells finished, "
        f"{state.get('trials_run', 0)} trials of a {state.get('trials_planned_grid', 0)}-trial full grid"
        + ("" if state.get("complete") else " (not complete)")
    ]
    pred = state.get("prediction")
    fit = state.get("fit") or {}
    if not pred:
        lines.append(f"  no prediction yet: {fit.get('error', 'waiting for finished cells')}")
        return "\n".join(lines)
    law = fit.get("loss_law") or {}
    if law:
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in law.get("params", {}).items())
        lines.append(f"  loss law {law.get('formula')}: {params}")
    band = _band(pred.get("loss_interval"))
    kind = "final" if fit.get("final") else f"provisional, from {fit.get('cells_fitted')} cells"
    lines.append(f"  target N={_fmt(pred['N'])}, D={_fmt(pred['D'])}: loss {_fmt(pred['loss'])}{band} ({kind})")
    if "lr" in pred:
        lines.append(f"  lr={_fmt(pred['lr'])}{_band(pred.get('lr_interval'))}, batch size {pred['batch_size']} sequences "
                     f"({_fmt(pred['batch_size_tokens'])} tokens)")
    run = state.get("target_run") or {}
    if "observed_loss" in run:
        lines.append(
            f"  target run (trial {run['trial']}): observed {_fmt(run['observed_loss'])} vs predicted "
            f"{_fmt(run['predicted_loss_at_observed_N_D'])} ({run['relative_error']:+.2%})"
        )
    elif run:
        lines.append(f"  target run: {run.get('status', run.get('error'))}")
    lines += [f"  warning: {w}" for w in state.get("warnings", [])]
    return "\n".join(lines)


_VERBS = {"fit": _cmd_fit, "predict": _cmd_predict, "optimal": _cmd_optimal, "hparams": _cmd_hparams,
          "report": _cmd_report}



def _plot(fit: Any, runs: Any, args: argparse.Namespace) -> None:
    try:
        import matplotlib
    except ImportError:
        raise ValueError("--plot needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4.5))
    dropped = np.zeros(len(runs), bool)
    if args.drop_highest_loss:
        dropped[np.argsort(runs.loss, kind="stable")[len(runs) - args.drop_highest_loss :]] = True
    if args.form == "chinchilla":
        points = ax.scatter(runs.C[~dropped], runs.loss[~dropped], c=np.log10(runs.N[~dropped]), s=12, cmap="viridis", label="runs")
        ax.scatter(runs.C[dropped], runs.loss[dropped], marker="x", color="k", s=20, label="dropped (highest loss)")
        fig.colorbar(points, ax=ax, label="log10 parameters")
        c = np.geomspace(runs.C.min(), runs.C.max() * 100, 200)
        opt = fit.compute_optimal(c)
        mean = opt["loss"]
        low, high = opt["intervals"]["loss"]
        ax.set_xlabel("training FLOPs C")
        label = "compute-optimal L(N*(C), D*(C))"
        x, x_max = c, runs.C.max()
    else:
        var = args.form.removeprefix("kaplan-").upper()
        values = {"N": runs.N, "D": runs.D, "C": runs.C}[var]
        ax.scatter(values[~dropped], runs.loss[~dropped], s=12, color="0.6", label="runs")
        ax.scatter(values[dropped], runs.loss[dropped], marker="x", color="k", s=20, label="dropped (highest loss)")
        x = np.geomspace(values.min(), values.max() * 100, 200)
        mean, low, high = fit.predict(x)
        ax.set_xlabel({"N": "parameters N", "D": "tokens D", "C": "training FLOPs C"}[var])
        label = f"L({var}) = ({var}c/{var})^alpha"
        x_max = values.max()
    ax.plot(x, mean, color="C3", label=label)
    if np.all(np.isfinite(low)):
        ax.fill_between(x, low, high, color="C3", alpha=0.25, label="bootstrap 95% band")
    ax.axvline(x_max, color="0.3", linestyle=":", label="largest run (extrapolation beyond)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylabel("loss")
    ax.legend(fontsize="small")
    fig.tight_layout()
    from search.cli import InputError, write_output

    fmt = os.path.splitext(args.plot)[1][1:].lower() or "png"
    try:
        write_output(args.plot, lambda target: fig.savefig(target, dpi=120, format=fmt), flag="--plot")
    except InputError as exc:
        raise ValueError(str(exc)) from None
    except ValueError as exc:  # matplotlib has no writer for that extension
        raise ValueError(f"cannot write --plot {args.plot!r}: {exc}; end the name with .png, .svg or .pdf") from None
    finally:
        plt.close(fig)
