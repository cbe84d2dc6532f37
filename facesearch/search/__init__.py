"""Search: probe → faces → candidates with scores and provenance; verify (1:1)."""
