"""Only the package list; everything else is in pyproject.toml.

pyproject's `packages.find` cannot add a package whose folder lies outside ctdm/: conf/ stays at the
repository's top level and is shipped as the package ctdm.conf (pyproject's package-dir maps it), so
the wheel carries every config as ctdm/conf (read by ctdm.config_dir).
"""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["ctdm*"]), "ctdm.conf"])
