"""Every built-in pipeline component, as import strings. Nothing is imported here.

The registry (:mod:`quiver.pipeline.registry`) imports a module only when a pipeline uses one
of its components. Each entry is ``(kind, name, "module:Class", preset)``: ``preset`` holds
config defaults applied before the user's options (``tsv`` is the ``csv`` component with a tab
delimiter). If ``Class`` is not found in the module, the registry falls back to the class in
that module marked with the same kind and name.
"""

from __future__ import annotations

from typing import Any

from quiver.pipeline.component import ComponentKind

__all__ = ["BUILTINS", "Builtin"]

Builtin = tuple[ComponentKind, str, str, dict[str, Any]]

_S = "quiver.pipeline.sources"
_P = "quiver.pipeline.processors"
_K = "quiver.pipeline.sinks"
_I = "quiver.ingest"

BUILTINS: list[Builtin] = [
    # sources
    ("source", "csv", f"{_S}.csv:CsvSource", {}),
    ("source", "tsv", f"{_S}.csv:CsvSource", {"delimiter": "\t"}),
    ("source", "psv", f"{_S}.csv:CsvSource", {"delimiter": "|"}),
    ("source", "jsonl", f"{_S}.jsonl:JsonlSource", {}),
    ("source", "parquet", f"{_S}.parquet:ParquetSource", {}),
    ("source", "arrow", f"{_S}.arrow_ipc:ArrowIpcSource", {}),
    ("source", "database", f"{_S}.database:DatabaseSource", {}),
    ("source", "rest", f"{_S}.rest:RestSource", {}),
    ("source", "rabbitmq", f"{_S}.rabbitmq:RabbitMqSource", {}),
    ("source", "s3", f"{_S}.s3:S3Source", {}),
    # receivers
    ("source", "mqtt", f"{_I}.mqtt:MqttReceiver", {}),
    ("source", "amqp", f"{_I}.amqp:AmqpReceiver", {}),
    ("source", "nats", f"{_I}.nats:NatsReceiver", {}),
    ("source", "kafka", f"{_I}.kafka:KafkaReceiver", {}),
    ("source", "websocket", f"{_I}.websocket:WebSocketReceiver", {}),
    # telemetry receivers
    ("source", "otlp", f"{_I}.otlp.source:OtlpSource", {}),
    # processors
    ("processor", "validate", f"{_P}.validate:ValidateProcessor", {}),
    ("processor", "select", f"{_P}.select:SelectProcessor", {}),
    ("processor", "rename", f"{_P}.rename:RenameProcessor", {}),
    ("processor", "cast", f"{_P}.cast:CastProcessor", {}),
    ("processor", "filter", f"{_P}.filter:FilterProcessor", {}),
    ("processor", "transform", f"{_P}.transform:TransformProcessor", {}),
    ("processor", "redact", f"{_P}.redact:RedactProcessor", {}),
    ("processor", "enrich", f"{_P}.enrich:EnrichProcessor", {}),
    ("processor", "aggregate", f"{_P}.aggregate:AggregateProcessor", {}),
    ("processor", "batch", f"{_P}.batch:BatchProcessor", {}),
    ("processor", "memory_limiter", f"{_P}.memory_limiter:MemoryLimiterProcessor", {}),
    ("processor", "derive", f"{_P}.derive:DeriveProcessor", {}),
    ("processor", "dedupe", f"{_P}.dedupe:DedupeProcessor", {}),
    ("processor", "lookup", f"{_P}.lookup:LookupProcessor", {}),
    ("processor", "sql", f"{_P}.sql:SqlProcessor", {}),
    ("processor", "python", f"{_P}.python:PythonProcessor", {}),
    ("processor", "js", f"{_P}.js:JsProcessor", {}),
    # sinks
    ("sink", "csv", f"{_K}.csv:CsvSink", {}),
    ("sink", "tsv", f"{_K}.csv:CsvSink", {"delimiter": "\t"}),
    ("sink", "psv", f"{_K}.csv:CsvSink", {"delimiter": "|"}),
    ("sink", "jsonl", f"{_K}.jsonl:JsonlSink", {}),
    ("sink", "parquet", f"{_K}.parquet:ParquetSink", {}),
    ("sink", "arrow", f"{_K}.arrow_ipc:ArrowIpcSink", {}),
    ("sink", "database", f"{_K}.database:DatabaseSink", {}),
    ("sink", "rest", f"{_K}.rest:RestSink", {}),
    ("sink", "rabbitmq", f"{_K}.rabbitmq:RabbitMqSink", {}),
    ("sink", "s3", f"{_K}.s3:S3Sink", {}),
    ("sink", "kafka", f"{_I}.sinks.kafka:KafkaSink", {}),
    ("sink", "nats", f"{_I}.sinks.nats:NatsSink", {}),
    ("sink", "otlp", f"{_I}.sinks.otlp:OtlpSink", {}),
]
