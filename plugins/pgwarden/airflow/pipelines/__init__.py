"""One module per concern: each turns a database's config into that concern's DAG(s)."""
