"""The ``search`` command. Heavy modules are imported inside each verb so ``--help`` is instant.

The read verbs (studies, trials, best, lineage, importance, pareto, export) read through
``storage.read_api``, the read-only view the dashboard uses, and compute with ``analysis``, as the
dashboard does; only run, resume and db open the storage for writing.

Exit codes: 0 success, 1 failure at run time, 2 invalid input (nothing written), 130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Callable

EXIT_OK, EXIT_RUNTIME, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
TRIAL_STATES = ("waiting", "running", "paused", "complete", "pruned", "failed")  # storage.TrialState.ALL


class InputError(Exception):
    """Invalid input found by a verb: one line, exit 2."""


def _storage_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", metavar="URL",
                   help="SQLAlchemy URL (default: $SEARCH_STORAGE, then the URL in the file "
                        "$SEARCH_STORAGE_FILE, then sqlite:///search.db)")


def _trial_json(t) -> dict[str, Any]:
    def ts(d):
        return None if d is None else d.isoformat() + "Z"

    return {
        "number": t.number, "state": t.state, "params": t.params,
        "metrics": t.metrics, "value": t.value,
        "values": None if t.values is None else list(t.values),
        "error": t.error, "attempt": t.attempt, "node": t.node, "last_step": t.last_step,
        "started_at": ts(t.started_at), "finished_at": ts(t.finished_at),
    }


def _print_json(obj: Any) -> None:
    from storage.read_api import json_safe

    json.dump(json_safe(obj), sys.stdout, indent=None, default=str)
    sys.stdout.write("\n")


class _ProgressPrinter:
    """One live status line on a terminal; a line every ``every`` seconds otherwise."""

    def __init__(self, stream=sys.stderr, every: float = 10.0) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.every = 0.2 if self.tty else every
        self._last = 0.0

    def __call__(self, p) -> None:
        now = time.monotonic()
        final = p.final
        if not final and now - self._last < self.every:
            return
        self._last = now
        best = "-" if p.best is None else f"{p.best:.6g}"
        line = (f"trials {p.done}/{p.budget} done, {p.running} running, {p.failed} failed | "
                f"best {best} | {p.elapsed_s:.0f}s")
        if self.tty:
            self.stream.write("\r\033[K" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _summary_lines(summary, metrics: tuple[str, ...]) -> list[str]:
    lines = [f"study {summary.study}: {summary.complete} complete, {summary.pruned} pruned, "
             f"{summary.failed} failed in {summary.elapsed_s:.1f}s"]
    if summary.requeued_at_start:
        lines.append(f"re-ran {summary.requeued_at_start} interrupted trial(s), from their last checkpoint where one existed")
    if summary.best is not None:
        b = summary.best
        vals = ", ".join(f"{m}={v:.6g}" for m, v in zip(metrics, b.values or ()))
        lines.append(f"best trial #{b.number}: {vals} params {json.dumps(b.params, default=str)}")
    return lines


def _finish_run(summary, args, metrics: tuple[str, ...]) -> int:
    if args.json:
        _print_json({"study": summary.study, "complete": summary.complete, "pruned": summary.pruned,
                     "failed": summary.failed, "interrupted": summary.interrupted,
                     "requeued_at_start": summary.requeued_at_start, "elapsed_s": summary.elapsed_s,
                     "best": None if summary.best is None else _trial_json(summary.best)})
    else:
        print("\n".join(_summary_lines(summary, metrics)))
    if summary.interrupted:
        print(f"interrupted: run `search resume {summary.study}` to finish the study", file=sys.stderr)
        return EXIT_INTERRUPTED
    if summary.complete == 0 and summary.failed:
        print(f"error: no trial completed ({summary.failed} failed); `search trials {summary.study}` shows why",
              file=sys.stderr)
        return EXIT_RUNTIME
    return EXIT_OK


def _interrupt_on_sigterm() -> None:
    """SIGTERM (a scheduler, `kill`) stops a run like Ctrl-C: running trials are requeued."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def cmd_run(args) -> int:
    from search.study import load_config, run

    config = load_config(args.file)
    _interrupt_on_sigterm()
    progress = None if args.quiet else _ProgressPrinter()
    summary = run(config, storage=args.storage, backend=args.backend, on_progress=progress)
    return _finish_run(summary, args, summary.metrics)


