"""No traceback for a user error, whatever the command: malformed YAML, wrong types, unknown names,
missing files, unreadable folders and empty sweeps each answer with one line saying what to do and a
non-zero exit code (2 for usage errors).

The commands run in-process through `dmlbench.cli.main` (what the `dmlbench` script calls): an
exception escaping `main` is exactly what would print a traceback, and in-process the 70-odd inputs
take seconds instead of minutes. One case per kind also runs as a real subprocess.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.cli import run_cli, run_main

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
    from support.synthetic_runs import recall_metrics, write_run

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
    ("train {ok.yaml} train.epochs=-1", 2, "'train.epochs' must be >= 0"),  # 0: the untrained reference
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


# ---------------------------------------------------------------------------------------------------
# Issue 28 cases that need the tiny dataset, a trained run folder, a full or read-only disk, SLURM.

PAGE = 4096


def one_line(code: int, err: str, want_code: int, phrase: str) -> None:
    """The command answered with one `dmlbench` line on stderr holding `phrase`, and `want_code`."""
    assert "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == want_code and len(lines) == 1 and lines[0].startswith("dmlbench"), (code, err)
    assert phrase in lines[0], err


def test_yaml_bombs_are_refused_fast(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The alias bomb (9 levels of 9) under loss.params and data.options, and a 100 MB YAML list for
    eval.ks: refused in well under 5 s, without expanding anything (memory stays bounded)."""
    import resource
    import time

    (tmp_path / "params.yaml").write_text(f"loss:\n  name: bdl\n  params:\n{alias_bomb('    ')}")
    (tmp_path / "options.yaml").write_text(f"data:\n  options:\n{alias_bomb('    ')}")
    with open(tmp_path / "big.yaml", "w") as fh:
        fh.write("eval:\n  ks:\n")
        line = "  - 1\n" * 100_000
        for _ in range(100 * 2**20 // len(line)):
            fh.write(line)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for name, phrase in (("params.yaml", "alias bomb"), ("options.yaml", "alias bomb"), ("big.yaml", "MiB")):
        started = time.perf_counter()
        code, _, err = run_main(["train", str(tmp_path / name)], capsys)
        assert time.perf_counter() - started < 5, name
        one_line(code, err, 2, phrase)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert grown_mb < 200, f"peak memory grew by {grown_mb:.0f} MB"


def tiny_config(tmp: Path, data: Path, **sections: Any) -> Path:
    from support.configs import tiny_run_config, write_config

    return write_config(tmp / "run.yaml", tiny_run_config(data, tmp / "runs", **sections))


def test_a_bad_sampler_parameter_leaves_no_run_folder(
    tiny_synthshop: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tiny_config(tmp_path, tiny_synthshop)
    code, _, err = run_main(["train", str(config), "sampler.params.images_per_class=0", "--quiet"], capsys)
    one_line(code, err, 2, "images_per_class")
    assert not (tmp_path / "runs").exists()


def test_a_history_line_that_is_no_object_is_named_on_resume(
    tiny_synthshop: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dmlbench.config import dump_config, load_config

    config = tiny_config(tmp_path, tiny_synthshop)
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.yaml").write_text(dump_config(load_config(config)))
    (folder / "history.jsonl").write_text('{"epoch": 1, "loss": 0.5}\n5\n')
    code, _, err = run_main(["train", str(config), "--run-dir", str(folder), "--quiet"], capsys)
    one_line(code, err, 2, "history.jsonl line 2 is not a JSON object")
    assert (folder / "history.jsonl").read_text() == '{"epoch": 1, "loss": 0.5}\n5\n'  # nothing rewritten


@pytest.fixture(scope="module")
def trained_run(tiny_synthshop: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(config, run folder) of a run killed after its last checkpoint, before its evaluation: trained one
    epoch of two batches with train.keep=full, then its evaluation's files and DONE removed."""
    from dmlbench import rundir

    tmp = tmp_path_factory.mktemp("trained")
    config = tiny_config(tmp, tiny_synthshop, train={"epochs": 1, "keep": "full"}, sampler={"batches_per_epoch": 2})
    assert main(["train", str(config), "--quiet"]) == 0
    (folder,) = (tmp / "runs").iterdir()
    for name in (rundir.DONE, rundir.METRICS, rundir.EMBEDDINGS_SAMPLE, rundir.QUERY_HITS, rundir.WEIGHTS):
        (folder / name).unlink(missing_ok=True)
    return config, folder


def copy_run(folder: Path, into: Path) -> Path:
    import shutil

    return Path(shutil.copytree(folder, into / folder.name))


def test_empty_checkpoint_json_and_garbage_tracker_json_resume_the_run(
    trained_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """checkpoint.json = {}: the checkpoint is verified by loading it, not thrown away; a garbage
    tracker.json is not even read when no tracker is configured."""
    config, trained = trained_run
    folder = copy_run(trained, tmp_path)
    (folder / "checkpoint.json").write_text("{}")
    (folder / "tracker.json").write_text("garbage{")
    code, _, err = run_main(["train", str(config), "--run-dir", str(folder), "--quiet"], capsys)
    assert code == 0 and "Traceback" not in err, err
    log = (folder / "run.log").read_text()
    assert "checking the checkpoints by loading them" in log and f"resuming {folder.name} after epoch 1" in log
    assert "from scratch" not in log and (folder / "DONE").is_file()


@contextlib.contextmanager
def small_disk(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `where` (root only: elsewhere the test is skipped)."""
    if not ROOT:
        pytest.skip("mounting a small or read-only filesystem needs root")
    where.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def fill(disk: Path, leave_pages: int = 0) -> None:
    """Fill the disk, then free `leave_pages` pages of it."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    for chunk in (b"\0" * 2**20, b"\0" * PAGE):
        with contextlib.suppress(OSError):
            while os.write(fd, chunk):
                pass
    size = os.fstat(fd).st_size
    os.ftruncate(fd, max(0, size - leave_pages * PAGE))
    os.close(fd)


def read_only(disk: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)


def digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_full_disk_at_the_history_stops_with_one_line(
    trained_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One free page: the lease fits, the next file the resume writes (environment.json, then the history)
    does not."""
    config, trained = trained_run
    with small_disk(tmp_path / "disk", "300m") as disk:
        folder = copy_run(trained, disk)
        before = digest(folder / "checkpoint.pt")
        fill(disk, leave_pages=1)
        code, _, err = run_main(["train", str(config), "--run-dir", str(folder), "--quiet"], capsys)
        one_line(code, err, 1, f"cannot write {folder}/")
        assert re.search(r"/(environment\.json|history\.jsonl): No space left on device; free disk space", err), err
        assert digest(folder / "checkpoint.pt") == before and not (folder / "lease.json").exists()


def test_a_full_disk_at_the_embedding_sample_stops_and_the_rerun_finishes(
    trained_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three free pages: lease and history fit, the embedding sample (five pages) does not; with space
    freed, the rerun resumes from the kept checkpoint and finishes."""
    config, trained = trained_run
    with small_disk(tmp_path / "disk", "300m") as disk:
        folder = copy_run(trained, disk)
        before = digest(folder / "checkpoint.pt")
        fill(disk, leave_pages=3)
        code, _, err = run_main(["train", str(config), "--run-dir", str(folder), "--quiet"], capsys)
        one_line(code, err, 1, f"cannot write {folder / 'embeddings_sample.npz'}: No space left on device")
        assert digest(folder / "checkpoint.pt") == before and not (folder / "DONE").exists()
        (disk / "filler").unlink()
        code, _, err = run_main(["train", str(config), "--run-dir", str(folder), "--quiet"], capsys)
        assert code == 0 and (folder / "DONE").is_file() and "after epoch 1" in (folder / "run.log").read_text(), err


def test_a_read_only_run_folder_stops_with_one_line(
    trained_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, trained = trained_run
    with small_disk(tmp_path / "disk", "300m") as disk:
        folder = copy_run(trained, disk)
        read_only(disk)
        code, _, err = run_main(["train", str(config), "--run-dir", str(folder), "--quiet"], capsys)
        one_line(code, err, 1, "Read-only file system; make the filesystem writable")


def finished_tree(root: Path) -> Path:
    from support.synthetic_runs import recall_metrics, write_run

    for seed in (0, 1):
        write_run(root / "runs", {"seed": seed}, {"emb": recall_metrics(0.5 + seed / 10)})
    return root


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_sweep_collect_and_train_on_a_full_or_read_only_disk(
    fault: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """sweep (its sweep.yaml / lock), collect (its report) and train (a new run folder): one line, exit 1."""
    word = "No space left on device" if fault == "full" else "Read-only file system"
    with small_disk(tmp_path / "disk", "2m") as disk:
        tree = finished_tree(disk / "tree")
        sweep_file = tmp_path / "s.yaml"
        sweep_file.write_text(yaml.safe_dump({"name": "s", "output_dir": str(disk / "s"), "grid": {"seed": [0]}}))
        config = tmp_path / "c.yaml"
        config.write_text(yaml.safe_dump({"output_dir": str(disk / "runs")}))
        fill(disk) if fault == "full" else read_only(disk)
        for argv, where in (
            (["sweep", str(sweep_file)], str(disk / "s")),
            (["collect", str(tree), "--no-plots"], str(tree / "report")),
            (["train", str(config)], str(disk / "runs")),
        ):
            code, _, err = run_main(argv, capsys)
            one_line(code, err, 1, f"cannot write {where}")
            assert word in err
        assert all((run / "DONE").is_file() for run in (tree / "runs").iterdir())  # nothing finished lost


def test_written_files_follow_the_umask(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A shared sweep folder: what the sweep and its runs write is readable by the group (umask 027 ->
    0640, not tempfile's 0600)."""
    sweep_file = tmp_path / "s.yaml"
    data_root = tmp_path / "data"
    data_root.mkdir()
    out = tmp_path / "shared"
    sweep_file.write_text(yaml.safe_dump({
        "name": "s", "output_dir": str(out), "base": {"data": {"root": str(data_root)}, "train": {"epochs": 1}},
        "grid": {"seed": [0]}, "executor": {"kind": "inline"},
    }))
    old = os.umask(0o027)
    try:
        code, out_text, err = run_main(["sweep", str(sweep_file), "--runner", "support.standin:standin_train_run"], capsys)
    finally:
        os.umask(old)
    assert code == 0, out_text + err
    (run,) = (out / "runs").iterdir()
    for path in (out / "sweep.yaml", run / "cell.json", run / "config.yaml", run / "metrics.json", run / "DONE"):
        assert path.stat().st_mode & 0o777 == 0o640, path


def test_collect_follows_a_symlinked_runs_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    finished_tree(tmp_path / "elsewhere")
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "runs").symlink_to(tmp_path / "elsewhere" / "runs")
    (sweep / "loop").symlink_to(sweep)  # a link back up the tree is walked once, not forever
    code, out, err = run_main(["collect", str(sweep), "--no-plots"], capsys)
    assert code == 0 and "Traceback" not in err, err
    assert "all run folders are finished" in err
    import pandas as pd

    assert pd.read_csv(sweep / "report" / "results.csv")["run_id"].nunique() == 2


def dead_slurm_conf(tmp: Path) -> Path:
    """A copy of this cluster's slurm.conf whose controller port answers nothing."""
    import shutil

    conf = Path(os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf"))
    if shutil.which("squeue") is None or not conf.is_file():
        pytest.skip("needs the SLURM commands and a slurm.conf")
    lines = [ln for ln in conf.read_text().splitlines() if not ln.startswith("SlurmctldPort")]
    (tmp / "slurm.conf").write_text("\n".join([*lines, "SlurmctldPort=1"]) + "\n")
    for extra in conf.parent.glob("*.conf"):  # gres.conf, ... beside it
        if extra.name != "slurm.conf":
            shutil.copy(extra, tmp / extra.name)
    return tmp / "slurm.conf"


def test_an_unreachable_slurm_controller_is_one_line_and_the_folders_still_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SLURM_CONF pointing at a dead port (the shared cluster stays up): status and sweep say so in one
    line, exit 1, and still show the finished cell as done; nothing is submitted."""
    from support.synthetic_runs import recall_metrics, write_run

    folder, run_ids = sweep_folder(tmp_path / "sw", kind="slurm")
    done = write_run(folder / "runs", {"seed": 0}, {"emb": recall_metrics(0.5)}, sweep="sw")
    (folder / "jobs.json").write_text(json.dumps({rid: f"999999_{i}" for i, rid in enumerate(run_ids)}))
    jobs_before = (folder / "jobs.json").read_text()
    monkeypatch.setenv("SLURM_CONF", str(dead_slurm_conf(tmp_path)))
    for command in ("status", "sweep"):
        code, out, err = run_main([command, str(folder)], capsys)
        one_line(code, err, 1, "cannot ask SLURM (squeue -r failed")
        states = {w: ln.split()[0] for ln in out.splitlines() for w in ln.split() if w in run_ids}
        assert states == {done.name: "done", (set(run_ids) - {done.name}).pop(): "unknown"}, out
    assert (folder / "jobs.json").read_text() == jobs_before
