"""Reading run folders: a finished run's overrides, config, group choices, metrics and pass curves."""

import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass
class Run:
    """One finished run, as its folder records it.

    overrides: {key: value} of its command line (for a ctdm.evaluate run, its training run's overrides
    updated with its own); config: the composed config (.hydra/config.yaml); choices: Hydra's group
    choices (.hydra/hydra.yaml); metrics: summary.json's metrics (metrics.json for an evaluation);
    curves: {sampler: [{"pass", "nfe", "mmd"}, ...]} of its last evaluation; excluded: keys its Hydra
    config leaves out of run names.
    """

    folder: Path
    overrides: dict[str, str]
    config: dict
    choices: dict[str, str]
    metrics: dict[str, float]
    curves: dict[str, list[dict]] = field(default_factory=dict)
    step: int | None = None
    excluded: tuple[str, ...] = ()

    def value(self, key: str) -> str:
        """The run's value of an override key, as text: the override itself, else its config group's
        choice, else the composed config's value; "-" when the run has no such key."""
        if key.startswith("~"):  # a deletion: the node is gone or kept
            return "removed" if key in self.overrides else "-"
        if key in self.overrides:
            return normalize(self.overrides[key])
        if key in self.choices:
            return normalize(self.choices[key])
        node = self.config
        for part in key.lstrip("+~").split("."):
            if not isinstance(node, dict) or part not in node:
                return "-"
            node = node[part]
        return "-" if isinstance(node, (dict, list)) else normalize(node)

    @property
    def seed(self) -> str:
        return self.value("seed")


def normalize(value) -> str:
    """One spelling per value: 1, 1.0 and 1e0 are "1"; True and true are "true"; None is "null"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    text = str(value).strip()
    if text.lower() in ("true", "false", "null", "none"):
        return {"none": "null"}.get(text.lower(), text.lower())
    number = as_number(text)
    return format(number, ".12g") if number is not None else text


def as_number(text: str) -> float | None:
    try:
        number = float(text)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _split_override(line: str) -> tuple[str, str]:
    """`+loss.cdl.weight=0.1` -> ("loss.cdl.weight", "0.1"); `~eval.samplers.x` -> ("~eval.samplers.x", "")"""
    key, _, value = line.partition("=")
    key = key.strip().lstrip("+")
    return key.split("@", 1)[0], value.strip()


def _read_yaml(path: Path):
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def read_overrides(folder: Path) -> dict[str, str]:
    """{key: value} of a run folder's .hydra/overrides.yaml (its command-line overrides)."""
    return dict(_split_override(line) for line in _read_yaml(folder / ".hydra" / "overrides.yaml") or [])


def read_curves(folder: Path) -> dict[str, list[dict]]:
    """{sampler: per-pass curve} from eval/<sampler>_passes_step<N>.json (the last step's wins)."""
    curves = {}
    for path in sorted((folder / "eval").glob("*_passes_step*.json")):
        payload = json.loads(path.read_text())
        curves[payload["sampler"]] = payload["passes"]
    return curves


def read_run(folder: str | Path) -> Run | None:
    """The finished run in `folder`; None when it has not finished (no summary.json or metrics.json)."""
    folder = Path(folder)
    summary, evaluation = folder / "summary.json", folder / "metrics.json"
    if summary.is_file():
        record = json.loads(summary.read_text())
        metrics, step = record["metrics"], record.get("global_step")
    elif evaluation.is_file():
        metrics = json.loads(evaluation.read_text())
        step = metrics.pop("global_step", None)
    else:
        return None
    overrides = read_overrides(folder)
    if evaluation.is_file() and "ckpt_path" in overrides:
        # An evaluation is the arm of the run it scored: <run>/checkpoints/<file>.ckpt -> <run>/.hydra.
        trained = Path(overrides["ckpt_path"]).expanduser().parent.parent
        overrides = {**read_overrides(trained), **overrides} if (trained / ".hydra").is_dir() else overrides
    hydra = (_read_yaml(folder / ".hydra" / "hydra.yaml") or {}).get("hydra", {})
    excluded = hydra.get("job", {}).get("config", {}).get("override_dirname", {}).get("exclude_keys") or ()
    return Run(
        folder=folder,
        overrides=overrides,
        config=_read_yaml(folder / ".hydra" / "config.yaml") or {},
        choices={k: v for k, v in (hydra.get("runtime", {}).get("choices") or {}).items() if v is not None},
        metrics={k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))},
        curves=read_curves(folder),
        step=step,
        excluded=tuple(excluded),
    )


def natural_key(path: Path) -> list:
    """authors/2 before authors/10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def find_run_folders(paths: Iterable[str | Path]) -> list[Path]:
    """Every run folder (one with .hydra/) under the paths, without looking inside run folders."""
    found = []
    for root in paths:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(
                f"{str(root)!r} is not a folder: give run folders or folders holding them."
            )
        for here, dirs, _files in os.walk(root):
            if ".hydra" in dirs:
                found.append(Path(here))
                dirs.clear()  # checkpoints/, wandb/, plots/ hold no runs
            else:
                dirs[:] = [d for d in dirs if not d.startswith(".")]
    return sorted(set(found), key=natural_key)


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    """The finished runs under `paths` (unfinished ones, without summary.json, are skipped)."""
    runs = [read_run(folder) for folder in find_run_folders(paths)]
    return [run for run in runs if run is not None]
