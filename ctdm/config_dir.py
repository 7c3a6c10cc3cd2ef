"""Where ctdm's YAML configs are read from: one answer for the entry points, ctdm.config, the tests,
benchmarks and experiments.

conf/ sits at the repository's top level, beside ctdm/. A wheel (or a non-editable `pip install .`)
ships it inside the package as ctdm/conf (setup.py maps the package ctdm.conf to conf/), so:
- an installed ctdm reads its own copy, ctdm/conf, the files it was built with;
- a ctdm imported from a source tree (a clone's editable install, or PYTHONPATH=<checkout>) has no
  ctdm/conf and reads the conf/ beside it.
Paths, not Hydra's `pkg://ctdm.conf`: from a source tree that import would be answered by whatever
editable install the environment holds, which can be another checkout's conf/.
"""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
CANDIDATES = (_PACKAGE / "conf", _PACKAGE.parent / "conf")  # installed copy first, then the source tree


def find_config_dir(candidates: tuple[Path, ...] = CANDIDATES) -> Path:
    for folder in candidates:
        if (folder / "config.yaml").is_file():
            return folder
    raise FileNotFoundError(
        f"ctdm's configs were not found: neither {candidates[0]} (an installed package's copy) nor "
        f"{candidates[1]} (conf/ beside the ctdm/ of a source tree) holds config.yaml. Reinstall ctdm "
        "(pip install <the repository> or its wheel), or run from a complete clone of the repository."
    )


CONFIG_DIR = find_config_dir()
