"""sql: see docs/."""
