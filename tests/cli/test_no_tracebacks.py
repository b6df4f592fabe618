"""No traceback for a user error, whatever the command: malformed YAML, wrong types, unknown names,
missing files, unreadable folders and empty sweeps each answer with one line saying what to do and a
non-zero exit code (2 for usage errors).

The commands run in-process through `dmlbench.cli.main` (what the `dmlbench` script calls): an
exception escaping `main` is exactly what would print a traceback, and in-process the 70-odd inputs
take seconds instead of minutes. One case per kind also runs as a real subprocess.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import run_cli

import dmlbench
from dmlbench.cli import main

ROOT = os.geteuid() == 0  # root reads folders whatever their mode: the unreadable-folder cases need a user


def make_inputs(tmp: Path) -> dict[str, str]:
    """The bad inputs, written under `tmp`; name -> path."""
    files = {
        "malformed.yaml": "train: {epochs: [1, 2\n",
        "list.yaml": "- 1\n- 2\n",
        "wrong_type.yaml": "train: {epochs: three}\n",
        "unknown_loss.yaml": "loss: {name: no-such-loss}\n",
        "unknown_key.yaml": "trian: {epochs: 1}\n",
        "ok.yaml": "seed: 0\n",
        "empty_sweep.yaml": yaml.safe_dump({"name": "e", "output_dir": str(tmp / "e"), "grid": {"seed": []}}),
        "all_excluded.yaml": yaml.safe_dump(
            {"name": "x", "output_dir": str(tmp / "x"), "grid": {"seed": [0]}, "exclude": [{"seed": 0}]}
        ),
        "sweep_wrong_type.yaml": yaml.safe_dump({"name": "w", "grid": {"train.epochs": ["many"]}}),
        "sweep_unknown_loss.yaml": yaml.safe_dump({"name": "u", "grid": {"loss": ["bld"]}}),
        "bad_tables.yaml": "tables: [1, 2\n",
        "not_results.csv": "a,b\n1,2\n",
        "a_file": "not a folder\n",
    }
    files |= {
        "bomb.yaml": f"loss:\n  name: bdl\n  params:\n{alias_bomb('    ')}",
        "sweep_bad_value.yaml": yaml.safe_dump({"name": "v", "output_dir": str(tmp / "v"), "grid": {"train.lr": [-1]}}),
        "pkg_sweep.yaml": yaml.safe_dump({"name": "p", "output_dir": str(PACKAGE / "sweeps-here"), "grid": {"seed": [0]}}),
    }
    for name, text in files.items():
        (tmp / name).write_text(text)
    (tmp / "latin1.yaml").write_bytes(b"name: caf\xe9\n")  # one latin-1 byte, at offset 9
    (tmp / "empty_dir").mkdir()
    (tmp / "unreadable").mkdir()
    (tmp / "unreadable" / "sweep.yaml").write_text("name: u\n")
    os.chmod(tmp / "unreadable", 0)
    folders = broken_folders(tmp)
    return {name: str(tmp / name) for name in [*files, "latin1.yaml", "empty_dir", "unreadable"]} | folders | {
        "missing": str(tmp / "nope.yaml")
    }


PACKAGE = Path(dmlbench.__file__).resolve().parent


def alias_bomb(indent: str = "") -> str:
    """YAML aliases 9 deep of 9 each: 387 million values once expanded, 90 lines on disk."""
    lines = [f"{indent}a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"{indent}a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    return "\n".join(lines) + "\n"


def sweep_folder(out: Path, **executor: Any) -> tuple[Path, list[str]]:
    """A sweep output folder holding the expanded sweep.yaml a sweep writes; its cells' run ids."""
    from dmlbench.sweep import expand, sweep_from_dict

    data = {"name": out.name, "output_dir": str(out), "grid": {"seed": [0, 1]}, "executor": executor or {"kind": "inline"}}
    sweep = sweep_from_dict(data)
    out.mkdir(parents=True)
    (out / "sweep.yaml").write_text(yaml.safe_dump(sweep.to_dict(), sort_keys=False))
    return out, [c.run_id for c in expand(sweep, validate=False)]


