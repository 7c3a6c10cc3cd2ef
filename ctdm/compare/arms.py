"""Arms: the runs grouped by the values of the swept override keys, seeds pooled; the baseline arm."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ctdm.compare.runs import Run, as_number, normalize
from ctdm.compare.stats import by_seed

# Replicates, pooled within an arm.
POOLED = ("seed",)
# Overrides that never define an arm: where a run writes and logs, what it resumes, how it shows progress.
# (New runs also carry Hydra's override_dirname exclude_keys, conf/hydra/default.yaml, which are left out.)
NOT_AN_ARM = ("hydra", "paths", "logger", "ckpt_path", "task_name", "trainer.enable_progress_bar")
NOT_AN_ARM += ("eval.progress_bar",)


def _is_arm_key(key: str, excluded: Iterable[str] = ()) -> bool:
    bare = key.lstrip("~")
    if bare in POOLED or key in excluded:
        return False
    return not any(bare == k or bare.startswith((k + ".", k + "/")) for k in NOT_AN_ARM)


def swept_keys(runs: Sequence[Run]) -> list[str]:
    """The override keys whose values differ between runs (in the order they first appear on the command
    lines), without the pooled seed and the keys about where and how runs log."""
    excluded = {k for run in runs for k in run.excluded}
    keys = []
    for run in runs:
        keys += [k for k in run.overrides if k not in keys and _is_arm_key(k, excluded)]
    return [k for k in keys if len({run.value(k) for run in runs}) > 1]


@dataclass
class Arm:
    """The runs that share their values of the swept keys (seeds pooled)."""

    values: dict[str, str]
    runs: list[Run]

    @property
    def label(self) -> str:
        """`loss.cdl.weight=0.1 loss=itd_cdl`; "all runs" when nothing was swept."""
        return " ".join(f"{k}={v}" for k, v in self.values.items()) or "all runs"

    @property
    def folder_label(self) -> str | None:
        """The name of the folder that holds every run of the arm and only them (e.g. `itd_cdl_p2_w0.1`
        for <out>/itd_cdl_p2_w0.1/seed0, seed1), else None."""
        parents = {run.folder.parent for run in self.runs}
        return next(iter(parents)).name if len(parents) == 1 else None

    def values_of(self, metric: str) -> list[float]:
        return [run.metrics[metric] for run in self.runs if metric in run.metrics]

    def by_seed(self, metric: str) -> dict[str, float]:
        return by_seed(self.runs, metric)


def _sort_key(value: str):
    number = as_number(value)
    return (0, number, "") if number is not None else (1, 0.0, value)


def group_runs(runs: Sequence[Run], keys: Sequence[str] | None = None) -> list[Arm]:
    """The arms: runs grouped by their values of `keys` (default: the swept keys), ordered by those
    values (numbers numerically)."""
    keys = swept_keys(runs) if keys is None else list(keys)
    arms: dict[tuple, Arm] = {}
    for run in runs:
        values = {k: run.value(k) for k in keys}
        arms.setdefault(tuple(values.values()), Arm(values, [])).runs.append(run)
    return [arms[k] for k in sorted(arms, key=lambda vs: [_sort_key(v) for v in vs])]


def independent_keys(arms: Sequence[Arm]) -> list[str]:
    """The swept keys less those that only follow an earlier one (eval.num_samples=1000 exactly when
    model/lr_scheduler=cosine): what labels and plots need to tell the arms apart."""
    keys = list(arms[0].values) if arms else []
    out = []
    for key in keys:
        follows = any(
            len({(a.values[k], a.values[key]) for a in arms})
            == len({a.values[k] for a in arms})
            == len({a.values[key] for a in arms})
            for k in out
        )
        if not follows:
            out.append(key)
    return out


def arm_labels(arms: Sequence[Arm]) -> list[str]:
    """Each arm's folder name when every arm has its own folder (shorter), else its values of the
    independent swept keys."""
    folders = [arm.folder_label for arm in arms]
    if all(folders) and len(set(folders)) == len(folders) and len(arms) > 1:
        return folders
    keys = independent_keys(arms)
    return [" ".join(f"{k}={arm.values[k]}" for k in keys) or arm.label for arm in arms]


def parse_baseline(items: Sequence[str]) -> dict[str, str]:
    """["loss.cdl.weight=0"] -> {"loss.cdl.weight": "0"} (values normalised)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--baseline {item!r} must be KEY=VALUE, e.g. loss.cdl.weight=0.")
        out[key.strip()] = normalize(value)
    return out


def baseline_of(arm: Arm, arms: Sequence[Arm], baseline: dict[str, str]) -> Arm | None:
    """The arm to compare `arm` with: the baseline's values for its keys and `arm`'s own for the other
    swept keys (a weight x points sweep compares each weight with the baseline weight at the same points);
    failing that, the one arm with the baseline's values (`loss=itd` for arms that also set CDL keys)."""
    wanted = {**arm.values, **{k: v for k, v in baseline.items() if k in arm.values}}
    same = next((a for a in arms if a.values == wanted), None)
    if same is not None:
        return same
    matching = [a for a in arms if all(a.values.get(k) == v for k, v in baseline.items())]
    return matching[0] if len(matching) == 1 else None


def default_baseline(arms: Sequence[Arm]) -> dict[str, str]:
    """The first value of the first swept key (e.g. loss.cdl.weight=0, the smallest)."""
    if not arms or not arms[0].values:
        return {}
    key = next(iter(arms[0].values))
    return {key: min((a.values[key] for a in arms), key=_sort_key)}
