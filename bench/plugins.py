"""Plugin code identity: which code outside dmlbench a run used, recorded in its folder and checked
before a finished (or half-trained) run is reused.

A run's id hashes its config, not code. For every registry entry a run uses (loss, sampler, dataset,
backbone) that is defined outside dmlbench, the run folder's ``code.json`` records where it came from:

- an installed distribution (the module file lies under site-packages): its name and version;
- any other file (a module on PYTHONPATH, an editable install): the sha256 of the file that defines
  the entry. Only that file is hashed: code the loss imports from other files of yours is not, so
  keep a loss in one file or bump a version there when a helper changes.

Built-in entries record nothing (their code is dmlbench's own). `dmlbench sweep` compares each run
folder's record with the code it would run now and refuses to reuse a folder whose code changed,
saying how to rerun it (`--rerun-changed`); `dmlbench train` refuses the same way.
"""

from __future__ import annotations

import hashlib
import sys
import sysconfig
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from dmlbench import rundir
from dmlbench.config import Config
from dmlbench.errors import ConfigError, FileFormatError

CodeIdentity = dict[str, dict[str, str]]  # "loss:<name>" -> {"module", "sha256" | "package"+"version"}
REPLACED_DIR = "replaced"  # <sweep output_dir>/replaced/<run_id>-<time>/: runs set aside by --rerun-changed


def merge_plugins(configured: Sequence[str], from_cli: Sequence[str]) -> list[str]:
    """The config's plugin modules followed by the `--plugin` ones not already listed.

    >>> merge_plugins(["a"], ["b", "a"])
    ['a', 'b']
    """
    out = list(configured)
    out += [m for m in dict.fromkeys(from_cli) if m not in out]
    return out


def _site_dirs() -> list[Path]:
    paths = sysconfig.get_paths()
    dirs = {Path(paths[k]).resolve() for k in ("purelib", "platlib") if k in paths}
    dirs |= {Path(p).resolve() for p in sys.path if p.endswith(("site-packages", "dist-packages"))}
    return sorted(dirs)


def _distribution(module_name: str, file: Path) -> tuple[str, str] | None:
    """(name, version) of the installed distribution that holds `file`, if it is installed there."""
    resolved = file.resolve()
    if not any(resolved.is_relative_to(d) for d in _site_dirs()):
        return None
    top = module_name.split(".")[0]
    for dist in metadata.packages_distributions().get(top, []):
        try:
            return dist, metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def entry_identity(obj: Any) -> dict[str, str] | None:
    """Where a registry entry's code comes from; None for dmlbench's own entries."""
    module_name = str(getattr(obj, "__module__", "") or "")
    if module_name == "dmlbench" or module_name.startswith("dmlbench."):
        return None
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None)
    if not file:
        return {"module": module_name, "sha256": "unknown (not defined in a file)"}
    installed = _distribution(module_name, Path(file))
    if installed is not None:
        return {"module": module_name, "package": installed[0], "version": installed[1]}
    return {"module": module_name, "sha256": hashlib.sha256(Path(file).read_bytes()).hexdigest()}


def code_identity(cfg: Config) -> CodeIdentity:
    """The identity of every non-built-in entry `cfg` uses (its plugins must be imported already)."""
    from dmlbench import losses, samplers
    from dmlbench.data import DATASETS
    from dmlbench.model import BACKBONES

    used = {
        f"loss:{cfg.loss.name}": losses.LOSSES.get(cfg.loss.name),
        f"sampler:{cfg.sampler.name}": samplers.SAMPLERS.get(cfg.sampler.name),
        f"dataset:{cfg.data.dataset}": DATASETS.get(cfg.data.dataset),
        f"backbone:{cfg.model.backbone}": BACKBONES.get(cfg.model.backbone),
    }
    out: CodeIdentity = {}
    for key, obj in used.items():
        ident = entry_identity(obj)
        if ident is not None:
            out[key] = ident
    return out


def recorded_identity(run_dir: Path) -> CodeIdentity | None:
    """The folder's code.json; None when it has none (a run from before code was recorded)."""
    path = Path(run_dir) / rundir.CODE
    if not path.is_file():
        return None
    fix = (
        "it records which plugin code the run used; delete it if the folder's run used the plugins you load "
        "now (none: built-in code only), else move the folder away"
    )
    data = rundir.read_json(path, dict, fix)
    if not all(isinstance(v, dict) for v in data.values()):
        raise FileFormatError(f"{path} must map each registry entry to where its code came from: {fix}")
    return data


def code_changed(run_dir: Path, current: CodeIdentity) -> bool:
    """True when the folder holds work (a config) made with other code than `current`. A folder without
    code.json counts as built-in-only code: changed exactly when `current` names plugin code."""
    if not (Path(run_dir) / rundir.CONFIG).is_file():
        return False
    recorded = recorded_identity(run_dir)
    return (recorded or {}) != current


def describe_change(run_dir: Path, current: CodeIdentity) -> str:
    """`loss:x (module m): sha256 1234abcd -> 5678ef01`, for each entry whose code differs."""
    recorded = recorded_identity(run_dir) or {}

    def short(ident: dict[str, str] | None) -> str:
        if not ident:
            return "not recorded"
        if "version" in ident:
            return f"{ident['package']} {ident['version']}"
        return f"sha256 {ident.get('sha256', '?')[:8]}"

    parts = []
    for key in sorted(set(recorded) | set(current)):
        if recorded.get(key) != current.get(key):
            module = (current.get(key) or recorded.get(key) or {}).get("module", "?")
            parts.append(f"{key} (module {module}): {short(recorded.get(key))} -> {short(current.get(key))}")
    return "; ".join(parts)


def record_code(run_dir: Path, cfg: Config) -> None:
    """Write code.json (a run about to train), or refuse when the folder's work used other code."""
    current = code_identity(cfg)
    path = Path(run_dir) / rundir.CODE
    if path.is_file() or (Path(run_dir) / rundir.CHECKPOINT).is_file():
        check_same_code(run_dir, cfg, current)
        if path.is_file():
            return
    rundir.atomic_write_json(path, current)


def check_same_code(run_dir: Path, cfg: Config, current: CodeIdentity | None = None) -> None:
    """Raise ConfigError when `run_dir` was trained (or started) with other plugin code."""
    current = code_identity(cfg) if current is None else current
    if code_changed(run_dir, current):
        raise ConfigError(
            f"{run_dir} was trained with other code: {describe_change(run_dir, current)}. Its results are kept: "
            f"move that folder away (or set another output_dir) to train with the current code; in a sweep, "
            f"`dmlbench sweep FILE --rerun-changed` does this for you"
        )


def set_aside(run_dir: Path, sweep_output_dir: Path) -> Path:
    """Move a run folder to `<sweep output_dir>/replaced/<run_id>-<time>/` (kept, never collected)."""
    target = Path(sweep_output_dir) / REPLACED_DIR / f"{Path(run_dir).name}-{time.strftime('%Y%m%d-%H%M%S')}"
    n = 1
    while target.exists():
        target = target.with_name(f"{target.name.rsplit('.', 1)[0]}.{n}")
        n += 1
    target.parent.mkdir(parents=True, exist_ok=True)
    Path(run_dir).rename(target)
    return target
