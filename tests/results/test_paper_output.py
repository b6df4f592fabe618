"""Tables and plots as a paper needs them: LaTeX that compiles (real pdflatex where installed) and is plain
ASCII, intervals never past 100 %, bookkeeping keys kept out of the rows; plot titles that state n and
whether an interval is drawn, legends naming only what varies and sitting outside the axes, clipped bars."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
import pytest
from support.synthetic_runs import recall_metrics, write_run

from dmlbench.results import plots
from dmlbench.results.collect import collect
from dmlbench.results.table_render import LATEX_PREAMBLE, to_latex, to_markdown
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
        pytest.skip("pdflatex not installed (Debian/Ubuntu: apt-get install texlive-latex-recommended): source checked only")
    compile_article(tex, tmp_path)


def compile_article(tex: str, folder: Path) -> str:
    """pdflatex on an `article` holding the table with the preamble to_latex names; its log. Overfull
    boxes (a table wider than the text) and missing characters fail."""
    doc = folder / "doc.tex"
    doc.write_text(f"\\documentclass{{article}}\n{LATEX_PREAMBLE}\n\\begin{{document}}\n{tex}\\end{{document}}\n")
    proc = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
        cwd=folder, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    log = (folder / "doc.log").read_text(errors="replace")
    assert "Missing character" not in log and "Undefined control sequence" not in log
    assert "Overfull \\hbox" not in log, log[-3000:]
    return log


def test_wide_latex_table_fits_article_with_short_caption_and_readable_headers(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for loss in ("bdl", "multi-similarity", "circle"):
        for seed in range(3):
            grid = {"loss.name": loss, "seed": seed, "loss.params.alpha": 0.0016051911333587634 if loss == "bdl" else 49.92788612306116,
                    "train.lr": 0.0008731890394577651, "sampler.name": "batch-wise", "model.backbone": f"resnet50-{loss}"}
            write_run(runs, grid, {"emb": recall_metrics(0.5 + seed / 100 + len(loss) / 100)})
    frame = collect(tmp_path).frame
    summary = next(s for s in load_specs() if s.name == "summary")
    table = build_table(frame, summary, "synthshop")
    assert table is not None and len(table.row_keys) >= 3  # loss + alpha + backbone: wide
    tex = to_latex(table)
    caption = re.search(r"\\caption\{(.*)\}", tex).group(1)
    assert len(caption.split()) <= 20 and "t-interval" not in caption  # the long text is the note below
    assert "t-interval" in tex.split("\\end{tabular}")[1]
    assert "R@1 " in tex and "MAP@R" in tex and "map@r" not in tex and "r\\_precision" not in tex
    assert "0.001605" in tex and "0.0016051" not in tex  # parameter values rounded
    assert "`" not in tex  # `code` becomes \texttt, not LaTeX quotes
    one = build_table(frame[frame["loss.name"] == "bdl"], summary, "synthshop")
    assert one is not None and r"\textbf" not in to_latex(one)  # one row: nothing to be best against
    assert not [line for line in to_markdown(one).splitlines() if line.startswith("|") and "**" in line]
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed (Debian/Ubuntu: apt-get install texlive-latex-recommended): source checked only")
    compile_article(tex, tmp_path)


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


def kept_figures(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every figure the plot functions save (saved as PNG as usual), for looking at its parts."""
    figures: list[Any] = []
    real_save = plots.save_figure

    def keep(fig: Any, stem: Path, formats: object = None) -> list[Path]:
        figures.append(fig)
        return real_save(fig, stem, ("png",))

    monkeypatch.setattr(plots, "save_figure", keep)
    return figures


def test_embedding_view_colours_the_largest_classes_rest_grey(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    labels = np.concatenate([np.full(30 - i, i) for i in range(24)])  # 24 classes, class 0 the largest
    run_dir = write_run(tmp_path / "runs", {"loss.name": "bdl", "seed": 3}, {"emb": recall_metrics(0.5)},
                        embeddings={"emb": rng.normal(size=(len(labels), 8)).astype(np.float32), "labels": labels})
    figures = kept_figures(monkeypatch)
    plots.plot_embedding(run_dir / "embeddings_sample.npz", tmp_path / "emb", methods=["pca"])
    ax = figures[0].axes[0]
    coloured = {tuple(c.get_facecolor()[0]) for c in ax.collections[1:]}
    assert len(ax.collections) == 1 + 12 and len(coloured) == 12  # 12 distinct colours, one grey rest
    assert {c.get_label() for c in ax.collections[1:]} == {f"class {i}" for i in range(12)}  # the largest ones
    assert "12 largest of 24 classes; rest grey" in ax.get_title()
    title = plots.run_title(run_dir)
    assert "bdl" in title and "seed 3" in title and "synthshop" in title and run_dir.name in title


def test_lines_differ_in_colour_and_marker_training_legend_below_panels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = tmp_path / "runs"
    for loss in ("circle", "multi-similarity", "batch-hard"):
        for seed in range(2):
            history = [{"epoch": e, "loss": 1.0 / (e + 1), "val": {"recall@1": 0.5 + e / 10}} for e in range(3)]
            write_run(runs, {"loss.name": loss, "seed": seed, "loss.params.margin": 0.123456789 if loss == "circle" else None},
                      {"emb": recall_metrics(0.6)}, history=history)
    collection = collect(tmp_path)
    figures = kept_figures(monkeypatch)
    plots.plot_recall_curves(collection.frame, tmp_path / "recall", dataset="synthshop")
    handles, labels = figures[0].axes[0].get_legend_handles_labels()
    lines = [h[0] for h in handles]  # an error-bar container's data line
    styles = {(str(line.get_color()), line.get_marker()) for line in lines}
    assert not any("0.123456789" in label for label in labels)
    assert len(lines) == 3 and len({s[0] for s in styles}) == 3 and len({s[1] for s in styles}) == 3
    from dmlbench.results.collect import collect_history

    plots.plot_training_curves(collect_history(collection.finished), tmp_path / "curves")
    fig = figures[1]
    renderer = fig._get_renderer()  # the figure was drawn when saved (its layout is final)
    (legend,) = fig.legends
    box = legend.get_window_extent(renderer)
    for ax in fig.axes:
        assert ax.get_ylabel()  # every panel says what its y axis is
        assert not box.overlaps(ax.get_tightbbox(renderer))  # the legend overlaps no panel
    texts = [t.get_text() for t in legend.get_texts()]
    assert len(texts) == 3 and not any("nan" in t or "0.123456789" in t for t in texts)
