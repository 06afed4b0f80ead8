"""observers: see docs/."""
