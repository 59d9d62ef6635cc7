"""The Lambda deployment package holds the product and its runtime dependencies, nothing of the workshop, and the
bytecode of every module, so that Lambda compiles nothing at a cold start.

Built as a deployment builds it: ``chalice package`` (what the CDK construct runs) over the project as git sees it
(tracked files and new ones not ignored; no caches, no venv), then infra/stacks/bytecode.py on its output (what the
stack's ``CompiledChalice`` runs). Run by ``make package-check`` (in CI's ``.ci/run``): it downloads the Lambda
wheels of requirements.txt from PyPI, once per machine.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.package


def bytecode_module() -> ModuleType:
    """infra/stacks/bytecode.py, standard library only: the infra stack's own step, loaded from its file (the infra
    package itself needs the infra venv)."""
    spec = importlib.util.spec_from_file_location("infra_bytecode", ROOT / "infra" / "stacks" / "bytecode.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


# Top-level packages of this repository that Lambda never runs, and tools that are not runtime dependencies.
WORKSHOP = ("devstack", "sandbox", "ops", "tests", "bench", "infra", "docs")
NOT_RUNTIME = ("click", "moto", "werkzeug", "flask", "pytest", "hypothesis", "requests", "playwright")


def project_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    return [name for name in listed.split("\0") if name and (ROOT / name).is_file()]


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    project = tmp_path_factory.mktemp("project")
    for name in project_files():
        target = project / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    out = tmp_path_factory.mktemp("package") / "out"
    chalice = Path(sys.executable).with_name("chalice")
    env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
    subprocess.run([str(chalice), "package", "--stage", "dev", str(out)], cwd=project, env=env, check=True)
    compiled = bytecode_module().compile_chalice_output(out)
    assert set(compiled) == {"deployment.zip"}  # no layer configured: the dependencies are in the one package
    return zipfile.ZipFile(out / "deployment.zip")


@pytest.fixture(scope="module")
def extracted(package: zipfile.ZipFile, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package as Lambda extracts it into /var/task (this extraction keeps no file times, as Lambda need not)."""
    task = tmp_path_factory.mktemp("task")
    package.extractall(task)
    return task


