"""pipeline: see docs/."""
