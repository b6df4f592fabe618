"""`dmlbench quickstart`: a real sweep on self-generated data, on CPU, in minutes.

1. renders synthshop (In-Shop on-disk format) into `data/synthshop-<size>` unless it is already there;
2. runs the `quickstart` sweep preset (losses x samplers) through the sweep machinery
   (inline by default, or `--executor local` for one subprocess per cell);
3. prints a Recall@K / Precision@K table with one row per cell and layer, and writes the report
   (long CSV, paper-style tables, plots) next to the runs.

Re-running it skips finished cells, so an interrupted quick start picks up where it stopped.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dmlbench.config import load_yaml
from dmlbench.presets import preset_path

# --tiny: fewer, smaller images and steps, for a smoke test in about two minutes on 2 cores.
TINY_OVERRIDES: dict[str, Any] = {
    "data.image_size": 32,
    "train.epochs": 3,
    "sampler.batches_per_epoch": 8,
}
QUICKSTART_METRICS = ("recall@1", "recall@10", "recall@20", "precision@1", "precision@10", "map@r")


def quickstart_sweep_data(size: str, data_root: Path, output_dir: Path) -> dict[str, Any]:
    """The quickstart preset with its data folder, output folder and size applied."""
    path = preset_path("quickstart")
    assert path is not None, "the quickstart preset ships with the package"
    data = load_yaml(path.read_text())
    base = data["base"]
    base.setdefault("data", {})["root"] = str(data_root)
    if size == "tiny":
        for key, value in TINY_OVERRIDES.items():
            section, name = key.split(".")
            base.setdefault(section, {})[name] = value
    data["name"] = "quickstart" if size == "small" else "quickstart-tiny"
    data["output_dir"] = str(output_dir)
    return data


def quickstart_table(sweep_dir: Path) -> str:
    """Recall@K / Precision@K per cell (loss x sampler) and layer, as a GitHub-Markdown table."""
    from dmlbench.results.collect import collect
    from dmlbench.results.table_render import to_markdown
    from dmlbench.results.tables import TableSpec, build_table

    frame = collect(sweep_dir).frame
    if frame.empty:
        return "(no finished runs)"
    spec = TableSpec.from_dict(
        "quickstart",
        {
            "title": "Quick start on synthshop: Recall@K, Precision@K and MAP@R per loss, sampler and layer",
            "rows": ["loss.name", "sampler.name", "layer"],
            "columns": "metric",
            "metrics": list(QUICKSTART_METRICS),
            "layer": None,
            "row_order": ["emb", "fc", "conv"],
            "min_rows": 1,
        },
    )
    dataset = str(frame["dataset"].iloc[0])
    table = build_table(frame, spec, dataset)
    return to_markdown(table) if table is not None else "(no table)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tiny", action="store_true", help="tiny dataset and short runs (about 2 minutes)")
    p.add_argument("--executor", choices=["inline", "local"], default="inline")
    p.add_argument("--data-dir", default="data", help="where synthshop is generated (default: data/)")
    p.add_argument("--out", default=None, help="sweep folder (default: sweeps/quickstart[-tiny])")
    p.add_argument("--report", default=None, help="report folder (default: <sweep folder>/report)")
    p.add_argument("--no-plots", action="store_true", help="tables only (plots take ~30 s with t-SNE)")


def run(args: argparse.Namespace) -> int:
    from dmlbench.data.synthshop import generate_synthshop
    from dmlbench.results.report import write_report
    from dmlbench.sweep import run_sweep, sweep_from_dict

    size = "tiny" if args.tiny else "small"
    data_root = Path(args.data_dir) / f"synthshop-{size}"
    generate_synthshop(data_root, size, seed=0, progress=True)
    out = Path(args.out or ("sweeps/quickstart" if size == "small" else "sweeps/quickstart-tiny"))
    sweep = sweep_from_dict(quickstart_sweep_data(size, data_root, out), executor=args.executor)
    report = run_sweep(sweep)
    failed = list(report.failed or [])
    report_dir = Path(args.report) if args.report else out / "report"
    write_report(out, report_dir, plots=not args.no_plots)
    table = quickstart_table(out)
    (report_dir / "quickstart_table.md").write_text(table + "\n")
    print()
    print(table)
    print(f"\nruns: {out / 'runs'}    report (tables, plots, CSV): {report_dir}")
    if failed:
        print(f"{len(failed)} cell(s) failed; see `dmlbench status {out}`")
        return 1
    return 0
