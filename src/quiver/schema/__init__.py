"""schema: see docs/."""
