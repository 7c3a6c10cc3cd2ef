"""Package names that load on first use (PEP 562), so a package's light modules import without its heavy
ones: the entry points check a config before torch, Lightning or torchmetrics load (ctdm.cli)."""

import importlib
import sys


def lazy_exports(package: str, module_of: dict[str, str]):
    """(__getattr__, __dir__, __all__) for `package`, whose names {name: submodule} import on first use."""

    def __getattr__(name: str):
        if name in module_of:
            return getattr(importlib.import_module(f"{package}.{module_of[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(module_of))

    return __getattr__, __dir__, sorted(module_of)
