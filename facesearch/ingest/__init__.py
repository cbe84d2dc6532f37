"""Ingest: sources, resumable jobs, dedupe by content hash, provenance on every face."""
