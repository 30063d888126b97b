"""Querysets compiled to SQL once per process, then run with each call's values.

On the API's hot paths, building and compiling a Django query costs more than
PostgreSQL takes to run it: the statements are small and indexed, the Python that
writes them is not (`make bench-profile`: `build_filter`, `setup_joins`, `as_sql`
and `resolve_expression` were a third of an accepted reservation's time in
process). The ORM still writes every statement, from the same querysets as
elsewhere; it only does so once per connection alias and vendor. Each call binds its
own values where the queryset had placeholders.

A placeholder is a value no real call passes (a negative id, a string holding NUL),
found by position in the compiled parameters: compiling fails loudly if a
placeholder is absent or appears twice, so a queryset that folds or repeats a value
can never be bound wrongly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import connections
from django.db.models import QuerySet


@dataclass(frozen=True)
class _Statement:
    sql: str
    params: tuple[Any, ...]
    slots: Mapping[str, int]

    def bind(self, values: Mapping[str, Any]) -> list[Any]:
        if values.keys() != self.slots.keys():
            raise TypeError(
                f"values for {sorted(values)} given, "
                f"placeholders are {sorted(self.slots)}"
            )
        bound = list(self.params)
        for name, index in self.slots.items():
            bound[index] = values[name]
        return bound


class CompiledQuery:
    """A read queryset whose SQL is compiled once per connection, run with new values.

    `build` receives the placeholders by name and returns the queryset (a
    `values_list`, so rows come back as tuples); `placeholders` maps each name to a
    placeholder value of the right type for its column.
    """

    def __init__(
        self, build: Callable[..., QuerySet[Any]], **placeholders: Any
    ) -> None:
        self._build = build
        self._placeholders = placeholders
        self._statements: dict[tuple[str, str], _Statement] = {}
        self._lock = threading.Lock()

    def _statement(self, alias: str) -> _Statement:
        connection = connections[alias]
        cache_key = (alias, connection.vendor)
        statement = self._statements.get(cache_key)
        if statement is None:
            with self._lock:
                statement = self._statements.get(cache_key) or self._compile(alias)
                self._statements[cache_key] = statement
        return statement

    def _compile(self, alias: str) -> _Statement:
        queryset = self._build(**self._placeholders)
        sql, params = queryset.query.get_compiler(alias).as_sql()
        slots = {}
        for name, placeholder in self._placeholders.items():
            found = [i for i, value in enumerate(params) if value == placeholder]
            if len(found) != 1:
                raise RuntimeError(
                    f"placeholder {name!r} appears {len(found)} times in the compiled "
                    f"parameters {params!r}: give it a value no other parameter has"
                )
            slots[name] = found[0]
        return _Statement(sql=sql, params=tuple(params), slots=slots)

    def rows(self, *, using: str = "default", **values: Any) -> list[tuple[Any, ...]]:
        """Run the statement with `values` in place of the placeholders."""
        statement = self._statement(using)
        with connections[using].cursor() as cursor:
            cursor.execute(statement.sql, statement.bind(values))
            return cursor.fetchall()

    def first(self, *, using: str = "default", **values: Any) -> tuple[Any, ...] | None:
        """The first row, or None."""
        rows = self.rows(using=using, **values)
        return rows[0] if rows else None
