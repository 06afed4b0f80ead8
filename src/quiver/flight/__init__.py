"""flight: see docs/."""
