"""docs/adding_a_loss.md, executed: its Python blocks become the plugin files, its YAML block the sweep
file, and its shell blocks run in order through the real `dmlbench` command in a scratch folder.

That walk is the issue-19 end-to-end test: a plugin loss with trainable parameters (Proxy-Anchor)
swept with seeds on the local executor, edited, refused, swept again with the edit picked up
(`--rerun-changed`), and compared; then a PML-miner-based loss timed and added without changing ids.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support.paths import REPO

DOC = REPO / "docs" / "adding_a_loss.md"


def doc_blocks() -> list[tuple[str, str]]:
    """(language, text) of every fenced block, in page order."""
    return [(lang, text) for lang, text in re.findall(r"```(\w*)\n(.*?)```", DOC.read_text(), flags=re.S)]


def test_doc_blocks_are_the_ones_this_test_runs() -> None:
    langs = [lang for lang, _ in doc_blocks()]
    assert langs.count("python") == 3 and langs.count("yaml") == 1 and langs.count("bash") == 3


@pytest.mark.slow
def test_adding_a_loss_walkthrough_runs(tiny_synthshop: Path, tmp_path: Path) -> None:
    blocks = doc_blocks()
    python = [text for lang, text in blocks if lang == "python"]
    (tmp_path / "proxy_anchor.py").write_text(python[1])
    (tmp_path / "mined_triplet.py").write_text(python[2])
    (tmp_path / "pa_grid.yaml").write_text(next(text for lang, text in blocks if lang == "yaml"))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "synthshop-tiny").symlink_to(tiny_synthshop)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)  # the page sets it itself (`export PYTHONPATH=.`)
    script = "set -e\n" + "\n".join(text for lang, text in blocks if lang == "bash")
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out

    listed = out.split("proxy-anchor", 1)[1].splitlines()[0]  # `list losses`: harness names are not params
    assert "margin=0.1, alpha=32.0, lr_multiplier=100.0; from the harness: num_classes, embedding_size" in listed
    assert re.search(r"^\| proxy-anchor\s+\|\s+32 \|\s+48 ", out, flags=re.M)  # time-losses at --dim 48
    assert re.search(r"proxy-anchor\(margin=0\.1, alpha=32\.0\*, lr_multiplier=100\.0\*, .*num_classes=<harness>", out)
    assert "ran with other code than now: loss:proxy-anchor (module proxy_anchor): sha256" in out
    assert "refused: the loss changed since these cells ran" in out
    runs = tmp_path / "sweeps" / "pa_grid" / "runs"
    replaced = sorted((tmp_path / "sweeps" / "pa_grid" / "replaced").iterdir())
    assert len(replaced) == 2 and len(list(runs.iterdir())) == 2
    new_code = {json.loads((r / "code.json").read_text())["loss:proxy-anchor"]["sha256"] for r in runs.iterdir()}
    old_code = {json.loads((r / "code.json").read_text())["loss:proxy-anchor"]["sha256"] for r in replaced}
    assert len(new_code) == len(old_code) == 1 and new_code != old_code
    assert all((r / "DONE").is_file() for r in [*runs.iterdir(), *replaced])
    # the edit was picked up: the new runs' proxies trained with alpha 16, so their metrics differ (all of
    # them compared: on tiny data one recall@1 alone can coincide, 1 of 12 queries either way)
    def scores(folders: list[Path]) -> set[str]:
        return {json.dumps(json.loads((r / "metrics.json").read_text())["layers"], sort_keys=True) for r in folders}

    assert scores(list(runs.iterdir())).isdisjoint(scores(replaced))
    assert "recall@1" in out and "n=2" in out  # compare: new code vs old code, 2 seeds each
    # adding the miner plugin does not change the proxy-anchor cells' ids: both are still done
    assert out.rstrip().endswith("before: 2 done; would submit 0") or "before: 2 done; would submit 0" in out
