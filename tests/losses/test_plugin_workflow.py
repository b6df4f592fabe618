"""Issue 19, points 1-5, 7 and 8: what a plugin loss gets from the harness, grid semantics of
loss.params, the regression recipe's output folder, `time-losses -p`, and messages that say what to do."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from support.configs import tiny_run_config
from support.paths import REPO

from dmlbench.cli import main
from dmlbench.config import config_from_dict, load_config, run_id
from dmlbench.errors import ConfigError
from dmlbench.losses import LOSSES, build
from dmlbench.registry import import_plugins
from dmlbench.sweep import load_sweep

PLUGINS = REPO / "tests" / "plugins"


@pytest.fixture
def plugin_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(PLUGINS))
    import_plugins(["proxy_losses"])


# -- point 3: the harness hands a loss what it knows ------------------------------------------------


def _trainer(tiny_synthshop: Path, tmp_path: Path, loss: str, **train: object):  # type: ignore[no-untyped-def]
    from dmlbench.train.parts import prepare
    from dmlbench.train.trainer import build_trainer

    cfg = config_from_dict(tiny_run_config(tiny_synthshop, tmp_path, loss={"name": loss}, train={"lr": 1e-3, **train}))
    parts = prepare(cfg, log=lambda _: None)
    return parts, build_trainer(parts)


def test_loss_gets_num_classes_embedding_size_and_contiguous_labels(
    plugin_path: None, tiny_synthshop: Path, tmp_path: Path
) -> None:
    parts, trainer = _trainer(tiny_synthshop, tmp_path, "proxy-nca-test")
    train_ids = np.unique(parts.index.labels[parts.train_positions])
    assert train_ids.min() > 0  # tiny synthshop's training ids do not start at 0 ...
    loss_labels = parts.loss_labels[parts.train_positions]
    assert sorted(np.unique(loss_labels)) == list(range(len(train_ids)))  # ... the loss sees 0..C-1
    assert trainer.loss_fn.num_classes == len(train_ids) and trainer.loss_fn.embedding_size == 32
    assert trainer.loss_fn.proxies.shape == (len(train_ids), 32)
    groups = trainer.optimizer.param_groups
    assert [g["lr"] for g in groups] == [1e-3, pytest.approx(0.1)]  # lr_multiplier 100 for the proxies
    assert groups[1]["params"][0] is trainer.loss_fn.proxies


def test_loss_parameters_without_the_flag_are_trained_and_noted(
    plugin_path: None, tiny_synthshop: Path, tmp_path: Path
) -> None:
    with pytest.warns(UserWarning, match="does not set has_parameters = True"):
        parts, trainer = _trainer(tiny_synthshop, tmp_path, "forgot-flag-test")
    assert any(p is trainer.loss_fn.log_scale for g in trainer.optimizer.param_groups for p in g["params"])
    assert any("has_parameters" in note for note in parts.notes)  # also kept in metrics.json


def test_harness_names_are_not_config_params(plugin_path: None) -> None:
    assert LOSSES.params("proxy-nca-test") == {"margin": 0.1}
    with pytest.raises(ConfigError, match="'num_classes' is given by the harness"):
        LOSSES.check_params("proxy-nca-test", {"num_classes": 24})
    loss = build("proxy-nca-test", {"num_classes": 5, "embedding_size": 7, "num_attributes": 0})
    assert loss.proxies.shape == (5, 7)


def test_builtin_losses_see_the_same_batches_with_contiguous_labels() -> None:
    """Only label equality matters to the built-in losses: renumbering changes no value or gradient."""
    from dmlbench.perf.time_losses import make_inputs
    from dmlbench.train.parts import training_label_codes

    for name in LOSSES.names():
        if LOSSES.get(name).__module__.startswith("dmlbench.losses."):  # not the planted calibration losses
            x = make_inputs(24, 8, image_wise=LOSSES.get(name).requires_tuples, num_attributes=6)
            raw = x.labels * 7 + 3
            codes = torch.from_numpy(training_label_codes(raw.numpy(), np.arange(len(raw)))[0])
            results = []
            for labels in (raw, codes):
                x.embeddings.grad = None
                fn = build(name, {"num_classes": 99, "embedding_size": 8, "num_attributes": 6})
                use = fn.needs_attributes
                value = fn(x.embeddings, labels, tuples=x.tuples, attr_logits=x.attr_logits if use else None,
                           attr_targets=x.attr_targets if use else None)
                value.backward()
                grad = x.embeddings.grad
                results.append((value.detach().clone(), torch.zeros(1) if grad is None else grad.clone()))
            assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1]), name


# -- points 1 and 2: plugins do not change run ids; code identity changes with the file --------------


def test_plugin_list_does_not_change_run_ids() -> None:
    plain = config_from_dict({"loss": {"name": "bdl"}})
    with_plugin = config_from_dict({"loss": {"name": "bdl"}, "plugins": ["proxy_losses"]})
    assert run_id(plain) == run_id(with_plugin)


def test_code_identity_follows_the_plugin_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dmlbench.plugins import code_changed, code_identity, record_code

    monkeypatch.syspath_prepend(str(tmp_path))
    src = (PLUGINS / "example_losses.py").read_text().replace('"cosine-margin"', '"cosine-margin-id"')
    (tmp_path / "id_losses.py").write_text(src)
    import_plugins(["id_losses"])
    cfg = config_from_dict({"loss": {"name": "cosine-margin-id"}, "plugins": ["id_losses"]})
    first = code_identity(cfg)
    assert set(first) == {"loss:cosine-margin-id"} and first["loss:cosine-margin-id"]["module"] == "id_losses"
    assert code_identity(config_from_dict({})) == {}  # built-ins record nothing
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("{}\n")
    record_code(run_dir, cfg)
    assert not code_changed(run_dir, code_identity(cfg))
    (tmp_path / "id_losses.py").write_text(src + "\n# tweaked\n")
    assert code_changed(run_dir, code_identity(cfg))
    with pytest.raises(ConfigError, match="was trained with other code: loss:cosine-margin-id"):
        record_code(run_dir, cfg)


# -- point 4: grid semantics of loss.params, shown by --dry-run ------------------------------------------


def test_dry_run_shows_resolved_loss_params_and_the_params_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_synthshop: Path
) -> None:
    sweep = {
        "name": "params",
        "output_dir": str(tmp_path / "out"),
        "base": {"loss": {"name": "bdl", "params": {"alpha": 3}}, "data": {"root": str(tiny_synthshop)}},
        "grid": {"loss.name": ["bdl", "sbdl"]},
        "executor": {"kind": "inline"},
    }
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(sweep))
    assert main(["sweep", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "note: the base's loss.params {'alpha': 3} belong to loss 'bdl'; cells with loss sbdl use" in out
    assert "bdl(alpha=3, " in out and "sbdl(alpha=" in out and "sbdl(alpha=3," not in out
    assert re.search(r"sbdl\(alpha=[0-9.]+\*", out)


# -- point 5: the regression recipe writes where `collect sweeps/my_grid` looks --------------------------


def test_copied_preset_renamed_writes_to_sweeps_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = yaml.safe_load((REPO / "bench" / "presets" / "regression.yaml").read_text())
    data["name"] = "my_grid"
    path = tmp_path / "my_grid.yaml"
    path.write_text(yaml.safe_dump(data))
    assert load_sweep(path).output_dir == Path("sweeps/my_grid")
    assert main(["collect", str(tmp_path / "sweeps" / "nothing")]) == 2
    assert "a sweep writes to its output_dir" in capsys.readouterr().err.lower()


# -- point 7: time-losses with loss parameters and any --dim --------------------------------------------


def test_time_losses_takes_params_and_any_dim(plugin_path: None, capsys: pytest.CaptureFixture[str]) -> None:
    # --plugin after the command (point 8) and a required harness argument filled from --batch/--dim
    args = ["time-losses", "--plugin", "proxy_losses", "--losses", "proxy-nca-test,bdl", "--batch", "8",
            "--dim", "6", "-p", "margin=0.3", "--repeats", "1", "--warmup", "0"]  # fmt: skip
    assert main(args) == 0
    assert re.search(r"^\| proxy-nca-test\s+\|\s+8 \|\s+6 ", capsys.readouterr().out, flags=re.M)
    assert main([*args[:-6], "-p", "margin=abc", "--repeats", "1"]) == 2
    assert "parameter 'margin' must be a number, got 'abc'" in capsys.readouterr().err
    assert main([*args[:-6], "-p", "gamma=2"]) == 2
    assert "takes a parameter 'gamma'" in capsys.readouterr().err


# -- point 8: every message says what to do ---------------------------------------------------------------


def test_unknown_loss_names_the_plugin_options() -> None:
    with pytest.raises(KeyError, match=r"--plugin MODULE .* `plugins: \[MODULE\]`"):
        LOSSES.get("triplet-ms-miner")


def test_plugin_import_errors_say_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--plugin", "no_such_plugin_mod", "list"]) == 2
    err = capsys.readouterr().err
    assert "does not look in the current directory" in err and "PYTHONPATH=. dmlbench --plugin no_such_plugin_mod" in err
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "broken_plugin.py").write_text("def f(:\n")
    assert main(["--plugin", "broken_plugin", "list"]) == 2
    assert "plugin module 'broken_plugin' failed while being imported: SyntaxError" in capsys.readouterr().err


def test_yaml_exponent_floats_are_numbers(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("train: {lr: 1e-4}\nloss: {name: bdl, params: {alpha: 2e0}}\n")
    cfg = load_config(path, ["train.weight_decay=5e-4"])
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.loss.params["alpha"]) == (1e-4, 5e-4, 2.0)


def test_bad_param_values_name_the_key(plugin_path: None) -> None:
    with pytest.raises(ConfigError, match=r"loss 'bdl' parameter 'alpha' must be a number, got 'abc'; fix loss.params.alpha"):
        LOSSES.check_params("bdl", {"alpha": "abc"})
    with pytest.raises(ConfigError, match=r"parameter 'margin' must be a number, got 'abc'"):
        LOSSES.check_params("proxy-nca-test", {"margin": "abc"})


def test_plot_embedding_unknown_attribute_suggests_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dmlbench.data.synthshop.plan import attribute_names

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    names = attribute_names()
    rng = np.random.default_rng(0)
    np.savez(run_dir / "embeddings_sample.npz", emb=rng.normal(size=(20, 4)).astype(np.float32),
             labels=np.arange(20) // 4, attributes=(rng.random((20, len(names))) < 0.5).astype(np.float32),
             attribute_names=np.asarray(names))  # fmt: skip
    code = main(["plot", "embedding", str(run_dir), "--attribute", "pattern floral", "--methods", "pca",
                 "--out", str(tmp_path / "plots")])  # fmt: skip
    assert code == 2
    assert "did you mean 'floral'?" in capsys.readouterr().err
    assert json.loads(json.dumps(names))  # the names the message lists are the dataset's
