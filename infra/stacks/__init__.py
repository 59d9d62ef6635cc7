"""The CDK stacks of Alipay app payments on AWS.

The names and keys the stack shares with the Lambda code (table key, waiting index, event source, SSM parameter
names, signing algorithm, DLQ receive count) come from the app's own ``chalicelib/topology.py``, never spelled
again here. It is loaded from its file, as ``stacks.topology``: putting the project on ``sys.path`` would let
``import app`` find infra's own app.py when the Chalice construct loads the Chalice app.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

PROJECT_DIR = Path(__file__).resolve().parents[2]


def _load_topology() -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{__name__}.topology", PROJECT_DIR / "chalicelib" / "topology.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {PROJECT_DIR / 'chalicelib' / 'topology.py'}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


topology = _load_topology()
