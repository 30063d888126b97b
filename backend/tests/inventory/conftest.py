"""Inventory fixtures live in tests/conftest.py (shared with docs and fault tests)."""
