"""Migrations, pure: the files of a migrations folder and their checksums, statements and locks, and the
expand/contract spec and planner (operations -> SQL per phase)."""
