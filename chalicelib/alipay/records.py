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
    time, so callers build, read and ``isinstance``-check the very namedtuple; the first use rebinds the module's name
    to it. It is not itself a type: a ``match`` class pattern cannot name it, and a record pickled in one process
    unpickles in another only once that one has built a record of the kind (the module's name is the type then).
    """

    __slots__ = ("_fields", "_module", "_name", "_type")

    def __init__(self, name: str, fields: str, module: str) -> None:
        self._name, self._module = name, module
        self._fields = tuple(fields.split())  # as the namedtuple will name them
        self._type: Any = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._built()(*args, **kwargs)

    def __instancecheck__(self, instance: object) -> bool:
        return isinstance(instance, self._built())

    def __getattr__(self, name: str) -> Any:  # the namedtuple's own: _make, _field_defaults, ...
        if name in LazyRecord.__slots__:  # one of ours not set (an object made without __init__): never recurse
            raise AttributeError(name)
        return getattr(self._built(), name)

    def _built(self) -> Any:
        record = self._type
        if record is None:
            from collections import namedtuple

            record = self._type = namedtuple(self._name, self._fields, module=self._module)
            # From now on the module's own name is the namedtuple: its functions (a notification's verification, on
            # every request) build records without this object in between, and pickles find the type by that name.
            # Modules that imported the name earlier keep this one, which builds and checks the very same records.
            setattr(sys.modules[self._module], self._name, record)
        return record

    def __repr__(self) -> str:
        return f"<record {self._module}.{self._name}{self._fields}>"
