"""OTAP, the OpenTelemetry Arrow Protocol: its gRPC streams served beside OTLP/gRPC (the
``arrow`` option of the ``otlp`` source), decoded straight into the telemetry layout of
:mod:`quiver.ingest.arrow_layout`, and an encoder for clients (:mod:`.encode`)."""
