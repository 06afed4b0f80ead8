"""ingest: see docs/."""
