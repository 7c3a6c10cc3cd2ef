"""Every runnable command in README.md and docs/*.md composes against conf/: a misspelt option or key in a
documented command fails here, naming the block (file:line), without training anything.

What is checked (the rule docs/README.md states for writers):
- a fenced block whose info string is `bash` or `sh` is runnable; other blocks (plain ```, `json`,
  `python`, ...) are outputs, transcripts or code and are not read here (the `python` example has its
  own test, tests/diffusion/test_readme_example.py);
- in a runnable block, a line (after joining `\\` continuations) whose command is `python -m ctdm.train` /
  `python -m ctdm.evaluate` (any python path, e.g. `.venv/bin/python`) or `ctdm-train` / `ctdm-evaluate`
  is composed with Hydra's compose API on config.yaml / evaluate.yaml, with the command's overrides;
  other commands (make, ctdm.compare, experiments.*) are left alone;
- placeholders: `<...>` (one token, spaces inside allowed) and `...` stand for a path or value: a `<...>`
  inside a value becomes the word PLACEHOLDER, a value `...` becomes PLACEHOLDER, a bare placeholder
  token (`<same overrides>`, `...`) is dropped. So ckpt_path=... and finetune.base=<base>/last.ckpt
  compose (files are not read), and the key and every group choice are still checked;
- `-m` / `--multirun`: the first value of every swept key (Hydra's sweep syntax: `a,b`, `range()`,
  `choice()`) is composed; a swept config group (`loss=mse_sum,itd`, `experiment=...`) is composed at
  every one of its options, with the other swept keys at their first value;
- `--help` / `-h` / `--hydra-help` compose the rest of the line; any other flag fails the test, so a
  command is never silently unchecked. Comments (`# ...`) and shell operators after the command end it.
"""

import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser

import ctdm.config  # noqa: F401  (stores the config schema, `ctdm_schema`, in Hydra's ConfigStore)
from ctdm.config_dir import CONFIG_DIR

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE = {"bash", "sh"}
ENTRY = re.compile(r"^(?:\S*/)?python[\d.]*\s+-m\s+ctdm\.(train|evaluate)\b|^ctdm-(train|evaluate)\b")
CONFIG_NAME = {"train": "config", "evaluate": "evaluate"}
PLACEHOLDER = "PLACEHOLDER"
QUIET_FLAGS = {"--help", "-h", "--hydra-help"}
SWEEP_FLAGS = {"-m", "--multirun"}
SHELL_ENDS = {"&&", "||", ";", "|", "&"}


def fenced_blocks(text: str):
    """(info string, first line number of the block's body, body lines) of every fenced block."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opened = re.match(r"^\s*(`{3,}|~{3,})\s*([^`\s]*)", lines[i])
        if not opened:
            i += 1
            continue
        fence, info = opened.groups()
        body, start = [], i + 2  # 1-based number of the body's first line
        i += 1
        while i < len(lines) and not re.match(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[i]):
            body.append(lines[i])
            i += 1
        yield info.lower(), start, body
        i += 1


def commands(body: list[str], start: int):
    """(line number, command text) of each logical line (continuations joined) that runs ctdm."""
    joined, first = "", None
    for number, line in enumerate(body, start):
        if first is None:
            first = number
        if line.rstrip().endswith("\\"):
            joined += line.rstrip()[:-1] + " "
            continue
        joined += line
        text = re.sub(r"^\s*(?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*", "", joined)  # FOO=bar env prefixes
        if ENTRY.match(text):
            yield first, text
        joined, first = "", None


def documented_commands():
    found = []
    for page in PAGES:
        for info, start, body in fenced_blocks(page.read_text()):
            if info in RUNNABLE:
                for number, text in commands(body, start):
                    found.append(pytest.param(text, id=f"{page.relative_to(ROOT).as_posix()}:{number}"))
    return found


def jobs(text: str) -> tuple[str, list[list[str]]]:
    """The entry point's config name and the override lists to compose for one documented command."""
    text = re.sub(r"<[^<>\n]*>", PLACEHOLDER, text)
    tokens = shlex.split(text, comments=True)
    entry = ENTRY.match(" ".join(tokens))
    task = entry.group(1) or entry.group(2)
    tokens = tokens[1:] if tokens[0].startswith("ctdm-") else tokens[3:]  # drop `python -m ctdm.x`
    overrides, multirun = [], False
    for token in tokens:
        if token in SHELL_ENDS:
            break
        if token in SWEEP_FLAGS:
            multirun = True
        elif token in QUIET_FLAGS or token in (PLACEHOLDER, "..."):
            continue
        elif token.startswith("-") and "=" not in token:
            raise AssertionError(f"flag {token!r} is not understood by this test (see its docstring)")
        else:
            key, eq, value = token.partition("=")
            overrides.append(f"{key}={PLACEHOLDER}" if eq and value == "..." else token)
    if not multirun:
        return CONFIG_NAME[task], [overrides]
    parsed = OverridesParser.create().parse_overrides(overrides)
    values = {i: list(o.sweep_string_iterator()) for i, o in enumerate(parsed) if o.is_sweep_override()}
    first = [
        f"{parsed[i].get_key_element()}={values[i][0]}" if i in values else overrides[i]
        for i in range(len(overrides))
    ]
    runs = [first]
    for i, swept in values.items():
        if not (CONFIG_DIR / parsed[i].key_or_group).is_dir():
            continue  # a plain key (seed, a weight): its first value stands for the others
        for value in swept[1:]:
            runs.append([*first[:i], f"{parsed[i].get_key_element()}={value}", *first[i + 1 :]])
    return CONFIG_NAME[task], runs


