"""Receiver options checked before a run: ``quiver validate`` names the file, the line and the
option, and what to do."""

from __future__ import annotations

from pathlib import Path

from ..pipeline.test_cli import quiver


def validate(tmp_path: Path, source: str) -> tuple[int, str]:
    (tmp_path / "p.yaml").write_text(f"source:\n{source}sink: {{jsonl: {{path: out.jsonl}}}}\n")
    done = quiver("validate", "p.yaml", cwd=tmp_path)
    return done.returncode, done.stdout + done.stderr


def test_an_unknown_receiver_option_is_refused_with_its_line(tmp_path: Path) -> None:
    code, out = validate(tmp_path, "  mqtt:\n    topics: [a/#]\n    qos_level: 1\n")
    assert code != 0
    assert "p.yaml:4" in out and "qos_level" in out


def test_a_missing_avro_schema_file_is_named(tmp_path: Path) -> None:
    code, out = validate(
        tmp_path,
        "  kafka:\n    topics: [t]\n    group_id: g\n    format: avro\n"
        "    avro_schema: missing.avsc\n",
    )
    assert code != 0
    assert "avro_schema: cannot read the Avro schema" in out and "missing.avsc" in out


def test_a_missing_tls_file_is_named(tmp_path: Path) -> None:
    code, out = validate(tmp_path, "  nats:\n    subject: a.>\n    tls: {ca_file: certs/ca.pem}\n")
    assert code != 0
    assert "p.yaml:4:11 source (nats.tls.ca_file): file not found: " in out, out
    assert "certs/ca.pem" in out


def test_a_tls_file_that_is_not_pem_is_named_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "client.pem").write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n")
    code, out = validate(
        tmp_path, "  mqtt:\n    topics: [a/#]\n    tls:\n      cert_file: client.pem\n"
    )
    assert code != 0
    assert "p.yaml:5:7 source (mqtt.tls.cert_file): " in out, out
    assert "client.pem holds a PEM 'PRIVATE KEY' block, not a certificate" in out


def test_a_kafka_session_timeout_under_a_second_is_refused_with_its_line(tmp_path: Path) -> None:
    code, out = validate(
        tmp_path, "  kafka:\n    topics: [t]\n    group_id: g\n    session_timeout: 0.5\n"
    )
    assert code != 0
    assert "p.yaml:5" in out and "session_timeout" in out and "greater than or equal to 1" in out


def test_a_nats_fetch_wait_over_a_minute_is_refused_with_its_line(tmp_path: Path) -> None:
    code, out = validate(tmp_path, "  nats:\n    subject: a.>\n    fetch_wait: 90\n")
    assert code != 0
    assert "p.yaml:4" in out and "fetch_wait" in out and "less than or equal to 60" in out


def test_a_valid_receiver_pipeline_passes(tmp_path: Path) -> None:
    (tmp_path / "r.avsc").write_text(
        '{"type": "record", "name": "R", "fields": [{"name": "n", "type": "long"}]}'
    )
    code, out = validate(
        tmp_path,
        "  kafka:\n    topics: [t]\n    group_id: g\n    format: avro\n    avro_schema: r.avsc\n",
    )
    assert code == 0, out
