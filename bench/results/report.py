"""`dmlbench collect`: a results tree -> long table, standard tables (md/tex/csv), plots and report.md.

`write_report(sweep_dir, out_dir)` is the one entry point shared by `collect` and `quickstart`.
Layout of `out_dir`::

    results.csv / results.parquet   the long frame (one row per run x layer x metric x K)
    not_collected.csv               failed / unfinished / broken run folders (never in the tables)
    tables/<table>_<dataset>.{md,tex,csv}
    plots/recall_<dataset>_<layer>.{png,pdf}, heatmap_..., training_curves.{png,pdf}, embedding_<run>.{png,pdf}
    report.md                       every table and plot on one page
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dmlbench import rundir
from dmlbench.results.collect import (
    Collection,
    collect,
    collect_history,
    format_problems,
    pack_hits,
    save_frame,
)
from dmlbench.results.plots import plot_embedding, plot_heatmap, plot_recall_curves, plot_training_curves
from dmlbench.results.power_report import power_markdown
from dmlbench.results.table_render import to_markdown, write_tables
from dmlbench.results.tables import Table, TableSpec, build_tables, load_paper, load_specs

# The code that draws a report: a committed report (results/quickstart) is current only while the hash of
# these files equals the one it was drawn with (`drawn_by.json`; tests/results/test_committed_reports.py).
DRAWING_CODE: tuple[str, ...] = (
    "results/plots.py", "results/table_render.py", "results/tables.py", "results/report.py",
    "results/power_report.py", "results/tables.yaml",
)
DRAWN_BY = "drawn_by.json"


def drawing_code_hash() -> str:
    """sha256 over the DRAWING_CODE files (path and bytes of each, in order)."""
    import hashlib

    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for rel in DRAWING_CODE:
        digest.update(rel.encode() + b"\0" + (package / rel).read_bytes() + b"\0")
    return digest.hexdigest()


def _best_run_with_sample(collection: Collection, dataset: str) -> Path | None:
    """The run with the highest emb Recall@1 on `dataset` that saved an embedding sample."""
    frame = collection.frame
    sel = frame[
        (frame["dataset"] == dataset)
        & (frame["layer"] == "emb")
        & (frame["metric"] == "recall")
        & (frame["k"] == 1)
    ]
    for rel in sel.sort_values(["value", "run_id"], ascending=[False, True])["path"]:
        run_dir = collection.root / rel
        if (run_dir / rundir.EMBEDDINGS_SAMPLE).is_file():
            return run_dir
    return None


def write_plots(
    collection: Collection, plots_dir: Path, embedding_methods: Sequence[str] | None = None, by: str = "loss.name"
) -> list[Path]:
    """`by`: what one line of the Recall@K and training-curve plots is (a tune's report: its method `name`)."""
    frame = collection.frame
    written: list[Path] = []
    for dataset in sorted(frame["dataset"].dropna().unique()):
        written += plot_recall_curves(
            frame, plots_dir / f"recall_{dataset}_emb", dataset=dataset, layer="emb", by=by
        )
        written += plot_heatmap(frame, plots_dir / f"heatmap_{dataset}_alpha_beta", dataset=dataset)
        run_dir = _best_run_with_sample(collection, dataset)
        if run_dir is not None:
            stem = plots_dir / f"embedding_{dataset}_{run_dir.name}"
            written += plot_embedding(run_dir / rundir.EMBEDDINGS_SAMPLE, stem, methods=embedding_methods)
    history = collect_history(collection.finished)
    written += plot_training_curves(history, plots_dir / "training_curves", by=by)
    return written


def _report_markdown(
    collection: Collection, tables_md: list[str], plots: list[Path], out_dir: Path, power_md: str = ""
) -> str:
    n_runs = len(collection.finished)
    lines = [
        "# Results report",
        "",
        f"{n_runs} finished run(s) collected; {len(collection.problems)} run folder(s) not collected.",
        "",
    ]
    if collection.problems:
        lines += ["```", format_problems(collection.problems), "```", ""]
    lines += ["## Tables", ""]
    for text in tables_md:
        lines += [text, ""]
    if power_md:
        lines += [power_md, ""]
    if plots:
        lines += ["## Plots", ""]
        for path in plots:
            if path.suffix == ".png":
                rel = os.path.relpath(path, out_dir)
                lines += [f"![{path.stem}]({rel})", ""]
    return "\n".join(lines)


@dataclass
class Report:
    """What `write_report` wrote: the files (final paths), the collection it read and the tables it built."""

    files: list[Path]
    collection: Collection
    tables: list[Table]


def write_report(
    sweep_dir: Path | Collection,
    out_dir: Path,
    *,
    specs: Sequence[TableSpec] | None = None,
    paper: bool = False,
    plots: bool = True,
    embedding_methods: Sequence[str] | None = None,
    by: str = "loss.name",
) -> Report:
    """Collect `sweep_dir` and write the long table, the standard tables and plots into `out_dir`.

    `embedding_methods`: projections for the embedding view (default: pca, tsne and umap when installed).
    `by`: the key that names a method in the plots (a tune's final stage uses `name`).
    """
    out_dir = Path(out_dir)
    # a Collection: several sources read already (dmlbench.results.sources.collect_sources)
    collection = sweep_dir if isinstance(sweep_dir, Collection) else collect(Path(sweep_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    # Everything is written into a staging folder first and moved in file by file (report.md last) once
    # complete: a collect killed while it works (the plots take minutes) leaves the previous report whole.
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        written, tables = _write_report_files(collection, staging, specs, paper, plots, embedding_methods, by)
        return Report(_publish(staging, out_dir, written), collection, tables)
    except OSError as err:  # pandas and matplotlib do not name the file a full disk refused: name the report
        if err.errno is None or err.filename:
            raise
        raise OSError(err.errno, err.strerror, str(out_dir)) from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _publish(staging: Path, out_dir: Path, written: list[Path]) -> list[Path]:
    """Move the staged files into `out_dir` (atomic renames, report.md last); their final paths."""
    final: list[Path] = []
    for path in sorted(written, key=lambda p: p.name == "report.md"):
        target = out_dir / path.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        final.append(target)
    return final


def _write_report_files(
    collection: Collection,
    out_dir: Path,
    specs: Sequence[TableSpec] | None,
    paper: bool,
    plots: bool,
    embedding_methods: Sequence[str] | None,
    by: str = "loss.name",
) -> tuple[list[Path], list[Table]]:
    written = save_frame(collection.frame, out_dir)
    hits = collection.query_hits() if not collection.frame.empty else {}
    hits_file = pack_hits(hits, out_dir)
    written += [hits_file] if hits_file is not None else []
    power_md = power_markdown(collection.frame, hits) if not collection.frame.empty else ""
    status = out_dir / "not_collected.csv"
    collection.problems_frame().to_csv(status, index=False)
    written.append(status)
    tables = build_tables(
        collection.frame, specs if specs is not None else load_specs(), load_paper() if paper else None
    )
    written += write_tables(tables, out_dir / "tables")
    plot_paths = (
        write_plots(collection, out_dir / "plots", embedding_methods, by)
        if plots and not collection.frame.empty
        else []
    )
    written += plot_paths
    stamp = out_dir / DRAWN_BY
    rundir.atomic_write_json(stamp, {"sha256": drawing_code_hash(), "files": [f"bench/{f}" for f in DRAWING_CODE]})
    written.append(stamp)
    report = out_dir / "report.md"
    report.write_text(
        _report_markdown(collection, [to_markdown(t) for t in tables], plot_paths, out_dir, power_md) + "\n"
    )
    written.append(report)
    return written, tables
