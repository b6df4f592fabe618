"""Sweep presets shipped with the package (`dmlbench list sweeps`); each YAML's first comment line describes it."""

from __future__ import annotations

from pathlib import Path

PRESET_DIR = Path(__file__).parent


def preset_path(name: str) -> Path | None:
    path = PRESET_DIR / f"{name}.yaml"
    return path if path.is_file() else None


def list_presets(directory: Path = PRESET_DIR) -> list[tuple[str, str]]:
    """(name, first comment line) of every preset YAML in `directory` (default: the sweep presets)."""
    out = []
    for path in sorted(directory.glob("*.yaml")):
        first = path.read_text().splitlines()[:1]
        desc = first[0].lstrip("# ").strip() if first and first[0].startswith("#") else ""
        out.append((path.stem, desc))
    return out
