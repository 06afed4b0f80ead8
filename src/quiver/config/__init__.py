"""config: see docs/."""
