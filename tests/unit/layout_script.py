"""scripts/layout.py loaded as a module (it is a script, not part of the package): the stage lists'
one owner, shared by the layout and import-direction tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "layout.py"


def load_layout() -> ModuleType:
    if "layout_script" not in sys.modules:
        spec = importlib.util.spec_from_file_location("layout_script", SCRIPT)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["layout_script"] = module
        spec.loader.exec_module(module)
    return sys.modules["layout_script"]
