"""pipeline.sources: see docs/."""
