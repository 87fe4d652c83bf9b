"""Migrations against a managed database: lint, history, applying plain migrations."""
