"""Every enumerated config value is checked when the config is read, before any data is touched."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support.cli import run_main

from dmlbench.config import Config, config_from_dict, config_to_dict, enumerated_keys, load_config
from dmlbench.config.keys import get_dotted, set_dotted
from dmlbench.errors import ConfigError

ENUMERATED = enumerated_keys()
# enumerated keys whose value is a list of choices (eval.layers, track.trackers), read off the defaults
LIST_KEYS = {key for key in ENUMERATED if isinstance(get_dotted(config_to_dict(Config()), key), list)}


def test_schema_declares_the_known_enumerations() -> None:
    assert ENUMERATED["eval.backend"] == ("auto", "torch", "faiss-cpu", "faiss-gpu")
    assert set(ENUMERATED) >= {
        "train.optimizer", "train.lr_schedule", "train.amp", "train.compile", "train.device",
        "eval.backend", "eval.layers",
    }  # fmt: skip


@pytest.mark.parametrize("key", sorted(ENUMERATED))
def test_every_allowed_value_is_accepted_and_a_typo_is_refused(key: str) -> None:
    def config_with(value: str) -> dict:
        data: dict = {}
        set_dotted(data, key, [value] if key in LIST_KEYS else value)
        return data

    for value in ENUMERATED[key]:
        config_from_dict(config_with(value))
    right = ENUMERATED[key][-1]
    with pytest.raises(ConfigError, match=rf"must be one of .*not '{right}x'; did you mean '{right}'\?"):
        config_from_dict(config_with(right + "x"))


def test_cuda_index_is_a_valid_device() -> None:
    assert config_from_dict({"train": {"device": "cuda:1"}}).train.device == "cuda:1"
    with pytest.raises(ConfigError, match="did you mean 'cpu'"):
        config_from_dict({"train": {"device": "gpu"}})


def test_override_is_checked_like_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("train: {amp: bf16}\n")
    with pytest.raises(ConfigError, match="did you mean 'fp16'"):
        load_config(cfg, ["train.amp=fp61"])


def test_train_refuses_a_misspelled_backend_before_reading_data(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"data: {{root: {tmp_path / 'no-such-dataset'}}}\noutput_dir: {tmp_path / 'runs'}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "dmlbench", "train", str(cfg), "eval.backend=faisss"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "dmlbench: error: eval.backend must be one of auto, torch, faiss-cpu, faiss-gpu, not 'faisss'; "
        "did you mean 'faiss-cpu'?"
    ]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("key", sorted(ENUMERATED))
def test_sweep_dry_run_refuses_every_misspelled_value_before_reading_data(
    tmp_path: Path, key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A grid axis with one good and one misspelled value: the dry run fails on the second cell, exit 2,
    # one line, nothing created (the data root does not exist, so reading data would fail differently).
    # In-process (`dmlbench.cli.main`, what the script calls): a subprocess per key only re-imported torch;
    # the installed command's answer to a misspelled value is the subprocess test above.
    good = ENUMERATED[key][-1]
    values = [[good], [good + "x"]] if key in LIST_KEYS else [good, good + "x"]
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        yaml.safe_dump({
            "name": "typo", "output_dir": str(tmp_path / "out"),
            "base": {"data": {"root": str(tmp_path / "no-such-dataset")}},
            "grid": {key: values}, "executor": {"kind": "inline"},
        })
    )  # fmt: skip
    code, out, err = run_main(["sweep", str(sweep), "--dry-run"], capsys)
    assert code == 2, err + out
    assert f"did you mean '{good}'" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
