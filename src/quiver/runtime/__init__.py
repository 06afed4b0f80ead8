"""runtime: see docs/."""
