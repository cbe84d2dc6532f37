"""Gallery: collections (their rules, sharing and deletion) and faces (provenance and crops), for
the API and the CLI alike."""
