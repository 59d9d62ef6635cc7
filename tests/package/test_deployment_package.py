"""The Lambda deployment package holds the product and its runtime dependencies, nothing of the workshop.

Built as a deployment builds it: ``chalice package`` (what the CDK construct runs) over the project as git sees it
(tracked files and new ones not ignored; no caches, no venv). Run by ``make package-check`` (in CI's ``.ci/run``):
it downloads the Lambda wheels of requirements.txt from PyPI, once per machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.package

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
    return zipfile.ZipFile(out / "deployment.zip")


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
