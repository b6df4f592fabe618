"""The README's YAML examples stay valid: each config parses and names real entries, each sweep expands."""

from __future__ import annotations

import re

import pytest
import yaml
from support.paths import REPO

from dmlbench.config import config_from_dict
from dmlbench.sweep import expand, sweep_from_dict
from dmlbench.validation.preflight import check_names

BLOCKS = re.findall(r"```yaml\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)


def test_the_readme_has_yaml_examples() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("block", BLOCKS)
def test_readme_yaml_example_is_valid(block: str) -> None:
    data = yaml.safe_load(block)
    if "grid" in data:
        cells = expand(sweep_from_dict(data, executor="inline"), validate=True)
        assert len(cells) >= 2
    else:
        check_names(config_from_dict(data))
