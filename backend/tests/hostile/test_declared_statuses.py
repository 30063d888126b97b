"""Every status an operation can answer is declared in the OpenAPI schema.

The statuses are derived from the code, not listed here: the domain errors each
view raises, itself or through the services and selectors it reaches (their
`status_code`), the framework's own answers (validation, authentication,
permission, throttling) and the exception handler's mapping of an unreachable
database. A new `raise` of an undeclared error in any of them fails this test.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
import types
from typing import Any

from django.conf import settings
from django.urls import resolve
from drf_spectacular.generators import SchemaGenerator
from rest_framework.exceptions import APIException

from apps.core.drf import exceptions as core_exceptions
from apps.inventory import api, selectors, services

# Modules whose functions a view reaches; their raises are followed.
FOLLOWED = (api, services, selectors)
PATH_VALUES = {"{sku}": "WIDGET-1", "{reservation_id}": api.EXAMPLE_RESERVATION_ID}


def _resolve(node: ast.AST, scope: dict[str, Any]) -> Any:
    """The object a Name or module attribute (`services.x`) refers to, or None."""
    if isinstance(node, ast.Name):
        return scope.get(node.id)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        owner = scope.get(node.value.id)
        if isinstance(owner, types.ModuleType):
            return getattr(owner, node.attr, None)
    return None


def _raised_statuses(function: Any, seen: set[Any]) -> set[int]:
    """Statuses of the APIExceptions `function` raises, directly or through any
    function of FOLLOWED it refers to (called, or passed on as with partial)."""
    if function in seen:
        return set()
    seen.add(function)
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    scope = function.__globals__
    statuses: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            raised = _resolve(target, scope)
            if isinstance(raised, type) and issubclass(raised, APIException):
                statuses.add(raised.status_code)
        referred = _resolve(node, scope) if isinstance(node, ast.expr) else None
        if inspect.isfunction(referred) and inspect.getmodule(referred) in FOLLOWED:
            statuses |= _raised_statuses(referred, seen)
    return statuses


def _handler_statuses() -> set[int]:
    """What the exception handler answers for any view whatever it raises: an
    unreachable database (OperationalError) is a 503, read from its source."""
    source = inspect.getsource(core_exceptions.api_exception_handler)
    assert "status=503" in source, "the handler no longer maps the database's errors"
    return {503}


def _framework_statuses(view_class: type) -> set[int]:
    statuses = {400}  # malformed JSON or parameters: DRF's ParseError/ValidationError
    permissions = view_class.permission_classes or settings.REST_FRAMEWORK.get(
        "DEFAULT_PERMISSION_CLASSES", []
    )
    if permissions:
        statuses |= {401, 403}
    if view_class.throttle_classes:
        statuses.add(429)
    return statuses


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return [
        (path, method, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if path.startswith("/api/v1/")
    ]


def test_every_status_an_operation_can_answer_is_declared() -> None:
    undeclared = {}
    operations = _operations()
    assert len(operations) == 8
    for path, method, operation in operations:
        concrete = path
        for placeholder, value in PATH_VALUES.items():
            concrete = concrete.replace(placeholder, value)
        view_class = resolve(concrete).func.view_class
        handler = getattr(view_class, method)
        possible = (
            _framework_statuses(view_class)
            | _handler_statuses()
            | _raised_statuses(handler, set())
        )
        declared = {int(status) for status in operation["responses"]}
        if missing := possible - declared:
            undeclared[f"{method.upper()} {path}"] = sorted(missing)
    assert undeclared == {}


def test_the_derivation_finds_the_domain_errors() -> None:
    """The walk really follows views into the services: reservation create reaches
    404 (unknown SKU), 409 (stock, limits) and 422 (a reused key) there, and its
    own 400 (a malformed key)."""
    found = _raised_statuses(api.ReservationCreate.post, set())
    assert found == {400, 404, 409, 422}
    assert _raised_statuses(api.ReservationConfirm.post, set()) == {403, 404, 409}


def test_reused_key_stays_declared_without_an_example() -> None:
    """422 stays in the contract, and the key carries no literal example that every
    client (and generator) would copy."""
    (operation,) = [
        op
        for path, method, op in _operations()
        if path == "/api/v1/reservations/" and method == "post"
    ]
    assert "422" in operation["responses"]
    (header,) = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
    assert "example" not in header, header
    assert "examples" not in header, header
    assert "unique per intended reservation" in header["description"]


def test_the_schemathesis_hook_knows_the_key_pattern() -> None:
    from tests.hostile import schemathesis_hooks

    assert schemathesis_hooks.IDEMPOTENCY_KEY.pattern == api.IDEMPOTENCY_KEY.pattern