def broken_folders(tmp: Path) -> dict[str, str]:
    """Folders a command finds broken: jobs.json, sweep.yaml, code.json, history.jsonl, metrics.json."""
    from synthetic_runs import recall_metrics, write_run

    from dmlbench.config import config_from_dict, dump_config

    bad_jobs, _ = sweep_folder(tmp / "bad_jobs")
    (bad_jobs / "jobs.json").write_text('{"abc": "local:1"')  # cut short
    latin1_sweep, _ = sweep_folder(tmp / "latin1_sweep")
    (latin1_sweep / "sweep.yaml").write_bytes(b"name: caf\xe9\n")
    code_x = tmp / "code_x"  # the folder of `train ok.yaml` (seed: 0), its code.json garbage
    code_x.mkdir()
    (code_x / "config.yaml").write_text(dump_config(config_from_dict({"seed": 0})))
    (code_x / "code.json").write_text('"x"')
    code_x_sweep, run_ids = sweep_folder(tmp / "code_x_sweep")
    for rid in run_ids:
        (code_x_sweep / "runs" / rid).mkdir(parents=True)
        (code_x_sweep / "runs" / rid / "config.yaml").write_text("seed: 0\n")
        (code_x_sweep / "runs" / rid / "code.json").write_text('"x"')
    history5 = write_run(tmp / "history5", {"seed": 0}, {"emb": recall_metrics(0.5)})
    (history5 / "history.jsonl").write_text('{"epoch": 1, "loss": 0.5}\n5\n{"epoch": 2, "loss": 0.4}\n')
    truncated = tmp / "truncated"
    write_run(truncated, {"seed": 0}, {"emb": recall_metrics(0.5)})
    cut = write_run(truncated, {"seed": 1}, {"emb": recall_metrics(0.6)})
    (cut / "metrics.json").write_text((cut / "metrics.json").read_text()[:40])
    self_sweep = tmp / "self" / "sweep.yaml"  # a hand-written sweep.yaml whose output_dir is its own folder
    self_sweep.parent.mkdir()
    self_sweep.write_text("# my sweep: keep this comment\n" + yaml.safe_dump({"name": "s", "output_dir": str(self_sweep.parent), "grid": {"seed": [0]}}))
    folders = {"self_sweep": self_sweep, "bad_jobs": bad_jobs, "latin1_sweep": latin1_sweep, "code_x": code_x, "code_x_sweep": code_x_sweep}
    return {k: str(v) for k, v in folders.items()} | {"history5": str(history5), "truncated": str(truncated)}


