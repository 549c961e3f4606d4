"""A registry of named entries of one kind (algorithms, window strategies): add, list, look up.

Each entry has a ``name``; looking up a name nobody registered is a :class:`ScheduleError` that
lists the registered ones.
"""

from __future__ import annotations

from .errors import ScheduleError


class Registry(dict):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def add(self, entry):
        self[entry.name] = entry
        return entry

    def names(self) -> tuple[str, ...]:
        return tuple(self)

    def lookup(self, name: str):
        if name not in self:
            raise ScheduleError(f"unknown {self.kind} {name!r}; choose one of {self.names()}.")
        return self[name]
