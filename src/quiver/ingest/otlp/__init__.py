"""The ``otlp`` source: OTLP/gRPC (port 4317) and OTLP/HTTP (port 4318) receivers."""