# (command line with {placeholders} from make_inputs, expected exit code, a phrase of the message)
CASES: list[tuple[str, int, str]] = [
    # train / bench-train: configs
    ("train {malformed.yaml}", 2, "is not valid YAML"),
    ("train {list.yaml}", 2, "must be a mapping"),
    ("train {wrong_type.yaml}", 2, "'train.epochs' must be an integer"),
    ("train {unknown_loss.yaml}", 2, "unknown loss 'no-such-loss'"),
    ("train {unknown_key.yaml}", 2, "unknown config key 'trian'; did you mean 'train'?"),
    ("train {missing}", 2, "config file not found"),
    ("train {empty_dir}", 2, "config file not found"),
    ("train {ok.yaml} train.epochs=abc", 2, "'train.epochs' must be an integer"),
    ("train {ok.yaml} epochs", 2, "must look like key=value"),
    ("train {ok.yaml} train.keep=everything", 2, "train.keep must be one of weights, full, none"),
    ("train {ok.yaml} eval.backend=faisss", 2, "did you mean 'faiss-cpu'"),
    ("train {a_file}", 2, "must be a mapping"),
    ("bench-train {malformed.yaml}", 2, "is not valid YAML"),
    ("bench-train {missing}", 2, "config file not found"),
    ("bench-train {ok.yaml} sampler=no-such-sampler", 2, "unknown sampler 'no-such-sampler'"),
    # sweep / status / cancel
    ("sweep {malformed.yaml}", 2, "YAML"),
    ("sweep {list.yaml}", 2, "mapping"),
    ("sweep {missing}", 2, "not found"),
    ("sweep no-such-preset", 2, "not found"),
    ("sweep {empty_sweep.yaml}", 2, "grid 'seed' must be a non-empty list"),
    ("sweep {all_excluded.yaml}", 2, "no cells"),
    ("sweep {sweep_wrong_type.yaml}", 2, "'train.epochs' must be an integer"),
    ("sweep {sweep_unknown_loss.yaml}", 2, "did you mean 'bdl'"),
    ("sweep {empty_dir}", 2, "sweep"),
    ("sweep {a_file} --profile no-such-profile", 2, ""),
    ("status {missing}", 2, "not found"),
    ("status {empty_dir}", 2, "sweep.yaml"),
    ("status {malformed.yaml}", 2, "YAML"),
    ("status {empty_sweep.yaml}", 2, "grid 'seed' must be a non-empty list"),
    ("status {unreadable}", 2, "unreadable"),
    ("cancel {missing}", 2, "not found"),
    ("cancel {all_excluded.yaml}", 2, ""),
    # collect / compare / plot
    ("collect {missing}", 2, "results folder not found"),
    ("collect {a_file}", 2, "results folder not found"),
    ("collect {empty_dir} --tables {bad_tables.yaml}", 2, "YAML"),
    ("collect {empty_dir} --tables {missing}", 2, "not found"),
    ("collect {unreadable}", 2, "cannot read"),
    ("compare {missing} {empty_dir}", 2, "results not found"),
    ("compare {not_results.csv} {not_results.csv}", 2, "not a collected results table"),
    ("compare {a_file} {a_file}", 2, "expected a results folder"),
    ("compare {empty_dir} {empty_dir}", 2, "no matching cells"),  # compare's report, on stdout
    ("plot recall {missing}", 2, "not found"),
    ("plot recall {not_results.csv}", 2, "not a collected results table"),
    ("plot curves {missing}", 2, "not found"),
    ("plot heatmap {empty_dir}", 2, "nothing to plot"),
    ("plot embedding {empty_dir}", 2, "embeddings_sample.npz"),
    ("plot curves {a_file}", 2, "nothing to plot"),
    # data
    # data check reports what it found (stdout) and exits 1 when the folder has problems
    ("data check {missing} --dataset inshop", 1, "not found"),
    ("data check {empty_dir} --dataset no-such-dataset", 2, "unknown dataset 'no-such-dataset'"),  # a usage error
    ("data check {a_file} --dataset cub", 1, "no images.txt"),
    ("data synth {a_file}", 2, "not a folder"),
    ("data synth {unknown_key.yaml}", 2, "not a folder"),
    # timing commands
    ("time-losses --losses no-such-loss", 2, "unknown loss 'no-such-loss'"),
    ("time-losses --dim abc", 2, "expected comma-separated integers"),
    ("bench-eval --n 0", 2, "need --n >= 2"),
    ("bench-eval --backend faisss", 2, "invalid choice"),
    # argparse-level usage errors
    ("list no-such-kind", 2, "invalid choice"),
    ("no-such-command", 2, "invalid choice"),
    ("quickstart --executor slurm", 2, "invalid choice"),
    ("train", 2, "required"),
    ("collect {empty_dir} --out {a_file}", 2, "a_file"),
    ("--plugin no_such_plugin_module list", 2, "no_such_plugin_module"),
    # issue 28: values checked where the config is read, before anything is created (no runs/ folder)
    ("train {bomb.yaml}", 2, "aliases expand to more than 1,000,000 values"),
    ("train {latin1.yaml}", 2, "latin1.yaml is not UTF-8 text: byte 9 (0xe9)"),
    ("train {ok.yaml} train.lr=.nan", 2, "'train.lr' must be a finite number"),
    ("train {ok.yaml} train.lr=-1", 2, "'train.lr' must be > 0"),
    ("train {ok.yaml} data.image_size=0", 2, "'data.image_size' must be >= 1"),
    ("train {ok.yaml} data.image_size=-5", 2, "'data.image_size' must be >= 1"),
    ("train {ok.yaml} data.image_size=100000", 2, "'data.image_size' must be <= 2048"),
    ("train {ok.yaml} eval.batch_size=0", 2, "'eval.batch_size' must be >= 1"),
    ("train {ok.yaml} eval.ks=[0]", 2, "'eval.ks[0]' must be >= 1"),
    ("train {ok.yaml} train.epochs=0", 2, "'train.epochs' must be >= 1"),
    ("train {ok.yaml} train.epochs=-1", 2, "'train.epochs' must be >= 1"),
    ("train {ok.yaml} model.emb_dim=0", 2, "'model.emb_dim' must be >= 1"),
    ("train {ok.yaml} model.fc_dim=0", 2, "'model.fc_dim' must be >= 1"),
    ("sweep {sweep_bad_value.yaml}", 2, "'train.lr' must be > 0"),
    # issue 28: files a command finds broken name the file and what to do
    ("status {bad_jobs}", 2, "jobs.json is not valid JSON (line 1, column 18"),
    ("sweep {bad_jobs}", 2, "jobs.json is not valid JSON (line 1, column 18"),
    ("status {latin1_sweep}", 2, "sweep.yaml is not UTF-8 text: byte 9 (0xe9)"),
    ("train {ok.yaml} --run-dir {code_x}", 2, "code.json holds a string, not a JSON object"),
    ("sweep {code_x_sweep}", 2, "code.json holds a string, not a JSON object"),
    ("plot curves {history5}", 2, "history.jsonl line 2 is not a JSON object"),
    ("compare {truncated} {truncated}", 2, "is finished but its results are unreadable"),
    # issue 28: an output_dir whose writes would destroy something
    ("sweep {self_sweep}", 2, "would overwrite the sweep file"),
    ("sweep {pkg_sweep.yaml}", 2, "lies inside the dmlbench package"),
]


