"""Telemetry ingestion: network receivers that run as pipeline sources.

- :mod:`quiver.ingest.arrow_layout`: the one Arrow layout of spans, metric data points and
  log records that every receiver produces;
- :mod:`quiver.ingest.spool`: the persistent on-disk queue between a receiver and the sinks;
- :mod:`quiver.ingest.intake`: what a receiver hands its accepted data to (spool, queue,
  backpressure, stop);
- :mod:`quiver.ingest.access`: API keys, bearer tokens and TLS of a listener;
- :mod:`quiver.ingest.otlp`: the OTLP/gRPC and OTLP/HTTP receivers (the ``otlp`` source);
- :mod:`quiver.ingest.otap`: OTAP (OpenTelemetry Arrow) streams on the OTLP/gRPC port (the
  ``arrow`` option of the ``otlp`` source);
- :mod:`quiver.ingest.commands`: ``quiver ingest dlq``, the dead-letter queue of a pipeline
  (kept by :mod:`quiver.pipeline.dead_letters`).

Nothing is imported here: a pipeline imports a receiver only when it uses it.
"""
