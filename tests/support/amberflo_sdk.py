"""The published Amberflo SDK (``amberflo-metering-python``), loaded beside our own ``metering`` app.

Both are a top-level package named ``metering``. The project's directory comes first on
``sys.path``, so ``import metering`` is always ours; this module imports the SDK's package from
its distribution's directory once, with our modules set aside for that moment, and hands its
modules out by name. The SDK's modules bind their own imports at import time, so they keep
using each other afterwards. Import this at collection time, before any live server thread runs.
"""

from __future__ import annotations

import importlib
import sys
from importlib.metadata import distribution
from types import ModuleType, SimpleNamespace

_SDK_MODULES = ("metering", "metering.exceptions", "metering.session", "metering.ingest", "metering.usage")


def _is_metering(name: str) -> bool:
    return name == "metering" or name.startswith("metering.")


def _load() -> SimpleNamespace:
    site = str(distribution("amberflo-metering-python").locate_file(""))
    ours = {name: module for name, module in sys.modules.items() if _is_metering(name)}
    for name in ours:
        del sys.modules[name]
    sys.path.insert(0, site)
    loaded: dict[str, ModuleType] = {}
    try:
        for name in _SDK_MODULES:
            importlib.import_module(name)
        loaded = {name: module for name, module in sys.modules.items() if _is_metering(name)}
    finally:
        sys.path.remove(site)
        for name in [name for name in sys.modules if _is_metering(name)]:
            del sys.modules[name]
        sys.modules.update(ours)
    package = loaded["metering"]
    assert package.__file__ is not None and package.__file__.startswith(site), package.__file__
    return SimpleNamespace(
        version=package.__version__,
        exceptions=loaded["metering.exceptions"],
        session=loaded["metering.session"],
        ingest=loaded["metering.ingest"],
        usage=loaded["metering.usage"],
    )


sdk = _load()
