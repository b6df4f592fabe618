"""`dmlbench plot KIND`: recall curves, alpha/beta heatmaps, training curves, embedding views."""

from __future__ import annotations

import argparse
from pathlib import Path

from dmlbench import rundir
from dmlbench.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    kinds = parser.add_subparsers(dest="plot_kind", metavar="KIND")
    kinds.required = True

    recall = kinds.add_parser(
        "recall", help="Recall@K curves per method from a results folder or results.csv"
    )
    sources_help = (
        "results folder(s), results.csv or results.parquet (e.g. sweeps/my_grid results/baseline): several make "
        "one figure, each line labelled by its source"
    )
    recall.add_argument("source", type=Path, nargs="+", help=sources_help)
    recall.add_argument("--layer", default="emb")
    recall.add_argument("--metric", default="recall")
    recall.add_argument("--by", default="loss.name", help="config key: one line per value")

    heat = kinds.add_parser("heatmap", help="metric over two config keys (SGML Figs. 7/8)")
    heat.add_argument("source", type=Path, nargs="+", help=sources_help)
    heat.add_argument("--rows", default="loss.params.alpha")
    heat.add_argument("--cols", default="loss.params.beta")
    heat.add_argument("--metric", default="recall@1")
    heat.add_argument("--layer", default="emb")

    curves = kinds.add_parser("curves", help="training loss and validation metric per epoch")
    curves.add_argument("source", type=Path, nargs="+", help="run folder(s) or results folder(s) (their finished runs)")
    curves.add_argument("--by", default="loss.name")

    embed = kinds.add_parser("embedding", help="PCA / t-SNE / UMAP of a run's embeddings_sample.npz")
    embed.add_argument("run_dir", type=Path)
    embed.add_argument(
        "--attribute", default=None, help="attribute name to colour by (default: most balanced)"
    )
    embed.add_argument("--methods", default=None, help="comma list of pca,tsne,umap (default: all available)")
    embed.add_argument("--max-points", type=int, default=1500)

    for sub in (recall, heat, curves, embed):
        sub.add_argument("--out", type=Path, default=Path("plots"), help="output folder (default: ./plots)")


def run(args: argparse.Namespace) -> int:
    from dmlbench.results.collect import collect_history, split_metric
    from dmlbench.results.plots import plot_embedding, plot_heatmap, plot_recall_curves, plot_training_curves
    from dmlbench.results.sources import collect_sources, resolve_source
    from dmlbench.results.tables import short_key

    written: list[Path] = []
    if args.plot_kind in ("recall", "heatmap"):
        frame = collect_sources(args.source).frame
        for dataset in sorted(frame["dataset"].dropna().unique()):
            if args.plot_kind == "recall":
                stem = args.out / f"recall_{dataset}_{args.layer}"
                written += plot_recall_curves(
                    frame, stem, dataset=dataset, layer=args.layer, metric=args.metric, by=args.by
                )
            else:
                metric, k = split_metric(args.metric)
                stem = args.out / f"heatmap_{dataset}_{short_key(args.rows)}_{short_key(args.cols)}"
                written += plot_heatmap(
                    frame,
                    stem,
                    dataset=dataset,
                    row_key=args.rows,
                    col_key=args.cols,
                    metric=metric,
                    k=k or 1,
                    layer=args.layer,
                )
    elif args.plot_kind == "curves":
        run_dirs = [p for source in args.source for p in _finished_runs(resolve_source(source))]
        written += plot_training_curves(collect_history(run_dirs), args.out / "training_curves", by=args.by)
    else:
        sample = args.run_dir / rundir.EMBEDDINGS_SAMPLE
        if not sample.is_file():
            raise UsageError(f"no {sample.name} in {args.run_dir} (the trainer writes it at the end of a run)")
        methods = args.methods.split(",") if args.methods else None
        written += plot_embedding(
            sample,
            args.out / f"embedding_{args.run_dir.name}",
            methods=methods,
            attribute=args.attribute,
            max_points=args.max_points,
        )
    if not written:
        raise UsageError("nothing to plot: the results do not contain what this plot needs")
    for path in written:
        print(path)
    return 0


def _finished_runs(source: Path) -> list[Path]:
    """A run folder itself, or the finished run folders of a results tree."""
    from dmlbench.results.collect import collect

    if (source / rundir.CONFIG).is_file():
        return [source]
    return collect(source).finished if source.is_dir() else []
