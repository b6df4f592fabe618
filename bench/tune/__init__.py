"""Fair comparisons by construction: every method gets the same hyper-parameter budget, tuned on
class-disjoint validation folds of the training classes, and the test split is read once, at the end.

`dmlbench tune SPEC.yaml` (the protocol of Musgrave et al., "A Metric Learning Reality Check", 2020):

1. for each method (a loss, or loss x sampler), Optuna's TPE proposes `trials` configurations (ask/tell:
   dmlbench submits the work itself, `parallel` trials in flight through the sweep executors);
2. a trial trains one run per validation fold (`data.folds`, `data.fold`, `eval.split=val`: the run
   evaluates on its fold and never opens a test/query/gallery image); its value is the mean over folds;
3. the study lives in Optuna's journal file in the tune folder: a killed or re-run `tune` resumes the
   trials it had asked and asks only what is missing, so every method ends with exactly `trials`;
4. the final stage trains each method's best configuration with `seeds` seeds on the full training split
   and evaluates it once on test, as a normal sweep folder (`<tune>/final`) that collect/compare read.

Modules: `spaces` (search-space entries, shipped defaults per loss), `spec` (the spec file and its
checks), `study` (journal storage, ask/tell, counts), `trials` (a trial's cells, their jobs and
submission), `loop` (the loop and the final stage), `report` (status, history plot, protocol table).
"""

from __future__ import annotations

from pathlib import Path

from dmlbench.extras import require

PRESET_DIR = Path(__file__).parent / "presets"  # the shipped tuning specs (`dmlbench tune tune-synthshop`)
TUNE_FILE = "tune.yaml"  # the expanded spec in a tune folder; marks the folder as one


def is_tune_dir(path: str | Path) -> bool:
    """Whether `path` is a tune folder (status and collect ask before importing anything heavy)."""
    return (Path(path) / TUNE_FILE).is_file()


def require_optuna() -> None:
    """Optuna is the optional extra `tune`: a missing install is one line saying how to get it."""
    require("tune", "dmlbench tune (and collect/status of a tune folder)")
