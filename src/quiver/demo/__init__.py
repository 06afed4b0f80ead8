"""demo: see docs/."""
