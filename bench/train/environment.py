"""A run's environment fingerprint (`environment.json`): what can change its result without a config change.

Runs are bit-exact on one machine, but another machine, thread count or library build changes the
floats, and on the fast tier every run of a machine shares that machine's frozen features. So every
run folder records where it ran, and `compare` pairs runs by seed only when their fingerprints match
(`dmlbench.results.compare`):

- `features`: the content hash of the fast tier's cached feature array (sha256 of its bytes, first 16
  hex digits; "" on the full tier, which extracts nothing ahead);
- `device` and `device_model` (cpu + the CPU's model name, or cuda + the GPU's name);
- `torch`, `numpy`, `blas` (torch's and numpy's BLAS), `threads` (torch's thread count when the run
  started), `dmlbench` (the package version).

Beside the fingerprint, `dataset` holds facts of the data that a config does not say (its number of
images and of galleries), which `compare` checks like the config keys that must match.

>>> sorted(fingerprint(torch.device("cpu")))
['blas', 'device', 'device_model', 'dmlbench', 'features', 'numpy', 'threads', 'torch']
>>> digest_bytes(b"abc")
'ba7816bf8f01cfea'
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dmlbench import rundir

FINGERPRINT_KEYS: tuple[str, ...] = (
    "features", "device", "device_model", "torch", "numpy", "blas", "threads", "dmlbench",
)  # fmt: skip
DATASET_KEYS: tuple[str, ...] = ("images", "galleries")


def digest_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def features_digest(features: np.ndarray, path: Path | None = None) -> str:
    """Content hash of a feature array; with `path` (its cache file) the hash is kept in `<path>.sha256`
    beside it and reused while the file's size and modification time are unchanged."""
    sidecar = None if path is None else path.with_name(path.name + ".sha256")
    stamp = None
    if path is not None and path.is_file():
        stat = path.stat()
        stamp = [stat.st_size, stat.st_mtime_ns]
        try:
            saved = json.loads(sidecar.read_text()) if sidecar is not None and sidecar.is_file() else None
        except (OSError, ValueError):
            saved = None
        if isinstance(saved, dict) and saved.get("stamp") == stamp and isinstance(saved.get("sha256"), str):
            return str(saved["sha256"])
    digest = digest_bytes(np.ascontiguousarray(features).tobytes())
    if sidecar is not None and stamp is not None:
        with contextlib.suppress(OSError):  # a read-only cache: the hash is computed again next time
            rundir.atomic_write_json(sidecar, {"stamp": stamp, "sha256": digest})
    return digest


@lru_cache(maxsize=1)
def blas_name() -> str:
    """torch's BLAS (from its build settings) and numpy's, e.g. "torch:mkl numpy:scipy-openblas 0.3.31"."""
    torch_blas = "?"
    for part in torch.__config__.show().replace("\n", ",").split(","):
        if part.strip().startswith("BLAS_INFO="):
            torch_blas = part.strip().split("=", 1)[1]
    numpy_blas = "?"
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        numpy_blas = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except (TypeError, KeyError, AttributeError):
        pass
    return f"torch:{torch_blas} numpy:{numpy_blas}"


@lru_cache(maxsize=4)
def device_model(device_type: str, index: int | None = None) -> str:
    if device_type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(index or 0)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fingerprint(device: torch.device, features: str = "", threads: int | None = None) -> dict[str, str]:
    """The run's environment (module docstring); `features`: the feature array's content hash."""
    from dmlbench import __version__

    return {
        "features": features,
        "device": device.type,
        "device_model": device_model(device.type, device.index),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "blas": blas_name(),
        "threads": str(torch.get_num_threads() if threads is None else threads),
        "dmlbench": __version__,
    }


def write_environment(run_dir: Path, env: dict[str, str], dataset: dict[str, Any]) -> None:
    rundir.atomic_write_json(Path(run_dir) / rundir.ENVIRONMENT, {"fingerprint": env, "dataset": dataset})


def dataset_facts(index: Any) -> dict[str, Any]:
    """The data's size and galleries (a DatasetIndex): what `compare` must find equal on both sides."""
    galleries = getattr(index, "galleries", None)
    return {
        "images": len(index.paths),
        "galleries": 0 if galleries is None else int(len(np.unique(galleries[galleries >= 0]))),
    }
