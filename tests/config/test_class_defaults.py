"""One source for defaults: every ctdm class a YAML file of conf/ builds (`_target_`) has the same
signature default for each key that file sets, so the Python API gets the settings the configs chose
(e.g. ContrastiveDiffusionLoss: 16 points, the measured default). Read from the YAML files, so a
changed config default fails here until the class follows. Keys whose value is an interpolation or ???
are the config's to tie to other keys; classes outside ctdm (torch, Lightning) are not ours to change."""

import inspect

from conftest import CONF
from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

# (file, target, key): where a class default differs on purpose, and why.
DELIBERATE = {
    # The size options of one class: UNet's defaults are DDPM's CIFAR-10 UNet (model/unet_cifar).
    **{
        ("model/unet_small.yaml", "ctdm.nets.UNet", k): "a smaller UNet"
        for k in ("width", "mult", "attn_resolutions", "dropout")
    },
    # The bare residual MLP is the class (the Python API, the suite's tiny nets); model=mlp's 4
    # input Fourier features are that option's choice for 2-D data (steep optimal denoisers near clean data).
    ("model/mlp.yaml", "ctdm.nets.ResidualMLP", "input_freqs"): "model=mlp adds Fourier features",
    # Loader processes: the classes load in-process (tests, notebooks); the image configs choose workers.
    **{
        (f"data/{d}.yaml", t, k): "in-process loading by default"
        for d, t in (
            ("cifar10", "ctdm.data.CIFAR10DataModule"),
            ("image_folder", "ctdm.data.ImageFolderDataModule"),
        )
        for k in ("num_workers", "pin_memory")
    },
}
# Differences found when this test was written and not yet reconciled (each needs a look at what
# depends on the class default); listed so that a new difference, or a fixed one, fails here.
NOT_YET_RECONCILED: set = set()


def targets(node, where=""):
    """Every node with a `_target_` in a loaded YAML file, nested ones included."""
    if isinstance(node, DictConfig):
        if "_target_" in node:
            yield node
        for key in node.keys():
            yield from targets(node._get_node(key), f"{where}.{key}")
    elif isinstance(node, ListConfig):
        for i in range(len(node)):
            yield from targets(node._get_node(i), f"{where}[{i}]")


def signature_defaults(target: str) -> dict:
    """Defaults of the callable's arguments, a class's base classes included (their **kwargs)."""
    obj = get_object(target)
    functions = [c.__init__ for c in obj.__mro__ if "__init__" in vars(c)] if inspect.isclass(obj) else [obj]
    defaults = {}
    for function in functions:
        for name, p in inspect.signature(function).parameters.items():
            if p.default is not inspect.Parameter.empty:
                defaults.setdefault(name, p.default)
    return defaults


def literal(node):
    """The YAML value as plain data, or None for an interpolation, ??? or a nested `_target_` node."""
    if node._is_missing() or node._is_interpolation():
        return None
    if isinstance(node, DictConfig | ListConfig):
        raw = OmegaConf.to_container(node, resolve=False)
        return None if "${" in repr(raw) or (isinstance(raw, dict) and "_target_" in raw) else raw
    return node._value()


def differences():
    found = {}
    for path in sorted(CONF.rglob("*.yaml")):
        name = path.relative_to(CONF).as_posix()
        for node in targets(OmegaConf.load(path)):
            if not node._target_.startswith("ctdm."):
                continue
            defaults = signature_defaults(node._target_)
            for key in node.keys():
                value = None if key.startswith("_") or key == "defaults" else literal(node._get_node(key))
                if value is None or key not in defaults:
                    continue
                default = list(defaults[key]) if isinstance(defaults[key], tuple) else defaults[key]
                if default != value:
                    found[(name, node._target_, key)] = (value, defaults[key])
    return found


def test_class_defaults_equal_the_yaml_that_builds_them():
    found = differences()
    unexplained = {k: v for k, v in found.items() if k not in DELIBERATE and k not in NOT_YET_RECONCILED}
    assert not unexplained, "(file, target, key): (YAML, class default) " + repr(unexplained)
    assert set(found) == set(DELIBERATE) | NOT_YET_RECONCILED, "fixed: drop from the lists " + repr(
        (set(DELIBERATE) | NOT_YET_RECONCILED) - set(found)
    )


def test_the_walk_sees_the_cdl_defaults():
    """The walk reads conf/loss/_cdl.yaml's CDL node: a changed points value there shows up."""
    cdl = next(n for n in targets(OmegaConf.load(CONF / "loss" / "_cdl.yaml")) if "points" in n)
    assert signature_defaults(cdl._target_)["points"] == cdl.points
    assert signature_defaults("ctdm.losses.ContrastiveDiffusionLoss")["weight"] == cdl.weight