def cmd_resume(args) -> int:
    from search.study import resume

    _interrupt_on_sigterm()
    progress = None if args.quiet else _ProgressPrinter()
    summary = resume(args.name, storage=args.storage, backend=args.backend, on_progress=progress)
    return _finish_run(summary, args, summary.metrics)


def _read_api(args):
    from storage.read_api import open_read_api

    return open_read_api(args.storage)


def cmd_studies(args) -> int:
    with _read_api(args) as api:
        rows = []
        for s in api.studies():
            c = s["counts"]
            rows.append({
                "name": s["name"], "state": s["state"], "algorithm": s["algorithm"],
                "metric": s["metrics"][0], "direction": s["directions"][0],
                "complete": c.get("COMPLETE", 0), "pruned": c.get("PRUNED", 0), "failed": c.get("FAILED", 0),
                "running": c.get("RUNNING", 0), "waiting": c.get("WAITING", 0), "paused": c.get("PAUSED", 0),
                "best": s["best"], "created_at": s["started_at"], "duration_s": s["duration_s"],
                "stale": s["stale"], "last_activity_at": s["last_activity_at"],
            })
    if args.json:
        _print_json(rows)
        return EXIT_OK
    if not rows:
        print("no studies")
        return EXIT_OK
    print(f"{'name':<28} {'state':<12} {'algorithm':<9} {'done':>5} {'run':>4} {'fail':>4}  best")
    for r in rows:
        best = "-" if r["best"] is None else f"{r['best']:.6g} ({r['metric']}, {r['direction'][:3]})"
        print(f"{r['name']:<28} {r['state']:<12} {str(r['algorithm']):<9} {r['complete'] + r['pruned']:>5} "
              f"{r['running']:>4} {r['failed']:>4}  {best}")
    for r in rows:
        if r["stale"]:
            print(f"note: {r['name']} is RUNNING but its trials have not heartbeaten since {r['last_activity_at']}: "
                  f"its controller stopped; `search resume {r['name']}` finishes it")
    return EXIT_OK


def _load_trials(args):
    with _read_api(args) as api:
        return api.get_study(args.name), api.get_trials(args.name)


def _reached(study, trials, api) -> dict[int, str]:
    """{number: "0.123 (pruned at step 4)"} for trials without an objective value that reported
    one: the last value a pruned, paused or running trial reached, marked as such."""
    import math

    metric = study.metrics[0]
    out: dict[int, tuple[Any, float]] = {}
    missing = []
    for t in trials:
        if t.value is not None or t.state not in ("PRUNED", "PAUSED", "RUNNING"):
            continue
        v = t.metrics.get(metric)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[t.number] = (t.last_step, float(v))
        else:
            missing.append(t.number)
    out.update(api.last_reported(study.name, metric, missing))
    states = {t.number: t.state.lower() for t in trials}
    return {n: f"{v:.6g} ({states[n]} at step {step})" if step is not None else f"{v:.6g} ({states[n]})"
            for n, (step, v) in out.items()}


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def cmd_trials(args) -> int:
    with _read_api(args) as api:
        study = api.get_study(args.name)
        trials = api.get_trials(args.name, [args.state.upper()] if args.state else (), limit=args.limit,
                                newest=args.newest)
        if args.newest:
            trials.reverse()  # the newest N, shown in number order
        reached = {} if args.json else _reached(study, trials, api)
    if args.json:
        _print_json([_trial_json(t) for t in trials])
        return EXIT_OK
    shown = {t.number: reached.get(t.number, "-" if t.value is None else f"{t.value:.6g}") for t in trials}
    width = max([14, len(study.metrics[0]), *map(len, shown.values())])
    print(f"{'#':>5} {'state':<9} {study.metrics[0]:>{width}}  params")
    for t in trials:
        extra = f"  error: {t.error}" if t.error and t.state == "FAILED" else ""
        print(f"{t.number:>5} {t.state:<9} {shown[t.number]:>{width}}  {json.dumps(t.params, default=str)}{extra}")
    return EXIT_OK


