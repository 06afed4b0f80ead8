"""auth: see docs/."""