def expand(line: str, paths: dict[str, str]) -> list[str]:
    return [re.sub(r"\{([^}]+)\}", lambda m: paths[m.group(1)], word) for word in line.split()]


# commands whose answer to a bad input is their report on stdout, not an error line
REPORTS = ("data check", "compare {empty_dir}")


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own usage errors
        code = int(exit_.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def inputs(tmp_path: Path) -> Callable[[str], list[str]]:
    paths = make_inputs(tmp_path)
    os.chdir(tmp_path)  # relative defaults (sweeps/, data/) land in tmp_path
    yield lambda line: expand(line, paths)
    os.chmod(tmp_path / "unreadable", 0o755)


@pytest.mark.parametrize(("line", "code", "phrase"), CASES, ids=[c[0].split(" {")[0] + ":" + c[0] for c in CASES])
def test_user_error_is_one_line_and_an_exit_code(
    line: str, code: int, phrase: str, inputs: Callable[[str], list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    if "{unreadable}" in line and ROOT:
        pytest.skip("root reads every folder: run as a user to check unreadable folders")
    argv = inputs(line)
    got, out, err = run_main(argv, capsys)
    assert "Traceback" not in err + out
    assert got == code, err
    if line.startswith("train") and code == 2:  # refused before anything is created
        assert not Path("runs").exists()
    if "{self_sweep}" in line:
        assert Path(argv[1]).read_text().startswith("# my sweep: keep this comment")
    assert not (PACKAGE / "sweeps-here").exists()
    if line.startswith(REPORTS) and phrase in out:  # a report on stdout (data check, compare); else one line on stderr
        assert phrase in out, out
        return
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert lines, "no message"
    if lines[0].startswith("usage:"):  # argparse: its usage (maybe wrapped), then one error line
        lines = [ln for ln in lines if ln.startswith("dmlbench")]
    assert len(lines) == 1, err
    assert lines[0].startswith("dmlbench"), err
    assert phrase in lines[0], err


def test_the_installed_command_answers_the_same(tmp_path: Path) -> None:
    paths = make_inputs(tmp_path)
    os.chmod(tmp_path / "unreadable", 0o755)
    for argv, phrase in (
        (["train", paths["malformed.yaml"]], "is not valid YAML"),
        (["sweep", paths["empty_sweep.yaml"]], "non-empty list"),
        (["collect", paths["missing"]], "results folder not found"),
    ):
        proc = run_cli(*argv)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr and phrase in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
