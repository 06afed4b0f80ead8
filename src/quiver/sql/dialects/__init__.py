"""sql.dialects: see docs/."""
