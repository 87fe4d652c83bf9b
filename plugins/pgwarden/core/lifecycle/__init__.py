"""Data lifecycle: which rows expire (TTL purge, soft-delete hard delete, archival), as pure logic."""
