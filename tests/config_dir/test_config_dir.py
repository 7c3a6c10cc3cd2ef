"""Where the configs are read from: conf/ beside ctdm/ in a source tree, ctdm/conf in an installed
package, and a wheel that carries every file of conf/ and the console scripts."""

import shutil
import subprocess
import sys
import zipfile

import pytest
from conftest import ROOT

from ctdm.config_dir import CONFIG_DIR, find_config_dir

SCRIPTS = {"ctdm-train", "ctdm-evaluate", "ctdm-compare"}


def test_a_source_tree_reads_the_conf_beside_its_package():
    assert CONFIG_DIR == ROOT / "conf"


def test_an_installed_copy_comes_first_and_the_source_tree_is_the_fallback(tmp_path):
    installed, source = tmp_path / "site" / "ctdm" / "conf", tmp_path / "clone" / "conf"
    for folder in (installed, source):
        folder.mkdir(parents=True)
        (folder / "config.yaml").write_text("seed: 0\n")
    assert find_config_dir((installed, source)) == installed
    (installed / "config.yaml").unlink()  # a folder without config.yaml is not a config folder
    assert find_config_dir((installed, source)) == source


def test_no_configs_anywhere_is_one_paragraph_naming_both_places(tmp_path):
    places = (tmp_path / "ctdm" / "conf", tmp_path / "conf")
    with pytest.raises(FileNotFoundError) as info:
        find_config_dir(places)
    assert str(places[0]) in str(info.value) and str(places[1]) in str(info.value)
    assert "config.yaml" in str(info.value)


def test_the_wheel_carries_every_config_and_the_console_scripts(tmp_path):
    """Built from a copy of the tree (setuptools writes build/ beside the sources), offline."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):  # every build file there is
        if (ROOT / name).is_file():
            shutil.copy(ROOT / name, src / name)
    for name in ("ctdm", "conf"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    build = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*build, "--wheel-dir", str(tmp_path / "dist")], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("ctdm-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = [archive.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt")]
    conf = ROOT / "conf"
    configs = {f"ctdm/conf/{p.relative_to(conf).as_posix()}" for p in conf.rglob("*") if p.is_file()}
    assert len(configs) > 50 and not configs - names, sorted(configs - names)
    assert "ctdm/data/assets/datasaurus_dino.tsv" in names
    found = {line.split("=")[0].strip() for text in entry_points for line in text.splitlines() if "=" in line}
    assert SCRIPTS <= found, entry_points
