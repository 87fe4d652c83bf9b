"""Migrations against a managed database: lint, history, plain apply/rollback, online DDL, expand/contract."""
