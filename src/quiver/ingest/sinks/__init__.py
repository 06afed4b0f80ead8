"""Sinks sending rows on to brokers and collectors: kafka, nats, otlp."""
