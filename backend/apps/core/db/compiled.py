"""Statements compiled to SQL once per process, then run with each call's values.

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

Writes compile the same way: an UPDATE from a queryset and its changes
(`update_query`), run for its row count; and a model's INSERT (`CompiledInsert`),
which saves a new instance with the values Django would write.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import connections, router, transaction
from django.db.models import Model, QuerySet, signals
from django.db.models.sql import InsertQuery, Query, UpdateQuery


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


def update_query(queryset: QuerySet[Any], **changes: Any) -> UpdateQuery:
    """The UPDATE `queryset.update(**changes)` would run, built but not run."""
    query = queryset.query.chain(UpdateQuery)
    query.add_update_values(changes)
    query.annotations = {}
    return query


def _compiled_once[K, V](
    cache: dict[K, V], key: K, lock: threading.Lock, compile_: Callable[[], V]
) -> V:
    """`cache[key]`, compiled on first use; threads racing for it compile it once."""
    found = cache.get(key)
    if found is None:
        with lock:
            found = cache.get(key)
            if found is None:
                found = cache[key] = compile_()
    return found


class CompiledQuery:
    """A statement compiled once per connection, run with new values.

    `build` receives the placeholders by name and returns a read queryset (a
    `values_list`, so rows come back as tuples: `rows`, `first`) or an UPDATE
    from `update_query` (`rowcount`); `placeholders` maps each name to a
    placeholder value of the right type for its column.
    """

    def __init__(
        self, build: Callable[..., QuerySet[Any] | Query], **placeholders: Any
    ) -> None:
        self._build = build
        self._placeholders = placeholders
        self._statements: dict[tuple[str, str], _Statement] = {}
        self._lock = threading.Lock()

    def _statement(self, alias: str) -> _Statement:
        return _compiled_once(
            self._statements,
            (alias, connections[alias].vendor),
            self._lock,
            lambda: self._compile(alias),
        )

    def _compile(self, alias: str) -> _Statement:
        built = self._build(**self._placeholders)
        query = built.query if isinstance(built, QuerySet) else built
        if isinstance(query, UpdateQuery) and query.related_updates:
            # Django runs those as statements of their own: not one statement.
            raise RuntimeError("an UPDATE of related models cannot be compiled")
        sql, params = query.get_compiler(alias).as_sql()
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

    def rowcount(self, *, using: str = "default", **values: Any) -> int:
        """Run a write with `values`; return the number of rows it changed.

        As for Django's own writes, a database error marks the enclosing atomic
        block for rollback, so a caller that catches it cannot commit half a change.
        """
        statement = self._statement(using)
        with (
            transaction.mark_for_rollback_on_error(using),
            connections[using].cursor() as cursor,
        ):
            cursor.execute(statement.sql, statement.bind(values))
            return cursor.rowcount


@dataclass(frozen=True)
class _Insert:
    sql: str
    fields: tuple[Any, ...]
    returning: tuple[Any, ...]


class CompiledInsert:
    """A model's single-row INSERT, compiled once per connection.

    `save(instance)` writes a new instance as `instance.save(force_insert=True)`
    would: every local concrete field's value through its own `pre_save` (so
    `auto_now_add` and `auto_now` are set) and `get_db_prep_save`, the database's
    generated columns (an auto id) read back into the instance. What it does not do
    is send `pre_save` and `post_save`: while a receiver is connected for the model,
    it saves through `Model.save` instead, so no receiver is ever skipped.
    Multi-table inheritance and expression values are refused (one statement,
    plain values).
    """

    def __init__(self, model: type[Model]) -> None:
        if model._meta.parents:
            raise TypeError(f"{model.__name__} inherits a concrete model")
        self._model = model
        self._inserts: dict[tuple[str, str, bool], _Insert] = {}
        self._lock = threading.Lock()

    def _insert(self, alias: str, instance: Model) -> _Insert:
        # An auto primary key is left out of the INSERT unless the instance has one.
        return _compiled_once(
            self._inserts,
            (alias, connections[alias].vendor, instance.pk is None),
            self._lock,
            lambda: self._compile(alias, instance),
        )

    def _compile(self, alias: str, instance: Model) -> _Insert:
        meta = self._model._meta
        # As Model._save_table: a primary key the database generates is not sent.
        fields = tuple(
            field
            for field in meta.local_concrete_fields
            if not field.generated
            and not (field is meta.auto_field and instance.pk is None)
        )
        returning = tuple(meta.db_returning_fields)
        connection = connections[alias]
        for field in returning:
            column = field.get_col(meta.db_table)
            if connection.ops.get_db_converters(column) + column.get_db_converters(
                connection
            ):
                raise TypeError(f"{field.name} is converted on read: not supported")
        insert_query = InsertQuery(self._model)
        insert_query.insert_values(fields, [instance])
        compiler = insert_query.get_compiler(alias)
        compiler.returning_fields = list(returning)
        ((sql, params),) = compiler.as_sql()
        if len(params) != len(fields) or sql.count("%s") != len(fields):
            raise TypeError("only plain values compile: one placeholder per field")
        return _Insert(sql=sql, fields=fields, returning=returning)

    def save(self, instance: Model, *, using: str | None = None) -> Model:
        """INSERT `instance` (a new one) and return it, saved; on the database the
        router chooses for writing it unless `using` names one (as Model.save)."""
        model = self._model
        using = using or router.db_for_write(model, instance=instance)
        if signals.pre_save.has_listeners(model) or signals.post_save.has_listeners(
            model
        ):
            instance.save(force_insert=True, using=using)
            return instance
        connection = connections[using]
        insert = self._insert(using, instance)
        params = []
        for field in insert.fields:
            value = field.pre_save(instance, add=True)
            if hasattr(value, "resolve_expression"):
                raise TypeError(f"{field.name} holds an expression, not a value")
            params.append(field.get_db_prep_save(value, connection=connection))
        with (
            transaction.mark_for_rollback_on_error(using),
            connection.cursor() as cursor,
        ):
            cursor.execute(insert.sql, params)
            if insert.returning:
                for field, value in zip(
                    insert.returning, cursor.fetchone(), strict=True
                ):
                    setattr(instance, field.attname, value)
        instance._state.adding = False
        instance._state.db = using
        return instance
