"""What importing the protocol modules loads: part of the cold start of every function that signs or verifies."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import ForwardRef

import pytest

from chalicelib.alipay import params

ROOT = Path(__file__).parent.parent.parent
MODULES = ("chalicelib.alipay.notifications", "chalicelib.alipay.openapi", "chalicelib.alipay.mapi")
# Imported by the functions that need them, on first use: amounts, base64 signatures, the verification's padding and
# exception, the JSON of gateway replies, timestamps, URLs.
DEFERRED = {
    "decimal",
    "binascii",
    "cryptography.exceptions",
    "cryptography.hazmat.primitives.asymmetric.padding",
    "json",
    "datetime",
    "urllib.parse",
}
# Records typed for mypy as NamedTuple classes under TYPE_CHECKING, and at run time collections.namedtuples defined on
# first use (chalicelib/alipay/records.py).
RECORDS = [
    ("chalicelib.alipay.notifications", "Notification"),
    ("chalicelib.alipay.openapi", "SignedResponse"),
    ("chalicelib.alipay.openapi", "AppPayResult"),
    ("chalicelib.alipay.mapi", "SecuritypayResult"),
]


def test_importing_the_protocol_modules_leaves_decimal_json_and_the_verification_imports_to_first_use() -> None:
    code = f"import sys; import {', '.join(MODULES)}; print(' '.join(sorted(set(sys.modules) & {DEFERRED!r})))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.split() == []


def test_no_class_of_the_protocol_modules_holds_forward_references() -> None:
    # typing.NamedTuple (or TypedDict) in class form compiles every annotation string into a ForwardRef, and the first
    # compile() of a process initialises all of CPython's AST types: ~0.7 ms of a cold start.
    for name in MODULES:
        for value in vars(importlib.import_module(name)).values():
            annotations = vars(value).get("__annotations__", {}) if isinstance(value, type) else {}
            assert not any(isinstance(a, ForwardRef) for a in annotations.values()), f"{name}.{value.__name__}"


def _typed_fields(module: str, name: str) -> list[str]:
    """The fields of the NamedTuple class ``name`` declared under ``if TYPE_CHECKING:`` in ``module``'s source."""
    tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for cls in node.body:
                if isinstance(cls, ast.ClassDef) and cls.name == name:
                    fields = [s.target for s in cls.body if isinstance(s, ast.AnnAssign)]
                    return [f.id for f in fields if isinstance(f, ast.Name)]
    raise AssertionError(f"no typed definition of {name} in {module}")


@pytest.mark.parametrize(("module", "name"), RECORDS)
def test_each_record_built_at_run_time_has_the_fields_its_typed_definition_declares(module: str, name: str) -> None:
    record = getattr(importlib.import_module(module), name)
    fields = _typed_fields(module, name)
    assert list(record._fields) == fields
    built = record(*fields)
    assert (type(built).__name__, type(built).__module__, built._fields) == (name, module, tuple(fields))
    assert isinstance(built, tuple)
    assert [getattr(built, field) for field in fields] == fields
    assert record(**dict(zip(fields, fields, strict=True))) == built


def test_the_constants_params_builds_on_first_access_are_the_values_they_name() -> None:
    built = (params.ZERO, params.MIN_AMOUNT, params.MAX_AMOUNT)
    assert built == (Decimal(0), Decimal("0.01"), Decimal("100000000"))
    assert params.INJECTED_FIELD.search("a&b=c")
    assert not params.INJECTED_FIELD.search("a&b")
    with pytest.raises(AttributeError, match="NO_SUCH_CONSTANT"):
        getattr(params, "NO_SUCH_CONSTANT")  # noqa: B009 - the module's __getattr__ is what is tested


def test_a_records_first_build_leaves_its_module_holding_the_namedtuple_itself() -> None:
    # In a fresh interpreter: before its first build the module holds the LazyRecord, which importers keep.
    code = (
        "from chalicelib.alipay import openapi; from chalicelib.alipay.records import LazyRecord; "
        "held = openapi.AppPayResult; before = isinstance(held, LazyRecord); built = held(*'abcdefg'); "
        "again = held(*'abcdefg'); "
        "print(before, openapi.AppPayResult is type(built), again == built, type(again) is type(built), "
        "isinstance(built, held), held._make('abcdefg') == built)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True"] * 6
