"""One module per resource; each exposes `router` with full /api/v1 paths."""
