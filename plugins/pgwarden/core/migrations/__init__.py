"""Versioned migrations, pure: the files of a migrations folder, their checksums, statements and locks."""
