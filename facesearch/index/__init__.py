"""Vector indexes. The database is the source of truth: an index can always be rebuilt from it."""
