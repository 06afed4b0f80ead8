"""The SDK's OTLP/HTTP exporters (traces, metrics, logs) against the receiver served over TLS.

The exporters hand ``certificate_file`` to a ``requests.Session`` as ``session.verify``, which
requests overrides with ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` when either is set (many
machines and images set them to the system bundle). The tests set it the way such machines do
and check each remedy docs/ingest.md gives."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.ingest.certs import make_pki
from tests.ingest.conftest import Receiver
from tests.ingest.sdk_clients import send_logs, send_metrics, send_traces
from tests.ingest.test_otlp_http import rows_of


def _system_bundle(tmp_path: Path) -> Path:
    paths = ssl.get_default_verify_paths()
    if paths.cafile and Path(paths.cafile).is_file():
        return Path(paths.cafile)
    empty = tmp_path / "system-bundle.pem"  # a bundle without the test CA is all that matters
    empty.write_text("")
    return empty


@pytest.mark.parametrize(
    ("remedy", "host"),
    [("unset", "127.0.0.1"), ("bundle", "127.0.0.1"), ("session", "localhost")],
)
def test_sdk_http_exporters_over_tls(
    receiver: Callable[..., Receiver],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    remedy: str,
    host: str,
) -> None:
    pki = make_pki(tmp_path)
    system = _system_bundle(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(system))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(system))
    kw: dict[str, Any] = {}
    if remedy == "unset":  # certificate_file applies once the variables are gone
        monkeypatch.delenv("REQUESTS_CA_BUNDLE")
        monkeypatch.delenv("CURL_CA_BUNDLE")
    elif remedy == "bundle":  # the bundle the variables name trusts the receiver's CA
        bundle = tmp_path / "bundle.pem"
        bundle.write_text(system.read_text() + "\n" + pki.ca.read_text())
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
        monkeypatch.setenv("CURL_CA_BUNDLE", str(bundle))
    else:  # a session that does not read the environment keeps certificate_file
        kw["session"] = requests.Session()
        kw["session"].trust_env = False
    tls = {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key)}
    rec = receiver(http={"tls": tls})
    kw.update(base=f"https://{host}:{rec.http_port}", certificate_file=str(pki.ca))
    sent = send_traces("http", rec.http_port, **kw)
    send_metrics("http", rec.http_port, **kw)
    send_logs("http", rec.http_port, **kw)
    table = rec.stop()
    assert sorted(r["span_name"] for r in rows_of(table, "traces")) == sorted(s.name for s in sent)
    assert {r["metric_name"] for r in rows_of(table, "metrics")} >= {
        "requests",
        "latency",
        "temperature",
    }
    assert len(rows_of(table, "logs")) == 2
