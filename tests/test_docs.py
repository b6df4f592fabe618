"""The README and docs/*.md stay true: every fenced block is run or checked, every relative link and
anchor resolves, and the README's folder map names every package folder under bench/.

What each block gets:
- python: executed (docs/adding_a_loss.md's blocks are plugin files: compiled here, run as plugins by
  tests/losses/test_adding_a_loss_doc.py);
- yaml: loaded as what it is: a sweep (has `grid`: expanded, every cell validated), a config (checked
  names), or table specs (`collect --tables`);
- bash: every `dmlbench` command line is parsed by the real CLI parser (a renamed command or option
  fails); the cheap ones in RUN also run; every block either has a line in RUN or a reason in NOT_RUN.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from support.cli import run_main
from support.paths import REPO

from dmlbench.cli import parse_command, plugin_option_parser
from dmlbench.config import Config, config_from_dict
from dmlbench.results.tables import TableSpec
from dmlbench.sweep import expand, sweep_from_dict
from dmlbench.validation.preflight import check_names

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", flags=re.S | re.M)


def blocks(lang: str) -> list[tuple[str, int, str]]:
    """(page relative to the repository, index of the block on its page, text) of every `lang` block."""
    found = []
    for page in PAGES:
        for i, (block_lang, text) in enumerate(FENCE.findall(page.read_text())):
            if block_lang == lang:
                found.append((str(page.relative_to(REPO)), i, text))
    return found


def ids(items: list[tuple[str, int, str]]) -> list[str]:
    return [f"{page}#{i}" for page, i, _ in items]


# Shell blocks that run here (command lines, in-process through dmlbench.cli.main).
RUN = {"dmlbench list"}
# Pages whose blocks another test runs in order, as a walkthrough.
WALKED = {"docs/adding_a_loss.md": "tests/losses/test_adding_a_loss_doc.py (slow: sweeps a plugin loss)"}
# Shell blocks that do not run here, by (page, first line): why. Their `dmlbench` lines are still parsed.
NOT_RUN = {
    ("README.md", "pip install -e . && dmlbench quickstart"): "installs the package (CI's job) and trains for 5 min",
    ("README.md", 'pip install -e ".[dev]" && python -m pytest'): "the test suite itself",
    ("docs/distributed.md", "torchrun --standalone --nproc-per-node 4 -m dmlbench train my_run.yaml train.distributed=true"):
        "needs 4 processes and a GPU profile; tests/train/test_distributed.py runs torchrun with 2",
    ("docs/regression.md", "dmlbench data synth data/synthshop-large --size large       # once per machine"):
        "the regression workflow: a feature extraction and 40 head runs (docs/regression.md gives its timing)",
    ("docs/regression.md", "cp bench/presets/regression.yaml before.yaml    # name: before, grid loss.name: [bdl]; run before the edit"):
        "the before/after workflow around an edit of a loss; compare's gate: tests/results/test_compare_gate.py",
    ("docs/results.md", "dmlbench collect sweeps/my_sweep [--out DIR] [--paper] [--tables my_tables.yaml] [--no-plots]"):
        "a synopsis; collect runs end to end in tests/results/test_collect.py",
    ("docs/results.md", "dmlbench quickstart --report results/quickstart"):
        "retrains the quick start's cells (minutes); tests/results/test_committed_reports.py checks the result",
    ("docs/results.md", "dmlbench plot recall    sweeps/s/report/results.csv --layer conv"):
        "needs a collected sweep; the plots are drawn in tests/results/test_paper_output.py",
    ("docs/results.md", "dmlbench compare sweeps/my_grid --by loss.name --reference multi-similarity"):
        "needs a trained grid; compare's exit codes: tests/results/test_compare.py",
    ("docs/sweeps.md", "dmlbench sweep my_sweep.yaml --dry-run     # expand + validate every cell, show what is done / would run"):
        "submits to SLURM; the same sequence runs on the local cluster in tests/sweep/test_slurm.py",
    ("docs/tuning.md", "dmlbench data synth data/synthshop-medium --size medium"):
        "the tune preset trains for an hour; tests/tune/test_tune.py runs a small study",
}


def first_line(text: str) -> str:
    return text.strip().splitlines()[0]


def command_lines(text: str) -> list[list[str]]:
    """The `dmlbench` command lines of a shell block, as argument lists (synopsis brackets dropped)."""
    commands = []
    for line in text.replace("[", "").replace("]", "").splitlines():
        for part in re.split(r"&&|\|\||;|\|", line):
            words = shlex.split(part, comments=True)
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # VAR=value prefixes
                words = words[1:]
            if "dmlbench" in words:
                commands.append(words[words.index("dmlbench") + 1 :])
    return commands


def test_every_shell_block_runs_or_says_why_not() -> None:
    shell = blocks("bash")
    assert len(shell) >= 10
    run = {tuple(shlex.split(line)[1:]) for line in RUN}
    unaccounted = [
        (page, first_line(text))
        for page, _i, text in shell
        if page not in WALKED
        and (page, first_line(text)) not in NOT_RUN
        and not any(tuple(words) in run for words in command_lines(text))
    ]
    assert not unaccounted, f"shell blocks neither run nor given a reason in NOT_RUN: {unaccounted}"
    stale = set(NOT_RUN) - {(page, first_line(text)) for page, _i, text in shell}
    assert not stale, f"NOT_RUN names blocks no page has: {stale}"


@pytest.mark.parametrize(("page", "index", "text"), blocks("bash"), ids=ids(blocks("bash")))
def test_shell_block_commands_parse(page: str, index: int, text: str) -> None:
    for words in command_lines(text):
        _plugins, rest = plugin_option_parser().parse_known_args(words)
        try:
            parse_command(rest)
        except SystemExit as exit_:
            pytest.fail(f"{page}: `dmlbench {' '.join(words)}` does not parse (exit {exit_.code})")


@pytest.mark.parametrize("line", sorted(RUN))
def test_cheap_shell_commands_run(line: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(shlex.split(line)[1:], capsys)
    assert code == 0, err
    assert out.strip()


@pytest.mark.parametrize(("page", "index", "text"), blocks("python"), ids=ids(blocks("python")))
def test_python_block_runs(page: str, index: int, text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if page in WALKED:  # plugin files, run as plugins by the walkthrough
        compile(text, f"{page}#{index}", "exec")
        return
    monkeypatch.chdir(tmp_path)
    exec(compile(text, f"{page}#{index}", "exec"), {"__name__": f"doc_block_{index}"})


CONFIG_KEYS = set(Config.__dataclass_fields__)


@pytest.mark.parametrize(("page", "index", "text"), blocks("yaml"), ids=ids(blocks("yaml")))
def test_yaml_block_loads_as_what_it_is(page: str, index: int, text: str) -> None:
    data = yaml.safe_load(text)
    assert isinstance(data, dict), f"{page}#{index}: not a mapping"
    if "grid" in data:
        if page in WALKED:  # names the page's plugin losses: expanded with them loaded by the walkthrough
            sweep_from_dict(data, executor="inline")
            return
        cells = expand(sweep_from_dict(data, executor="inline"), validate=True)
        assert len(cells) >= 2
    elif set(data) <= CONFIG_KEYS:
        check_names(config_from_dict(data))
    else:  # table specs: name -> fields
        specs = [TableSpec.from_dict(str(name), spec) for name, spec in data.items()]
        assert specs


# ------------------------------------------------------------------------------ links and the map

LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces as dashes."""
    text = FENCE.sub("", page.read_text())
    heads = re.findall(r"^#+\s+(.*?)\s*$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_relative_links_and_anchors_resolve(page: Path) -> None:
    dead = []
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or anchor and file.suffix == ".md" and anchor not in anchors(file):
            dead.append(target)
    assert not dead, f"{page.relative_to(REPO)}: dead links {dead}"


def readme_layout() -> str:
    section = (REPO / "README.md").read_text().split("## Layout", 1)[1]
    return FENCE.findall(section)[0][1]


def test_readme_layout_names_every_package_folder() -> None:
    layout = readme_layout()
    listed = set(re.findall(r"^  (\w+)/", layout, flags=re.M))
    packages = {p.parent.name for p in (REPO / "bench").glob("*/__init__.py")}
    assert packages - listed == set(), f"package folders missing from the README's Layout: {packages - listed}"
    assert all((REPO / "bench" / name).is_dir() for name in listed), f"the Layout names folders bench/ lacks: {listed}"
    top = set(re.findall(r"^(\w+)/", layout, flags=re.M))
    assert all((REPO / name).is_dir() for name in top), top
