"""A test-only app whose one migration outlasts a short statement_timeout."""