def cmd_best(args) -> int:
    with _read_api(args) as api:
        study = api.get_study(args.name)
        best = api.best_trial(args.name)
    if best is None:
        print(f"error: study {args.name!r} has no completed trial yet", file=sys.stderr)
        return EXIT_RUNTIME
    if args.json:
        _print_json(_trial_json(best))
    else:
        vals = ", ".join(f"{m}={v:.6g}" for m, v in zip(study.metrics, best.values or ()))
        print(f"trial #{best.number}: {vals}\nparams {json.dumps(best.params, default=str)}")
    return EXIT_OK


def cmd_lineage(args) -> int:
    from search.lineage import lineage_report

    with _read_api(args) as api:
        report = lineage_report(api.get_trials(args.name), api.get_exploits(args.name), api.best_trial(args.name))
    if args.json:
        _print_json(report)
        return EXIT_OK
    print(f"{len(report['exploits'])} exploits")
    for e in report["exploits"]:
        print(f"  step {e['step']:>6}: trial {e['child']} <- trial {e['parent']} (its step {e['parent_step']}) "
              f"{json.dumps(e['params_after'], default=str)}")
    if report["best"]:
        print(f"best trial #{report['best']['number']} schedule:")
        for seg in report["best"]["schedule"]:
            print(f"  from step {seg['from_step']:>6}: {json.dumps(seg['params'], default=str)}")
    return EXIT_OK


def cmd_importance(args) -> int:
    from analysis.importance import importance_view

    with _read_api(args) as api:
        try:
            result = importance_view(api, args.name, args.objective)
        except ValueError as exc:  # an objective the study does not have
            raise InputError(f"--objective: {exc}") from None
    if args.json:
        _print_json(result)
        return EXIT_OK
    which = (f"trials at step {result['step']}" if result.get("basis") == "step" else "completed trials")
    print(f"{result['metric']}: {result['n_trials']} {which}; {result.get('method') or result.get('note')}")
    for name, value in sorted(result["importance"].items(), key=lambda kv: -kv[1]):
        print(f"  {name:<24} {value:.3f}")
    return EXIT_OK


def cmd_pareto(args) -> int:
    from analysis.pareto import pareto_view

    with _read_api(args) as api:
        try:
            view = pareto_view(api, args.name)
        except ValueError as exc:  # one objective
            raise InputError(str(exc)) from None
    front = [{"number": n, "values": v, "params": p}
             for n, v, p, on in zip(view["numbers"], view["values"], view["params"], view["front"]) if on]
    out = {"study": view["study"], "metrics": view["metrics"], "directions": view["directions"], "front": front}
    if args.json:
        _print_json(out)
    else:
        print(f"{len(front)} non-dominated of {len(view['numbers'])} completed trials ({', '.join(view['metrics'])})")
        for t in front:
            print(f"  #{t['number']:<5} {t['values']}  {json.dumps(t['params'], default=str)}")
    return EXIT_OK


def cmd_export(args) -> int:
    import pandas as pd

    _study, trials = _load_trials(args)
    rows = []
    for t in trials:
        row = {k: v for k, v in _trial_json(t).items() if k not in ("params", "metrics", "values")}
        row.update({f"params_{k}": v for k, v in t.params.items()})
        row.update({f"metrics_{k}": v for k, v in t.metrics.items()})
        rows.append(row)
    df = pd.DataFrame(rows)
    out = args.output

    def write(target) -> None:
        if args.format == "csv":
            df.to_csv(target, index=False)
        elif args.format == "json":
            from storage.read_api import json_safe

            with open(target, "w", encoding="utf-8") as f:
                json.dump(json_safe([_trial_json(t) for t in trials]), f, indent=1, default=str)
        else:
            df.to_parquet(target, index=False)

    write_output(out, write)
    print(f"wrote {len(trials)} trials to {out}")
    return EXIT_OK