def run_in_task(task: Path, script: str, *options: str) -> str:
    """``script`` in a fresh interpreter as Lambda runs the package: ``task`` first on the path, nothing of this
    checkout or its environment (-I), and no bytecode written (-B; /var/task is read-only)."""
    command = [sys.executable, "-I", "-B", *options, "-c", f"import sys; sys.path.insert(0, {str(task)!r}); {script}"]
    env = {"PATH": os.environ.get("PATH", ""), "AWS_DEFAULT_REGION": "us-east-1"}
    done = subprocess.run(command, cwd=task, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def top_levels(package: zipfile.ZipFile) -> set[str]:
    return {name.split("/")[0] for name in package.namelist()}


def test_the_package_holds_the_app_and_the_product_package(package: zipfile.ZipFile) -> None:
    names = set(package.namelist())
    assert {"app.py", "chalicelib/bootstrap.py", "chalicelib/topology.py", "chalicelib/alipay/signing.py"} <= names


def test_the_package_holds_no_dev_stack_sandbox_cli_or_other_workshop_code(package: zipfile.ZipFile) -> None:
    assert top_levels(package) & set(WORKSHOP) == set()
    # Nor hidden inside the product package (the local stack used to be a package inside chalicelib).
    workshop_parts = {"local", "cli.py", "doctor.py", "sandbox.py", "faults.py"}
    inside = [n for n in package.namelist() if n.startswith("chalicelib/") and workshop_parts & set(n.split("/"))]
    assert inside == []


def test_the_package_holds_no_test_or_tooling_dependency(package: zipfile.ZipFile) -> None:
    tops = {name.lower().split("-")[0].removesuffix(".py") for name in top_levels(package)}
    assert tops & set(NOT_RUNTIME) == set()


def test_the_packaged_product_imports_neither_click_nor_moto(package: zipfile.ZipFile) -> None:
    sources = [n for n in package.namelist() if n == "app.py" or (n.startswith("chalicelib/") and n.endswith(".py"))]
    assert sources
    for name in sources:
        text = package.read(name).decode("utf-8")
        for tool in ("click", "moto"):
            assert f"import {tool}" not in text, name
            assert f"from {tool}" not in text, name


def test_report_the_package_size(package: zipfile.ZipFile) -> None:
    """Not a limit: the figures docs/testing.md reports (Lambda's own limit is 250 MB unzipped)."""
    assert package.filename is not None
    zipped = Path(package.filename).stat().st_size
    unzipped = sum(info.file_size for info in package.infolist())
    ours = [i for i in package.infolist() if i.filename == "app.py" or i.filename.startswith("chalicelib/")]
    product = sum(info.file_size for info in ours)
    print(
        f"\ndeployment package: {zipped / 1e6:.1f} MB zipped, {unzipped / 1e6:.1f} MB unzipped; "
        f"app.py + chalicelib/: {len(ours)} files, {product / 1e3:.0f} kB"
    )
    assert unzipped < 250 * 1024 * 1024


def test_every_module_in_the_package_has_its_unchecked_bytecode_compiled_from_the_source_beside_it(
    package: zipfile.ZipFile,
) -> None:
    names = set(package.namelist())
    sources = sorted(n for n in names if n.endswith(".py"))
    assert {"app.py", "chalicelib/bootstrap.py", "botocore/client.py"} <= set(sources)
    for name in sources:
        cached = importlib.util.cache_from_source(name, optimization="")
        assert cached in names, f"{name} has no {cached}"
        header = package.read(cached)[:16]
        assert header[:4] == importlib.util.MAGIC_NUMBER, name  # this Python's, which the runtime is named after
        assert int.from_bytes(header[4:8], "little") == 0b01, name  # hash-based, not checked against the source
        assert header[8:16] == importlib.util.source_hash(package.read(name)), name  # ... compiled from these bytes
    caches = {n for n in names if "__pycache__" in n.split("/")}
    assert caches == {importlib.util.cache_from_source(n, optimization="") for n in sources}  # nothing stale


def test_the_packaged_app_and_the_aws_sdk_load_from_bytecode_alone(extracted: Path, tmp_path: Path) -> None:
    """Every source in a copy of the package replaced by code that fails: what imports still works loaded nothing
    but bytecode (as in Lambda, where a source compiled at a cold start is compiled again at the next)."""
    task = tmp_path / "task"
    shutil.copytree(extracted, task)
    for source in task.rglob("*.py"):
        source.write_text("raise ImportError('compiled from source at a cold start')\n", encoding="utf-8")
    script = (
        "import app, boto3; "
        "session = boto3.session.Session(); "
        "[session.client(s, endpoint_url='http://127.0.0.1:9') for s in ('dynamodb', 'kms', 'sqs')]; "
        "print(app.app.app_name)"
    )
    assert run_in_task(task, script).strip() == "alipay-global"


def test_report_the_cold_import_from_the_package_with_and_without_its_bytecode(extracted: Path, tmp_path: Path) -> None:
    """Not a limit: the figures docs/deploy.md reports (the median of 5 fresh interpreters each way). Without its
    bytecode is how the package was before: Lambda compiled every module it imported at every cold start."""
    script = (
        "import time; t0 = time.perf_counter(); import app; t1 = time.perf_counter(); import boto3; "
        "session = boto3.session.Session(); "
        "[session.client(s, endpoint_url='http://127.0.0.1:9') for s in ('dynamodb', 'kms', 'sqs')]; "
        "t2 = time.perf_counter(); print(t1 - t0, t2 - t1)"
    )
    figures = {}
    for label, options in (("with", ()), ("without", ("-X", f"pycache_prefix={tmp_path / 'none'}"))):
        runs = sorted((tuple(float(x) for x in run_in_task(extracted, script, *options).split())) for _ in range(5))
        figures[label] = runs[2]
    print()
    for label, (app_s, sdk_s) in figures.items():
        sdk = f"boto3 + 3 clients {sdk_s * 1e3:7.1f} ms"
        print(f"package {label:<7} its bytecode: import app {app_s * 1e3:6.1f} ms, {sdk}")
