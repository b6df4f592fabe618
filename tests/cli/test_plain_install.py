"""A plain `pip install dmlbench` (no extras): every command works or says, in one line, which extra to
install; `dmlbench list` shows what each missing extra would add; `sweep --dry-run` finds what the cells
need (extras, weights, data) before anything is submitted.

The optional modules are hidden from a real CLI subprocess by `without_extras/sitecustomize.py` (their
finders answer "not found", as for a module that is not installed), so one machine with every extra
installed tests the plain install. The commands run in-process through `dmlbench.cli.main` inside that
one subprocess (one torch import for all of them); `dmlbench list` also runs as its own process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.configs import tiny_run_config, write_config
from support.paths import REPO

from dmlbench.extras import EXTRAS, install_hint

HIDE_DIR = Path(__file__).resolve().parent / "without_extras"
HIDDEN = sorted({module for extra in EXTRAS.values() for module in extra.modules})

# Runs the command lines in sys.argv[1] (JSON) through dmlbench.cli.main; prints one JSON result per line.
DRIVER = """
import contextlib, importlib.util, io, json, sys, traceback
from dmlbench.cli import main
assert all(importlib.util.find_spec(m) is None for m in {hidden!r}), "the modules are not hidden"
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except BaseException:  # what would have been a traceback
            rc, err = "traceback", io.StringIO(traceback.format_exc())
    print(json.dumps({{"argv": argv, "rc": rc, "out": out.getvalue(), "err": err.getvalue()}}), file=sys.__stdout__)
"""


def hidden_env() -> dict[str, str]:
    path = os.pathsep.join([str(HIDE_DIR), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "DMLBENCH_HIDE_MODULES": ",".join(HIDDEN)}


def run_hidden(argvs: list[list[str]], cwd: Path) -> dict[str, dict[str, Any]]:
    """Each command line's {rc, out, err}, keyed by the command line joined with spaces."""
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER.format(hidden=HIDDEN), json.dumps(argvs)],
        capture_output=True, text=True, env=hidden_env(), cwd=cwd, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return {" ".join(r["argv"]): r for r in results}


