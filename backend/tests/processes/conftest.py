"""Fixtures of the process tests (the entrypoint's and the migrations')."""

from __future__ import annotations

import uuid

import pytest

from tests.support.env import database_env
from tests.support.postgres import admin_connection


@pytest.fixture
def empty_database(production_env):
    """A database of the test's own, without tables; yields its name and the
    variables that reach it (through the pooler, when the run has one)."""
    name = f"migtest_{uuid.uuid4().hex[:8]}"
    admin = admin_connection()
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    yield name, database_env(name)
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()
