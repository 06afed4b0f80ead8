"""pipeline.processors: see docs/."""