@pytest.fixture(scope="module")
def hydra_conf():
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        yield
    GlobalHydra.instance().clear()


@pytest.mark.parametrize("command", documented_commands())
def test_documented_command_composes(command, hydra_conf):
    config_name, runs = jobs(command)
    for overrides in runs:
        try:
            compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
        except Exception as error:  # Hydra's own message names the option or key
            pytest.fail(f"`{command}` does not compose with {overrides}:\n{type(error).__name__}: {error}")


def test_the_pages_have_runnable_blocks_of_both_entry_points():
    """The collection itself works: it finds the README's blocks, of both entry points, with placeholders
    and sweeps among them (a parser that found nothing would pass every page)."""
    found = [(p.id, p.values[0]) for p in documented_commands()]
    readme = [text for name, text in found if name.startswith("README.md:")]
    assert len(readme) >= 10, readme
    assert any("ctdm.evaluate" in text for text in readme) and any("ctdm.train" in text for text in readme)
    assert any(" -m " in text for text in readme) and any("<" in text for text in readme)
    sweep = "python -m ctdm.train -m loss=itd,mse seed=0,1 ckpt_path=<some run>/last.ckpt  # note"
    config_name, runs = jobs(sweep)
    assert config_name == "config"
    assert runs == [
        ["loss=itd", "seed=0", f"ckpt_path={PLACEHOLDER}/last.ckpt"],
        ["loss=mse", "seed=0", f"ckpt_path={PLACEHOLDER}/last.ckpt"],
    ]


def test_a_wrong_override_is_caught(hydra_conf):
    """The check can fail: a misspelt key and an unknown option do not compose."""
    for wrong in ("trainer.max_stepz=3", "loss=nope"):
        _, runs = jobs(f"python -m ctdm.train {wrong}")
        with pytest.raises(Exception, match="max_stepz|nope"):
            compose(config_name="config", overrides=runs[0], return_hydra_config=True)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but `-` and `_` dropped, spaces to `-`."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^\s*```.*?^\s*```", "", page.read_text(), flags=re.S | re.M)
    return {slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_relative_links_resolve(page):
    """Every relative link of the page (outside code blocks) names a file that exists, and a heading of it
    when it has a #fragment: pages moved between README and docs/ keep working links."""
    text = re.sub(r"^\s*```.*?^\s*```", "", page.read_text(), flags=re.S | re.M)
    broken = []
    for target in re.findall(r"\]\(([^()\s]+)\)", text):
        if re.match(r"^[a-z]+:", target):
            continue  # http(s), mailto: not checked here
        path, _, fragment = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(target)
        elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"
