"""The project's PostgreSQL backend (ENGINE "apps.core.db"): see base.py."""
