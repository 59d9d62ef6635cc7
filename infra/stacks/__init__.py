"""The CDK stacks of Alipay app payments on AWS.

The names and keys the stack shares with the Lambda code (table key, waiting index, event source, SSM parameter
names, signing algorithm, DLQ receive count) come from the app's own ``chalicelib/topology.py``, imported, never
spelled again here: the project root goes on the path (appended, so nothing of infra/ is shadowed).
"""

from __future__ import annotations

import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]
if str(PROJECT_DIR) not in sys.path:
    sys.path.append(str(PROJECT_DIR))