def write_output(path: str, write: Callable[[str], None], *, flag: str = "-o") -> None:
    """``write(target)`` so that ``path`` ends up whole or untouched: a regular file is written
    beside it and renamed over it; a device or pipe (/dev/stdout) is written directly. Every
    OSError becomes one line naming the path, what is wrong and the fix (an InputError: exit 2)."""
    import errno
    import stat
    import tempfile

    def refuse(exc: OSError) -> InputError:
        other = f"choose another path with {flag}"
        why, fix = {
            errno.ENOSPC: ("the disk is full", f"free some space or {other}"),
            errno.EDQUOT: ("the disk quota is exceeded", f"free some space or {other}"),
            errno.EACCES: ("permission denied", f"choose a path you can write with {flag}"),
            errno.EPERM: ("permission denied", f"choose a path you can write with {flag}"),
            errno.EROFS: ("the file system is read-only", other),
            errno.ENOENT: ("its folder does not exist", f"create the folder or {other}"),
            errno.ENOTDIR: ("a part of its folder is not a folder", other),
            errno.EISDIR: ("it is a folder", f"name a file inside it, e.g. {flag} FOLDER/NAME"),
            errno.ENAMETOOLONG: ("the name is too long", other),
        }.get(exc.errno or 0, (exc.strerror or str(exc), other))
        return InputError(f"cannot write {flag} {path!r}: {why}; {fix} (nothing was written)")

    real = os.path.realpath(path)  # through a symlink: the file it names is replaced, the link kept
    folder = os.path.dirname(real)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise refuse(exc) from None
    if mode is not None and stat.S_ISDIR(mode):
        raise refuse(OSError(errno.EISDIR, "is a directory"))
    if mode is not None and not stat.S_ISREG(mode):
        try:
            write(path)
        except OSError as exc:
            raise refuse(exc) from None
        return
    if not os.path.isdir(folder):
        raise refuse(OSError(errno.ENOENT if not os.path.exists(folder) else errno.ENOTDIR, "no folder"))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".search-export-", dir=folder)
        os.close(fd)
    except OSError as exc:
        if exc.errno == errno.ENOENT:  # the folder exists (checked above) but takes no new files (/proc)
            raise refuse(OSError(errno.EACCES, "no new files")) from None
        raise refuse(exc) from None
    try:
        write(tmp)
        if mode is not None:
            os.chmod(tmp, stat.S_IMODE(mode))
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, real)
    except OSError as exc:
        raise refuse(exc) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _sqlite_file(url: str) -> str | None:
    """The database file of a SQLite URL (None for another database or an in-memory one)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return None  # open_storage names the bad URL
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return parsed.database


def _check_sqlite_file(path: str) -> None:
    """InputError unless ``path`` is a SQLite database (or an empty file, which SQLite starts one in)."""
    where = os.path.abspath(path)
    if os.path.isdir(path):
        raise InputError(f"{where!r} is a folder, not a database file; check --storage")
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise InputError(f"cannot read {where!r}: {exc.strerror}; check --storage") from None
    if head and head != b"SQLite format 3\x00":
        raise InputError(f"{where!r} is not a SQLite database; check --storage")


def cmd_db(args) -> int:
    from storage import open_storage, resolve_url, safe_url

    url = resolve_url(args.storage)
    if args.db_verb == "upgrade":
        path = _sqlite_file(url)
        if path is not None and not os.path.exists(path) and not args.create:
            # A mistyped path would otherwise become a new, empty database.
            raise InputError(f"no database file at {os.path.abspath(path)!r}; check --storage, or pass --create "
                             "to make a new database there")
        if path is not None and os.path.exists(path):
            _check_sqlite_file(path)
        with open_storage(url, upgrade=True) as st:
            rev = st.schema_revision()
        print(f"storage {safe_url(url)} is at schema revision {rev}")
        return EXIT_OK
    from storage.read_api import open_read_api

    # Read-only and without the revision check: an old database answers with its revision.
    with open_read_api(url, check_schema=False) as api:
        current, head = api.schema_revision()
    if current is None:
        raise InputError(f"storage {safe_url(url)} holds no search database (no schema revision recorded); "
                         "check --storage")
    print(current)
    if current != head:
        print(f"note: this version of search needs schema revision {head}; run `search db upgrade --storage URL`",
              file=sys.stderr)
    return EXIT_OK


def cmd_schema(args) -> int:
    from search.schema import study_schema

    json.dump(study_schema(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="search", description="Hyperparameter and architecture search over real PyTorch trials.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True

    p = sub.add_parser("run", help="create a study from a YAML file and run it")
    p.add_argument("file", help="study file (YAML)")
    _storage_arg(p)
    p.add_argument("--backend", choices=["ray", "inprocess", "simulated"], help="override the study's backend")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("resume", help="finish an interrupted study")
    p.add_argument("name")
    _storage_arg(p)
    p.add_argument("--backend", choices=["ray", "inprocess", "simulated"], help="override the study's backend")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("studies", help="list studies")
    _storage_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_studies)

    p = sub.add_parser("trials", help="list a study's trials")
    p.add_argument("name")
    _storage_arg(p)
    p.add_argument("--state", choices=TRIAL_STATES, type=str.lower,
                   help="only trials in this state; a pruned, paused or running trial shows the last value "
                        "it reported, marked as such")
    p.add_argument("--limit", type=_positive, metavar="N", help="at most N trials (the first N by number)")
    p.add_argument("--newest", action="store_true", help="with --limit: the newest N trials instead of the first")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_trials)

    p = sub.add_parser("best", help="a study's best trial")
    p.add_argument("name")
    _storage_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_best)

    p = sub.add_parser("lineage", help="PBT exploits and every member's hyperparameter schedule")
    p.add_argument("name")
    _storage_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_lineage)

    p = sub.add_parser("importance", help="parameter importance (fANOVA-style, from a fitted forest)")
    p.add_argument("name")
    _storage_arg(p)
    p.add_argument("--objective", type=int, default=0, help="index of the objective (multi-objective studies)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_importance)

    p = sub.add_parser("pareto", help="the Pareto front of a multi-objective study")
    p.add_argument("name")
    _storage_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_pareto)

    p = sub.add_parser("export", help="write a study's trials to a file")
    p.add_argument("name")
    _storage_arg(p)
    p.add_argument("--format", choices=["csv", "json", "parquet"], required=True)
    p.add_argument("-o", "--output", required=True, metavar="PATH")
    p.set_defaults(func=cmd_export)

    from search import cluster_cli, dashboard_cli, scaling_cli

    cluster_cli.add_parsers(sub, _storage_arg)
    dashboard_cli.add_parser(sub)
    sub.choices["dashboard"].set_defaults(func=dashboard_cli.run)

    scaling_cli.add_parser(sub)
    sub.choices["scaling"].set_defaults(func=scaling_cli.run)

    from search import import_optuna

    import_optuna.add_parser(sub, _storage_arg)

    p = sub.add_parser("db", help="storage schema: `search db upgrade` migrates an older database",
                       description="`search db current` prints the database's schema revision (an old one too); "
                                   "`search db upgrade` migrates it to this version's, refusing a SQLite file that "
                                   "does not exist unless --create is given.")
    p.add_argument("db_verb", choices=["upgrade", "current"])
    _storage_arg(p)
    p.add_argument("--create", action="store_true",
                   help="upgrade: make a new database when the SQLite file does not exist (default: refuse)")
    p.set_defaults(func=cmd_db)

    p = sub.add_parser("schema", help="print the JSON Schema of the study file (for editors' YAML support)")
    p.set_defaults(func=cmd_schema)
    return parser


def _input_errors() -> tuple[type[BaseException], ...]:
    from search.config import ConfigError
    from storage import StorageError

    errs: list[type[BaseException]] = [ConfigError, InputError, StorageError]
    if "search.cluster_cli" in sys.modules:
        from search.cluster_cli import ClusterInputError

        errs.append(ClusterInputError)
    if "search.backends.base" in sys.modules:
        from search.backends.base import BackendError

        errs.append(BackendError)
    return tuple(errs)


def main(argv: list[str] | None = None) -> int:
    import logging

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="search: %(message)s", stream=sys.stderr)
    func: Callable[[Any], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - mapped to an exit code and one line below
        if isinstance(exc, _input_errors()):
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_INPUT
        if os.environ.get("SEARCH_DEBUG"):
            raise
        print(f"error: {type(exc).__name__}: {exc} (set SEARCH_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main())
