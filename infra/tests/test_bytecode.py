"""stacks/bytecode.py on small packages: what it compiles, what it leaves, what it refuses (the real package's
bytecode is checked in test_functions.py and, loaded in a fresh interpreter, in tests/package)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from stacks.bytecode import BytecodeError, add_bytecode, compile_chalice_output, runtime_tag

GOOD = b"VALUE = 6 * 7\n"
INFRA_DIR = Path(__file__).resolve().parents[1]


def cached(name: str) -> str:
    return importlib.util.cache_from_source(name, optimization="")


def write_zip(path: Path, entries: dict[str, bytes], mode: int = 0o644) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as package:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name, date_time=(2026, 12, 6, 12, 0, 0))
            info.external_attr = mode << 16
            package.writestr(info, data)
    return path


def chalice_output(directory: Path, runtime: str, *, layer: bool = False) -> Path:
    directory.mkdir()
    function = {"Type": "AWS::Serverless::Function", "Properties": {"Runtime": runtime, "Handler": "app.app"}}
    template = {"Resources": {"APIHandler": function, "Rest": {"Type": "AWS::Serverless::Api", "Properties": {}}}}
    (directory / "sam.json").write_text(json.dumps(template), encoding="utf-8")
    write_zip(directory / "deployment.zip", {"app.py": GOOD})
    if layer:
        write_zip(directory / "layer-deployment.zip", {"python/lib/dep.py": GOOD})
    return directory


def test_each_module_gets_an_unchecked_pyc_and_everything_else_is_kept_as_it_was(tmp_path: Path) -> None:
    entries = {"app.py": GOOD, "pkg/__init__.py": b"", "pkg/data.json": b"{}", "pkg/tool.sh": b"#!/bin/sh\n"}
    package = write_zip(tmp_path / "deployment.zip", entries, mode=0o755)
    compiled = add_bytecode(package)
    assert (compiled.modules, compiled.skipped) == (2, ())
    with zipfile.ZipFile(package) as result:
        assert set(result.namelist()) == set(entries) | {cached("app.py"), cached("pkg/__init__.py")}
        for name, data in entries.items():
            assert result.read(name) == data
            assert result.getinfo(name).external_attr == 0o755 << 16  # modes (an executable's) survive
        pyc = result.read(cached("app.py"))
        assert compiled.bytes_added == len(pyc) + len(result.read(cached("pkg/__init__.py")))
    assert pyc[:4] == importlib.util.MAGIC_NUMBER
    assert pyc[4:8] == (0b01).to_bytes(4, "little")  # hash-based, unchecked
    assert pyc[8:16] == importlib.util.source_hash(GOOD)


def test_the_pyc_is_loaded_without_its_source_being_read(tmp_path: Path) -> None:
    package = write_zip(tmp_path / "deployment.zip", {"app.py": GOOD})
    add_bytecode(package)
    task = tmp_path / "task"
    zipfile.ZipFile(package).extractall(task)
    (task / "app.py").write_bytes(b"raise ImportError('source read')\n")  # a newer source, same name
    script = f"import sys; sys.path.insert(0, {str(task)!r}); import app; print(app.VALUE)"
    command = [sys.executable, "-I", "-B", "-c", script]  # our own interpreter and script: no untrusted input
    done = subprocess.run(command, capture_output=True, text=True, check=True)  # noqa: S603
    assert done.stdout.strip() == "42"


def test_stale_bytecode_is_replaced_and_a_source_that_does_not_compile_is_left_without_one(tmp_path: Path) -> None:
    stale = bytes(16) + b"stale"
    entries = {
        "app.py": GOOD,
        cached("app.py"): stale,  # a working tree's timestamp pyc Chalice copied
        "chalicelib/__pycache__/moved.cpython-311.pyc": stale,  # of a module since moved away
        "legacy.pyc": stale,  # a sourceless module: the module itself, kept
        "py2.py": b"print 'hello'\n",
    }
    package = write_zip(tmp_path / "deployment.zip", entries)
    compiled = add_bytecode(package)
    assert (compiled.modules, compiled.skipped) == (1, ("py2.py",))
    with zipfile.ZipFile(package) as result:
        assert set(result.namelist()) == {"app.py", cached("app.py"), "legacy.pyc", "py2.py"}
        assert result.read(cached("app.py"))[8:16] == importlib.util.source_hash(GOOD)


def test_the_same_package_gets_the_same_bytes(tmp_path: Path) -> None:
    """The code asset's hash is its content's: an unchanged app must not redeploy its functions."""
    first = write_zip(tmp_path / "one.zip", {"app.py": GOOD, "pkg/mod.py": b"def f(x):\n    return {x: [x]}\n"})
    second = tmp_path / "two.zip"
    shutil.copy(first, second)
    add_bytecode(first)
    # The other in a process of its own (this one keeps what it compiled): marshal's output must not depend on it.
    script = f"from pathlib import Path; from stacks.bytecode import add_bytecode; add_bytecode(Path({str(second)!r}))"
    command = [sys.executable, "-c", script]  # our own interpreter and script: no untrusted input
    subprocess.run(command, cwd=INFRA_DIR, check=True)  # noqa: S603
    assert first.read_bytes() == second.read_bytes()


def test_chalices_output_is_compiled_package_and_layer(tmp_path: Path) -> None:
    output = chalice_output(tmp_path / "out", runtime_tag(), layer=True)
    compiled = compile_chalice_output(output)
    assert {name: c.modules for name, c in compiled.items()} == {"deployment.zip": 1, "layer-deployment.zip": 1}
    assert cached("python/lib/dep.py") in zipfile.ZipFile(output / "layer-deployment.zip").namelist()


def test_functions_of_another_python_are_refused(tmp_path: Path) -> None:
    """Another minor version looks for another file name and a pyc of another magic: shipped, it would be dead weight
    and the cold starts would compile everything again, unnoticed."""
    output = chalice_output(tmp_path / "out", "python3.9")
    before = (output / "deployment.zip").read_bytes()
    with pytest.raises(BytecodeError, match=r"python3\.9"):
        compile_chalice_output(output)
    assert (output / "deployment.zip").read_bytes() == before
