"""The names infra/, the adapters and the local stack share are spelled once, in chalicelib/topology.py.

Renaming the waiting index in the adapter alone would pass every local test and break reconciliation in AWS; so no
module of the Lambda code, the local stack or the CDK stack may write one of these values as a literal of its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from chalicelib import topology

ROOT = Path(__file__).resolve().parents[2]
TOPOLOGY = ROOT / "chalicelib" / "topology.py"
# Where a shared name is used by what AWS reads: the table's keys and index, the queue, the bus, the key, SSM.
USERS = ("chalicelib/adapters", "chalicelib/config.py", "chalicelib/orders", "devstack", "infra/stacks")
SHARED = {
    "TTL_ATTRIBUTE": topology.TTL_ATTRIBUTE,
    "WAITING_SINCE": topology.WAITING_SINCE,
    "STREAM_VIEW_TYPE": topology.STREAM_VIEW_TYPE,
    "SIGNING_ALGORITHM": topology.SIGNING_ALGORITHM,
    "SIGNING_KEY_SPEC": topology.SIGNING_KEY_SPEC,
    "EVENT_SOURCE": topology.EVENT_SOURCE,
    **{f"SSM parameter {name}": name for name in topology.SSM_PARAMETERS},
}
# Short values ("pk", "waiting") are common words: they are looked for where they would name the table's schema.
SCHEMA_KEYWORDS = ("AttributeName", "IndexName", "index_name", "partition_key", "sort_key", "name")


def python_files() -> list[Path]:
    files: list[Path] = []
    for place in USERS:
        path = ROOT / place
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return [f for f in files if f != TOPOLOGY and "node_modules" not in f.parts and ".venv" not in f.parts]


def string_literals(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}


def schema_literals(path: Path) -> set[str]:
    """String literals passed as a schema keyword (``IndexName="waiting"``, ``{"AttributeName": "pk"}``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.keyword) and node.arg in SCHEMA_KEYWORDS and isinstance(node.value, ast.Constant):
            found.add(str(node.value.value))
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if (
                    isinstance(key, ast.Constant)
                    and key.value in SCHEMA_KEYWORDS
                    and isinstance(value, ast.Constant)
                ):
                    found.add(str(value.value))
    return found


def respelled_constants(path: Path) -> set[str]:
    """Assignments of a literal to one of the topology's own names (``WAITING_INDEX = "waiting"``)."""
    names = {name for name in vars(topology) if name.isupper()}
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Constant):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found.update(t.id for t in targets if isinstance(t, ast.Name) and t.id in names)
    return found


def test_no_module_assigns_a_topology_name_a_literal_of_its_own() -> None:
    respelled = {str(f.relative_to(ROOT)): sorted(respelled_constants(f)) for f in python_files()}
    assert {f: names for f, names in respelled.items() if names} == {}


def test_the_places_that_share_names_are_all_read() -> None:
    files = python_files()
    assert any("infra" in f.parts for f in files)
    assert ROOT / "chalicelib" / "adapters" / "dynamodb.py" in files
    assert ROOT / "devstack" / "resources.py" in files


@pytest.mark.parametrize(("name", "value"), sorted(SHARED.items()))
def test_no_module_spells_a_shared_name_again(name: str, value: str) -> None:
    spelled = [str(f.relative_to(ROOT)) for f in python_files() if value in string_literals(f)]
    assert spelled == [], f"{name} ({value!r}) is spelled outside chalicelib/topology.py"


@pytest.mark.parametrize(
    "value", [topology.PARTITION_KEY, topology.WAITING_INDEX, topology.WAITING_KEY, topology.WAITING_SINCE]
)
def test_no_table_schema_names_a_key_or_index_of_its_own(value: str) -> None:
    spelled = [str(f.relative_to(ROOT)) for f in python_files() if value in schema_literals(f)]
    assert spelled == []


def test_the_checker_would_see_a_respelled_waiting_index(tmp_path: Path) -> None:
    module = tmp_path / "adapter.py"
    module.write_text('QUERY = {"IndexName": "waiting"}\nclient.query(IndexName="waiting")\n', encoding="utf-8")
    assert schema_literals(module) == {"waiting"}
    module.write_text('WAITING_INDEX = "waiting"\n', encoding="utf-8")
    assert respelled_constants(module) == {"WAITING_INDEX"}
