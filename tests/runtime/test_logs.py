"""One log format for the server and the pipelines."""

from __future__ import annotations

import io
import logging

import orjson

from quiver.pipeline.runlog import RunLog
from quiver.runtime.logs import configure_logging, request_id, reset_logging


def test_pipeline_and_server_json_lines_share_their_leading_fields() -> None:
    pipeline_out = io.StringIO()
    RunLog("run-1", "json", stream=pipeline_out, pipeline="p").event("run_started", "started")
    server_out = io.StringIO()
    configure_logging("json", stream=server_out)
    try:
        token = request_id.set("req-1")
        logging.getLogger("quiver.graphql.http").info("answered %d", 200)
        request_id.reset(token)
    finally:
        reset_logging()
    run = orjson.loads(pipeline_out.getvalue())
    served = orjson.loads(server_out.getvalue())
    assert list(run)[:3] == list(served)[:3] == ["ts", "level", "message"]
    assert run["run_id"] == "run-1" and run["message"] == "started"
    assert served["request_id"] == "req-1" and served["message"] == "answered 200"
    assert served["ts"].endswith("+00:00") and run["ts"].endswith("+00:00")


def test_text_lines_show_the_request_id() -> None:
    out = io.StringIO()
    configure_logging("text", stream=out)
    try:
        token = request_id.set("req-2")
        logging.getLogger("quiver.x").warning("slow")
        request_id.reset(token)
        logging.getLogger("quiver.x").info("no request")
    finally:
        reset_logging()
    first, second = out.getvalue().splitlines()
    assert first.endswith("warning slow request_id=req-2")
    assert second.endswith("info    no request")


def test_other_libraries_warnings_are_written_in_the_server_format() -> None:
    out = io.StringIO()
    configure_logging("json", stream=out)
    try:
        token = request_id.set("req-3")
        logging.getLogger("asyncpg.pool").warning("Failed to restore the pool connection floor")
        request_id.reset(token)
        logging.getLogger("httpx").info("HTTP Request: POST https://example.com")
    finally:
        reset_logging()
    (line,) = out.getvalue().splitlines()
    written = orjson.loads(line)
    assert written["level"] == "warning" and written["logger"] == "asyncpg.pool"
    assert written["message"] == "Failed to restore the pool connection floor"
    assert written["request_id"] == "req-3"
