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

import pytest
import yaml
from support.cli import run_cli, run_main

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
    for name, text in files.items():
        (tmp / name).write_text(text)
    (tmp / "empty_dir").mkdir()
    (tmp / "unreadable").mkdir()
    (tmp / "unreadable" / "sweep.yaml").write_text("name: u\n")
    os.chmod(tmp / "unreadable", 0)
    return {name: str(tmp / name) for name in [*files, "empty_dir", "unreadable"]} | {"missing": str(tmp / "nope.yaml")}


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
]


def expand(line: str, paths: dict[str, str]) -> list[str]:
    return [re.sub(r"\{([^}]+)\}", lambda m: paths[m.group(1)], word) for word in line.split()]


# commands whose answer to a bad input is their report on stdout, not an error line
REPORTS = ("data check", "compare {empty_dir}")


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
    got, out, err = run_main(inputs(line), capsys)
    assert "Traceback" not in err + out
    assert got == code, err
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
