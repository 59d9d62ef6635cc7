"""The curl walk-throughs of docs/local-stack.md, taken from the document and run exactly as written."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from devstack.stack import PROJECT_DIR

DOCUMENT = "docs/local-stack.md"
# The first line of every walk-through: the URLs `make run` prints by default and its stack.json (where the merchant's
# credentials and the identity provider's URL are), replaced by a test stack's own.
DEFAULT_URLS = "API=http://127.0.0.1:8000 SANDBOX=http://127.0.0.1:8001 STACK=.local/stack.json"


def walkthrough(runner: str, document: str = DOCUMENT) -> str:
    """The shell block right after the comment in ``document`` that names ``runner`` as the test that runs it."""
    text = (PROJECT_DIR / document).read_text(encoding="utf-8")
    marker = f"<!-- the e2e suite runs this block against a stack of its own ({runner}) -->\n"
    assert text.count(marker) == 1, f"{document} must mark exactly one block as run by {runner}"
    after = text.split(marker, 1)[1]
    assert after.startswith("```sh\n"), f"in {document} the marker for {runner} must sit right above a sh block"
    return after.removeprefix("```sh\n").split("```", 1)[0]


def run_walkthrough(script: str, api: str, sandbox: str, stack_file: Path) -> subprocess.CompletedProcess[str]:
    """Run ``script`` with bash, strict, against the stack at ``api`` and ``sandbox`` (described by ``stack_file``)
    instead of the defaults."""
    first_line, rest = script.split("\n", 1)
    assert first_line == DEFAULT_URLS
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", f"API={api} SANDBOX={sandbox} STACK={shlex.quote(str(stack_file))}\n{rest}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
