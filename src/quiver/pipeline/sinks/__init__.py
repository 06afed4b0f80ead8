"""pipeline.sinks: see docs/."""
