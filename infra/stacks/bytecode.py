"""The Lambda package ships compiled bytecode: Lambda never has to compile the product or its dependencies.

``chalice package`` zips sources only (wheels hold no ``.pyc``), and Lambda's ``/var/task`` is read-only, so without
this every cold start compiles every module it imports, ours and boto3's alike, and keeps none of it: on this
project's package ``import app`` took ~200 ms instead of ~35 ms, and boto3 with two clients ~1,060 ms instead of
~210 ms (docs/deploy.md, "Bytecode in the package").

Each ``.py`` in the package gets its ``__pycache__/<name>.cpython-3XY.pyc`` compiled by this interpreter (the one
``chalice package`` ran in, whose version names the functions' runtime), as an *unchecked hash-based* pyc (PEP 552):
Python loads it without comparing the source's timestamp, which a zip keeps only to two seconds and Lambda's
extraction need not keep at all. Unchecked is safe here because the package is immutable: the pyc is compiled from
the very bytes beside it, and its header records their hash (the package check verifies it).

Only the standard library: the infra stack runs it after Chalice's construct packages the app
(``stacks/alipay_global.py``, ``CompiledChalice``), and the package check (``tests/package``) after ``chalice package``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import py_compile
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

# Where Lambda extracts the package: the file name the compiled code reports in tracebacks. Python fixes it up to the
# path it actually loaded from anyway; a fixed prefix keeps the pyc (and the asset's hash) independent of the build.
TASK_ROOT = "/var/task"
PACKAGES = ("deployment.zip", "layer-deployment.zip")  # what `chalice package` writes; the layer only if configured
# Each source's pyc by its name and hash: a process that synthesizes several stages (the infra tests, ~15 synths)
# compiles the same dependencies once.
_COMPILED: dict[tuple[str, bytes], bytes | None] = {}


class BytecodeError(Exception):
    """The package cannot be given bytecode its functions would load."""


@dataclass(frozen=True)
class Compiled:
    """What one package got: a pyc per module compiled, and the sources left as they are (they do not compile)."""

    modules: int
    skipped: tuple[str, ...]
    bytes_added: int


def runtime_tag() -> str:
    """The Lambda runtime whose Python this interpreter's pycs are for (``python3.11``)."""
    return f"python{sys.version_info.major}.{sys.version_info.minor}"


def package_runtimes(sam_template: Path) -> set[str]:
    """The runtimes of the template's functions (Chalice gives them all the Python it packaged with)."""
    template = json.loads(sam_template.read_text(encoding="utf-8"))
    resources = template.get("Resources", {}).values()
    return {
        str(resource["Properties"]["Runtime"])
        for resource in resources
        if resource.get("Type") == "AWS::Serverless::Function" and "Runtime" in resource.get("Properties", {})
    }


def compile_chalice_output(output_dir: Path) -> dict[str, Compiled]:
    """Bytecode for every package ``chalice package`` wrote into ``output_dir`` (its ``sam.json`` beside them)."""
    runtimes = package_runtimes(output_dir / "sam.json")
    if runtimes != {runtime_tag()}:
        raise BytecodeError(
            f"the functions run {sorted(runtimes)}, but this is {runtime_tag()}: its bytecode would not be loaded "
            "(package with the runtime's Python)"
        )
    return {name: add_bytecode(output_dir / name) for name in PACKAGES if (output_dir / name).is_file()}


def add_bytecode(package: Path) -> Compiled:
    """Rewrite the zip ``package`` with an unchecked hash-based pyc beside each of its ``.py`` files.

    Bytecode already in the zip (a ``__pycache__`` Chalice copied from a working tree: timestamp-checked, maybe of an
    older source) is dropped first. A source that does not compile stays as it is, without a pyc (importing it fails
    in Lambda exactly as it would have); it is reported.
    """
    with zipfile.ZipFile(package) as source:
        entries = [info for info in source.infolist() if not _is_bytecode(info.filename)]
        contents = {info.filename: source.read(info) for info in entries}
    compiled: dict[str, bytes] = {}
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bytecode-") as scratch:
        for info in entries:
            if info.filename.endswith(".py") and not info.is_dir():
                key = (info.filename, importlib.util.source_hash(contents[info.filename]))
                if key not in _COMPILED:
                    _COMPILED[key] = _compile(Path(scratch), info.filename, contents[info.filename])
                pyc = _COMPILED[key]
                if pyc is None:
                    skipped.append(info.filename)
                else:
                    compiled[info.filename] = pyc
    rewritten = package.with_name(f".{package.name}.bytecode")
    with zipfile.ZipFile(rewritten, "w", zipfile.ZIP_DEFLATED) as target:
        for info in entries:
            target.writestr(info, contents[info.filename], compress_type=info.compress_type)
            pyc = compiled.get(info.filename)
            if pyc is not None:
                entry = zipfile.ZipInfo(_cache_name(info.filename), date_time=info.date_time)
                entry.external_attr = 0o644 << 16
                target.writestr(entry, pyc, compress_type=zipfile.ZIP_DEFLATED)
    os.replace(rewritten, package)
    return Compiled(len(compiled), tuple(skipped), sum(len(pyc) for pyc in compiled.values()))


def _compile(scratch: Path, name: str, source: bytes) -> bytes | None:
    """The unchecked hash-based pyc of ``source`` (the zip's ``name``), or None when it does not compile."""
    path = scratch / "source.py"
    path.write_bytes(source)
    cfile = scratch / "source.pyc"
    try:
        py_compile.compile(
            str(path),
            cfile=str(cfile),
            dfile=f"{TASK_ROOT}/{name}",
            doraise=True,
            optimize=0,  # Lambda runs Python without -O: it looks for the plain .pyc, asserts kept
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
    except py_compile.PyCompileError:
        return None
    return cfile.read_bytes()


def _cache_name(name: str) -> str:
    """``pkg/mod.py`` -> ``pkg/__pycache__/mod.cpython-3XY.pyc``, where this interpreter's imports look for it."""
    return importlib.util.cache_from_source(name, optimization="")


def _is_bytecode(name: str) -> bool:
    """An entry of a ``__pycache__`` folder (a sourceless ``.pyc`` beside no source is a module: it stays)."""
    return "__pycache__" in PurePosixPath(name).parts
