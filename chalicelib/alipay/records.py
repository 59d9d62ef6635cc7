"""Records a module declares but most functions never build, defined on first use.

``collections.namedtuple`` compiles each record's ``__new__``: about 0.1 ms per record, paid at every cold start by
each record defined at import. A webhook never builds a reply's or an app result's record, nor an order's function a
notification's.
"""

from __future__ import annotations

import sys
from typing import Any


class LazyRecord:
    """``collections.namedtuple(name, fields)``, defined on its first call and called as that type from then on.

    A module declares the record as a ``NamedTuple`` class for mypy (under ``TYPE_CHECKING``) and binds this at run
    time, so callers build and read the very namedtuple; the first call rebinds the module's name to it. It is not
    itself a type: nothing checks ``isinstance`` against one.
    """

    __slots__ = ("_fields", "_module", "_name", "_type")

    def __init__(self, name: str, fields: str, module: str) -> None:
        self._name, self._module = name, module
        self._fields = tuple(fields.split())  # as the namedtuple will name them
        self._type: Any = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        record = self._type
        if record is None:
            from collections import namedtuple

            record = self._type = namedtuple(self._name, self._fields, module=self._module)
            # From now on the module's own name is the namedtuple: its functions (a notification's verification, on
            # every request) build records without this call in between. Importers of the name keep this one.
            setattr(sys.modules[self._module], self._name, record)
        return record(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<record {self._module}.{self._name}{self._fields}>"
