"""Optional experiment trackers mirroring a run: TensorBoard, MLflow, Weights & Biases (`track:` in the config).

The run folder stays the source of truth; a tracker only mirrors it, so `track` is not part of the run_id
and a tracker can never fail or stall a run: one that is not installed, unreachable or erroring is one
warning (stderr and run.log), and the run goes on without it.

Each tracker logs the config as parameters (tags: the sweep and its grid keys), per-epoch scalars
(`base.epoch_scalars`), the final test metrics per layer and K (`base.final_scalars`) and the run's files
(config, metrics, history, a metrics table, the training-curve plot) as artifacts.

Resume: the ids of the tracker runs are kept in the run folder (`rundir.TRACKER`) with the number of epochs
each has logged, so a requeued or resumed run reopens the same tracker runs and logs the epochs they lack
(also when a tracker is added to a run that already trained some epochs).

Modules: `base` (the tracker interface and what is logged), `backends` (TensorBoard, MLflow, W&B),
`tracking` (one run's trackers, opened and resumed), `publish` (finished runs to MLflow after the fact).
"""

from dmlbench.track.backends import TRACKER_CLASSES
from dmlbench.track.base import (
    RunInfo,
    Tracker,
    TrackerUnavailable,
    epoch_scalars,
    final_scalars,
    flat_params,
    scalar_name,
)
from dmlbench.track.tracking import Tracking, open_tracking, run_info

__all__ = [
    "TRACKER_CLASSES", "RunInfo", "Tracker", "TrackerUnavailable", "Tracking", "epoch_scalars",
    "final_scalars", "flat_params", "open_tracking", "run_info", "scalar_name",
]
