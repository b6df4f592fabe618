"""Tables and plots as a paper needs them: LaTeX that compiles (real pdflatex where installed) and is plain
ASCII, intervals never past 100 %, bookkeeping keys kept out of the rows; plot titles that state n and
whether an interval is drawn, legends naming only what varies and sitting outside the axes, clipped bars."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from support.synthetic_runs import recall_metrics, write_run

from dmlbench.results import plots
from dmlbench.results.collect import collect
from dmlbench.results.table_render import to_latex, to_markdown
from dmlbench.results.tables import build_table, load_specs


@pytest.fixture()
def frame(tmp_path: Path) -> pd.DataFrame:
    runs = tmp_path / "runs"
    # bdl: 3 seeds near 100 % (its t-interval reaches past 100); ms: one seed, without sampler params.
    for seed, r1 in enumerate((0.999, 0.93, 0.999)):
        write_run(runs, {"loss.name": "bdl", "seed": seed, "sampler.params": {"classes_per_batch": 4},
                         "train.num_workers": seed}, {"emb": recall_metrics(r1, 1.0)}, dataset="inshop")
    write_run(runs, {"loss.name": "ms", "seed": 0, "train.num_workers": 1}, {"emb": recall_metrics(0.4)}, dataset="inshop")
    return collect(tmp_path).frame


def test_latex_table_is_ascii_right_aligned_and_compiles(frame: pd.DataFrame, tmp_path: Path) -> None:
    table = build_table(frame, next(s for s in load_specs() if s.name == "methods"), "inshop")
    assert table is not None
    assert "train.num_workers" not in table.row_keys  # bookkeeping, not a hyper-parameter
    md = to_markdown(table)
    bdl_row = next(line for line in md.splitlines() if line.startswith("| bdl"))
    assert re.search(r"97\.\d \(\d+\.\d–100\.0\)", bdl_row), bdl_row  # the interval, clipped at 100

    # ms has one seed (no interval), so bdl's bold cannot be a significant win: the caption says so.
    assert table.bold_overlaps() and "Bold marks the highest mean only" in md

    tex = to_latex(table)
    tex.encode("ascii")  # pdflatex without inputenc tricks: no ·, √, ± or – left
    assert "booktabs" in tex.splitlines()[0]  # says what it needs
    colspec = re.search(r"\\begin\{tabular\}\{([^}]*)\}", tex).group(1)
    assert colspec == "l" * len(table.row_keys) + "r" * (len(table.column_values) + 1)  # numbers right-aligned
    assert "t\\_0.975" not in tex and r"\sqrt{}" not in tex  # the caption's formula is math, not escaped text
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed: source checked only")
    doc = tmp_path / "doc.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n" + tex + "\\end{document}\n")
    proc = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert "Missing character" not in log and "Undefined control sequence" not in log


def _svg_texts(path: Path) -> list[str]:
    return re.findall(r"<text[^>]*>([^<]*)</text>", path.read_text()) + re.findall(r"<!-- (.*?) -->", path.read_text())


def test_recall_plot_title_legend_and_clipped_bars(frame: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plots, "FORMATS", ("svg",))
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        (svg,) = plots.plot_recall_curves(frame, tmp_path / "recall", dataset="inshop")
        texts = " ".join(_svg_texts(svg))
        assert "nan" not in texts  # ms has no sampler params: its entry names none
        assert "mean over n=1–3 seeds; 95% t-interval where n ≥ 2" in texts

        one_seed = frame[frame["seed"] == 0]
        (svg1,) = plots.plot_recall_curves(one_seed, tmp_path / "recall1", dataset="inshop")
        assert "1 seed, no interval" in " ".join(_svg_texts(svg1))


def test_recall_plot_axes_never_pass_100_and_the_legend_sits_outside(frame: pd.DataFrame, tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    figures: list[Figure] = []
    real_save = plots.save_figure

    def keep(fig: Figure, stem: Path, formats: object = None) -> list[Path]:
        figures.append(fig)
        return real_save(fig, stem, ("png",))

    plots.save_figure, saved = keep, plots.save_figure  # the real function keeps running; we keep the figure
    try:
        plots.plot_recall_curves(frame, tmp_path / "recall", dataset="inshop")
    finally:
        plots.save_figure = saved
    (ax,) = figures[0].axes
    assert ax.get_ylim()[1] <= 102.0
    legend = ax.get_legend()
    box = legend.get_window_extent().transformed(ax.transAxes.inverted())
    assert box.x0 >= 1.0  # right of the axes, not over the curves
    for line in ax.get_lines():
        assert np.nanmax(line.get_ydata()) <= 100.0  # error-bar caps included


def test_embedding_plot_colours_and_title(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(24), 5)
    run_dir = write_run(tmp_path / "runs", {"loss.name": "bdl", "seed": 3}, {"emb": recall_metrics(0.5)},
                        embeddings={"emb": rng.normal(size=(120, 8)).astype(np.float32), "labels": labels})
    assert len({tuple(c) for c in plots.class_colours(labels)}) == 24
    title = plots.run_title(run_dir)
    assert "bdl" in title and "seed 3" in title and "synthshop" in title and run_dir.name in title
