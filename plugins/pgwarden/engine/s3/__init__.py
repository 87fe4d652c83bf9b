"""Reaching S3: settings (``settings``), clients and transfers (``client``), error taxonomy (``errors``).

Apart from the backup repository so that anything storing to S3 (the repository, archival) shares
one way to build a client and to explain a failure.
"""
