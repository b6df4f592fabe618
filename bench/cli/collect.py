"""`dmlbench collect`: read every finished run folder under SWEEP_DIR into one long table
(results.csv/.parquet), then write the standard tables and plots. Unfinished and failed runs are listed,
never mixed in."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from dmlbench.errors import UsageError
from dmlbench.results.sources import resolve_source


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "sources", type=Path, nargs="+", metavar="SOURCE",
        help="a sweep folder (run folders), a collected folder or results.csv (e.g. results/baseline), or a tune "
        "folder; several sources make one table and one figure, each row labelled by its source",
    )  # fmt: skip
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default: SOURCE/report; required for several sources)"
    )
    parser.add_argument("--paper", action="store_true", help="show the published numbers beside ours")
    parser.add_argument(
        "--tables", type=Path, default=None, metavar="YAML", help="table specs (default: the presets)"
    )
    parser.add_argument("--no-plots", action="store_true", help="tables only (faster)")
    parser.add_argument(
        "--to", default=None, metavar="mlflow=URI",
        help="also publish the finished runs and the report to an MLflow tracking URI (runs already there are skipped)",
    )


def run(args: argparse.Namespace) -> int:
    from dmlbench.results.collect import collected_table, format_problems
    from dmlbench.results.report import write_report
    from dmlbench.results.sources import collect_sources
    from dmlbench.results.table_render import to_markdown
    from dmlbench.results.tables import load_specs

    if len(args.sources) > 1 and args.out is None:
        raise UsageError(f"collect of {len(args.sources)} sources writes one report: name its folder with --out")
    paths = [_check_source(source) for source in args.sources]
    args.sweep_dir = paths[0]
    from dmlbench.tune import is_tune_dir, require_optuna

    if len(args.sources) == 1 and is_tune_dir(args.sweep_dir):  # only the final stage is a result; trial runs never enter a table
        require_optuna()
        from dmlbench.tune.report import write_tune_report

        table, written = write_tune_report(args.sweep_dir, args.out, plots=not args.no_plots)
        print(table)
        print(f"wrote {len(written)} files to {args.out or args.sweep_dir / 'report'}", file=sys.stderr)
        return 0
    out_dir: Path = args.out or ((args.sweep_dir if args.sweep_dir.is_dir() else args.sweep_dir.parent) / "report")
    # SIGTERM (scancel, a timeout, kill) ends collect through its cleanup: the staged report is removed
    # and the previous report in out_dir stays as it was.
    # The handler is put back afterwards: a process that calls main() (tests, notebooks) keeps its own.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        specs = load_specs(args.tables) if args.tables else None
        if args.to:
            from dmlbench.track.publish import parse_target

            parse_target(args.to)  # a bad target fails before any work
        # one results tree: collected as it is; several sources, or a collected folder (results/baseline): read first
        one_tree = len(paths) == 1 and paths[0].is_dir() and collected_table(paths[0]) is None
        sources = paths[0] if one_tree else collect_sources(args.sources)
        report = write_report(sources, out_dir, specs=specs, paper=args.paper, plots=not args.no_plots)
        written, collection, tables = report.files, report.collection, report.tables
        print("\n\n".join(to_markdown(t) for t in tables) if tables else "(no finished runs to tabulate)")
        if collection.frame.empty and not collection.problems:
            print(f"\nno run folders (directories holding config.yaml) under {args.sweep_dir}", file=sys.stderr)
        else:
            print("\n" + format_problems(collection.problems), file=sys.stderr)
        print(f"wrote {len(written)} files to {out_dir}", file=sys.stderr)
        if args.to:
            _publish(args.to, collection.finished, args.sweep_dir if len(paths) == 1 else out_dir, written)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def _check_source(source: Path) -> Path:
    """The folder (or results.csv) `source` names, checked: one line naming what is wrong otherwise."""
    path = resolve_source(
        source,
        "results folder",
        "a sweep writes to its output_dir (default sweeps/<name>; `dmlbench sweep FILE --dry-run` prints it); ",
    )
    if path != source:
        print(f"{source}: read from the dmlbench checkout: {path}", file=sys.stderr)
    if path.is_file() and path.suffix not in (".csv", ".parquet"):
        raise UsageError(f"results folder not found: {source} is a file (a folder, results.csv or results.parquet)")
    if path.is_dir() and not os.access(path, os.R_OK | os.X_OK):
        raise UsageError(f"cannot read the results folder {source} (permission denied)")
    return path


def _publish(target: str, run_dirs: list[Path], sweep_dir: Path, report_files: list[Path]) -> None:
    from dmlbench.track import TrackerUnavailable
    from dmlbench.track.publish import parse_target, publish_runs

    _kind, uri = parse_target(target)
    try:
        published, skipped = publish_runs(sorted(run_dirs), sweep_dir.resolve().name, uri, [p for p in report_files if p.is_file()])
    except TrackerUnavailable as err:
        raise UsageError(f"cannot publish to {uri}: {err}") from None
    except Exception as err:  # the tracker's own errors (server refused, bad URI): one line, not a traceback
        raise UsageError(f"cannot publish to {uri}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None
    print(f"published {published} run(s) to {uri} ({skipped} already there) and the report", file=sys.stderr)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    print("dmlbench: collect: terminated; the previous report is left as it was", file=sys.stderr)
    raise SystemExit(128 + signum)