def test_list_on_a_plain_install_names_each_missing_extra(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dmlbench", "list"], capture_output=True, text=True, env=hidden_env(), cwd=tmp_path, timeout=300
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    out = proc.stdout
    for section in ("Losses", "Samplers", "Datasets", "Backbones", "Sweep presets", "Tune presets", "Optional extras"):
        assert section in out
    for extra in EXTRAS:
        assert f"no: {install_hint(extra)}" in out, extra
    assert f"timm/<name> (not installed: {install_hint('timm')})" in out
    assert f"efficientnet_lite0 (not installed: {install_hint('offline-weights')})" in out
    assert f"Tune presets (dmlbench tune <name>) -- needs the extra tune: {install_hint('tune')}" in out
    assert "tune-synthshop" in out  # the presets are listed all the same


def test_list_with_the_extras_installed_shows_timm_backbones() -> None:
    from dmlbench.cli.listing import describe_registries

    pytest.importorskip("timm")
    text = describe_registries("backbones")
    assert "timm/<name>: any of" in text and "timm/vit_small_patch16_224.dino" in text
    assert "not installed" not in text


@pytest.mark.slow  # one subprocess importing torch, ~10 commands in it
def test_every_command_says_which_extra_is_missing(tmp_path: Path, tiny_synthshop: Path) -> None:
    lite = write_config(tmp_path / "lite.yaml", tiny_run_config(tiny_synthshop, tmp_path / "runs", model={"backbone": "efficientnet_lite0"}))
    timm_cfg = write_config(tmp_path / "timm.yaml", tiny_run_config(tiny_synthshop, tmp_path / "runs", model={"backbone": "timm/resnet18"}))
    tune_dir = tmp_path / "a_tune"
    tune_dir.mkdir()
    (tune_dir / "tune.yaml").write_text("name: a_tune\n")
    tracked = {
        "name": "tracked", "output_dir": str(tmp_path / "tracked"), "grid": {"seed": [0, 1]},
        "base": tiny_run_config(tiny_synthshop, tmp_path / "x", track={"trackers": ["mlflow", "wandb"]}),
    }  # fmt: skip
    faiss = {**tracked, "name": "faiss", "base": tiny_run_config(tiny_synthshop, tmp_path / "x", eval={"backend": "faiss-cpu"})}
    write_config(tmp_path / "tracked.yaml", tracked)
    write_config(tmp_path / "faiss.yaml", faiss)
    expected = {  # command line -> (exit code, the extra its message names)
        "list tunes": (0, "tune"),
        "tune tune-synthshop --dry-run": (2, "tune"),
        f"status {tune_dir}": (2, "tune"),
        f"collect {tune_dir}": (2, "tune"),
        f"train {lite}": (2, "offline-weights"),
        f"train {timm_cfg}": (2, "timm"),
        "weights fetch timm/vit_small_patch16_224.dino": (2, "timm"),
        "sweep regression --dry-run": (2, "offline-weights"),
        "sweep regression": (2, "offline-weights"),
        f"sweep {tmp_path / 'faiss.yaml'} --dry-run": (2, "faiss-cpu"),
        f"sweep {tmp_path / 'tracked.yaml'} --dry-run": (0, "mlflow"),
    }
    results = run_hidden([line.split() for line in expected], cwd=tmp_path)
    for line, (rc, extra) in expected.items():
        got = results[line]
        assert got["rc"] == rc, (line, got)
        text = got["out"] + got["err"]
        assert install_hint(extra) in text and "Traceback" not in text, (line, text)
        if rc == 2 and not line.startswith("sweep") or line == "sweep regression":
            assert got["err"].count("\n") == 1 and got["err"].startswith("dmlbench: "), (line, got["err"])

    # the regression preset's dry run: each problem once, with the number of cells it concerns
    dry = results["sweep regression --dry-run"]["out"]
    problems = [ln for ln in dry.splitlines() if ln.startswith(("error (", "note ("))]
    assert len(problems) == 2, problems  # the extra and the dataset, not 80 lines each
    assert all(ln.startswith("error (all 80 cells): ") for ln in problems)
    assert any(install_hint("offline-weights") in ln for ln in problems)
    assert any("data/synthshop-large" in ln for ln in problems)
    assert not (tmp_path / "sweeps").exists()  # the real sweep was refused before writing anything
    tracked_out = results[f"sweep {tmp_path / 'tracked.yaml'} --dry-run"]["out"]
    assert f"note (all 2 cells): tracker mlflow is not installed: runs train without it ({install_hint('mlflow')})" in tracked_out


def test_dry_run_checks_weights_and_data_of_every_cell(tmp_path: Path, tiny_synthshop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dmlbench.cli import main

    base = tiny_run_config(tiny_synthshop, tmp_path / "x", model={"backbone": "resnet50", "pretrained": True})
    sweep = {
        "name": "needs", "output_dir": str(tmp_path / "out"), "base": base,
        "grid": {"seed": [0, 1, 2], "data.root": [str(tiny_synthshop), str(tmp_path / "no-data")]},
    }  # fmt: skip
    os.environ["TORCH_HOME"] = str(tmp_path / "empty-hub")  # no weights there
    try:
        rc = main(["sweep", str(write_config(tmp_path / "s.yaml", sweep)), "--dry-run"])
    finally:
        del os.environ["TORCH_HOME"]
    out = capsys.readouterr().out
    assert rc == 2
    lines = [ln for ln in out.splitlines() if ln.startswith("error (")]
    assert len(lines) == 2, out
    assert lines[0].startswith("error (all 6 cells): pretrained weights for resnet50 not found")
    assert lines[1].startswith("error (3 of 6 cells, e.g. ") and str(tmp_path / "no-data") in lines[1]
    assert not (tmp_path / "out").exists()


def test_inline_sweep_ends_with_a_summary_and_each_failure_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dmlbench.cli import main

    (tmp_path / "data").mkdir()
    sweep = {
        "name": "s", "output_dir": str(tmp_path / "out"), "base": {"data": {"root": str(tmp_path / "data")}},
        "grid": {"seed": [0]}, "include": [{"seed": s, "data.root": str(tmp_path / "missing")} for s in (1, 2, 3)],
        "executor": {"kind": "inline"},
    }  # fmt: skip
    path = write_config(tmp_path / "s.yaml", sweep)
    assert main(["sweep", str(path), "--runner", "support.standin:standin_train_run"]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    error = f"DatasetError: dataset folder not found: {tmp_path / 'missing'}"
    assert sum(error in ln for ln in lines) == 2  # as it happened (first time), and in the summary
    assert sum("same error as" in ln for ln in lines) == 2
    # the plan is printed before the cells run; the last lines are the state after the run
    assert lines.index(next(ln for ln in lines if ln.startswith("state"))) < lines.index(next(ln for ln in lines if ln.startswith("[1/4]")))
    summary = lines[lines.index(next(ln for ln in lines if ln.startswith("before: "))) + 1 :]
    assert summary[0].startswith("sweep 's' now: 1 done, 3 failed of 4 cells (this command ran 4 in ")
    assert summary[1] == f"  failed: 3 cells (e.g. {summary[1].split('e.g. ')[1].split(')')[0]}): {error}"
    assert not any(ln.startswith("unsubmitted") for ln in summary)  # no stale "before" table at the end
    # a rerun: the failures are still there, the summary says so
    (tmp_path / "missing").mkdir()
    assert main(["sweep", str(path), "--runner", "support.standin:standin_train_run"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("sweep 's' now: 4 done of 4 cells (this command ran 3 in ")


def test_regression_preset_names_its_extra() -> None:
    text = (REPO / "bench" / "presets" / "regression.yaml").read_text()
    assert install_hint("offline-weights") in text
    assert yaml.safe_load(text)["base"]["model"]["backbone"] == "efficientnet_lite0"
