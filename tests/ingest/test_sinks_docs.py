"""docs/ingest-sinks.md shows pipelines `quiver validate` accepts: every YAML block, the sink
snippets completed with a source."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ..pipeline.test_cli import quiver

DOC = Path(__file__).resolve().parents[2] / "docs" / "ingest-sinks.md"


def blocks() -> list[str]:
    docs: list[str] = []
    for block in re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S):
        docs.extend(part for part in block.split("\n---\n") if part.strip())
    return docs


@pytest.mark.parametrize("text", blocks())
def test_every_example_of_the_page_validates(
    text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_PASSWORD", "x")
    monkeypatch.setenv("OTLP_TOKEN", "t")
    doc = yaml.safe_load(text)
    if "steps" not in doc and "source" not in doc:
        doc["source"] = {"jsonl": {"path": "in.jsonl"}}
    (tmp_path / "in.jsonl").write_text('{"a": 1}\n')
    (tmp_path / "ca.pem").write_text("")
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    done = quiver("validate", "p.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_page_shows_every_sink_it_names() -> None:
    text = DOC.read_text()
    for name in ("kafka", "nats", "otlp"):
        assert f"## `{name}`" in text
        assert f"  {name}:\n" in text
