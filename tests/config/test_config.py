"""Config loading, overrides, typo errors and run_id stability."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dmlbench.config import (
    Config,
    ConfigError,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    run_id,
)


def test_defaults_round_trip_and_stable_run_id() -> None:
    cfg = Config()
    again = config_from_dict(config_to_dict(cfg))
    assert again == cfg
    assert run_id(cfg) == run_id(again)
    # Key order in the YAML must not matter: finished sweep cells are found by their id.
    shuffled = dict(reversed(list(config_to_dict(cfg).items())))
    assert run_id(config_from_dict(shuffled)) == run_id(cfg)
    assert len(run_id(cfg)) == 12 and int(run_id(cfg), 16) >= 0


@pytest.mark.parametrize(
    ("data", "wrong", "right"),
    [
        ({"trian": {"epochs": 1}}, "trian", "train"),
        ({"train": {"epohcs": 1}}, "train.epohcs", "train.epochs"),
        ({"loss": {"nmae": "bdl"}}, "loss.nmae", "loss.name"),
        ({"data": {"image_szie": 32}}, "data.image_szie", "data.image_size"),
    ],
)
def test_misspelled_key_names_the_closest_valid_key(data: dict, wrong: str, right: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    assert f"'{wrong}'" in str(err.value) and f"'{right}'" in str(err.value)


def test_wrong_types_are_errors_not_coerced_silently() -> None:
    with pytest.raises(ConfigError, match="train.epochs' must be an integer"):
        config_from_dict({"train": {"epochs": "three"}})
    with pytest.raises(ConfigError, match="must be true or false"):
        config_from_dict({"data": {"skip_bad_images": "yes"}})
    assert config_from_dict({"train": {"lr": 1}}).train.lr == 1.0  # int -> float is fine


def test_overrides_parse_yaml_values_and_shorthands() -> None:
    cfg = apply_overrides(Config(), ["train.epochs=5", "loss=sbdl", "loss.params.alpha=3", "eval.ks=[1,2,4]"])
    assert cfg.train.epochs == 5
    assert cfg.loss.name == "sbdl" and cfg.loss.params == {"alpha": 3}
    assert cfg.eval.ks == [1, 2, 4]
    with pytest.raises(ConfigError, match="did you mean 'train.epochs'"):
        apply_overrides(Config(), ["train.epoch=5"])
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(Config(), ["train.epochs"])


def test_off_and_on_words_stay_strings_in_files_and_overrides(tmp_path: Path) -> None:
    # YAML 1.1 reads `off` as false; train.amp / train.compile take the word "off".
    cfg = apply_overrides(Config(), ["train.amp=off", "train.compile=off"])
    assert (cfg.train.amp, cfg.train.compile) == ("off", "off")
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  amp: off\n  deterministic: false\ndata:\n  skip_bad_images: true\n")
    loaded = load_config(path)
    assert loaded.train.amp == "off" and loaded.train.deterministic is False and loaded.data.skip_bad_images is True
    path.write_text("data:\n  skip_bad_images: yes\n")
    with pytest.raises(ConfigError, match="must be true or false, got 'yes'"):
        load_config(path)
    # the dumped config (run folders) reads back identically
    assert config_from_dict(yaml.safe_load(yaml.safe_dump(config_to_dict(loaded)))) == loaded


def test_changing_the_loss_drops_the_previous_loss_params() -> None:
    cfg = apply_overrides(Config(), ["loss.params.alpha=3"])
    assert apply_overrides(cfg, ["loss=multi-similarity"]).loss.params == {}


def test_run_id_ignores_runtime_keys_but_not_results_keys() -> None:
    base = Config()
    runtime = ["output_dir=elsewhere", "train.num_workers=4", "name=x", "train.checkpoint_every_batches=10", "train.compile=default"]
    assert run_id(apply_overrides(base, runtime)) == run_id(base)
    assert run_id(apply_overrides(base, ["seed=1"])) != run_id(base)
    assert run_id(apply_overrides(base, ["loss.params.alpha=3"])) != run_id(base)


def test_load_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    good = tmp_path / "good.yaml"
    good.write_text("seed: 3\ntrain:\n  epochs: 1\n")
    cfg = load_config(good, ["train.lr=0.5"])
    assert (cfg.seed, cfg.train.epochs, cfg.train.lr) == (3, 1, 0.5)
