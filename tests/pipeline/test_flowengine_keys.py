"""Keys FlowEngine's plugins and docs use, beyond the core ones: each does what it does in
FlowEngine, or is accepted with a warning saying it has no effect here; Windows paths are
mapped or refused; UTF-8 has FlowEngine's byte order mark."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from quiver.pipeline.config import load_pipeline
from quiver.runtime.errors import ConfigError

QUIVER = str(Path(sys.executable).with_name("quiver"))
BOM = b"\xef\xbb\xbf"

INPUT = "id,name,status,amount\n1,ada,active,10.50\n2,bob,closed,3\n3,cy,active,7.25\n"


def pipeline(tmp_path: Path, sink: str = "", source: str = "", extra: str = "") -> Path:
    (tmp_path / "in.csv").write_text(INPUT)
    text = textwrap.dedent(
        """
        pipeline:
          name: keys
          plugins:
            - name: Source
              type: DelimitedSource
              config:
                FilePath: in.csv
                HasHeaders: true
        {source}
            - name: Sink
              type: DelimitedSink
              config:
                FilePath: out.csv
        {sink}
          connections:
            - from: Source
              to: Sink
        {extra}
        """
    ).format(
        source=textwrap.indent(textwrap.dedent(source), " " * 8),
        sink=textwrap.indent(textwrap.dedent(sink), " " * 8),
        extra=textwrap.indent(textwrap.dedent(extra), " " * 6),
    )
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


def run(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [QUIVER, "run", str(path), "--quiet", *args], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result


def output(tmp_path: Path) -> bytes:
    return (tmp_path / "out.csv").read_bytes()


def test_utf8_output_starts_with_a_byte_order_mark_as_flowengine_writes_it(tmp_path: Path) -> None:
    run(pipeline(tmp_path))
    data = output(tmp_path)
    assert data.startswith(BOM)
    assert data[len(BOM) :].decode().splitlines()[0] == "id,name,status,amount"


def test_ascii_output_has_no_byte_order_mark(tmp_path: Path) -> None:
    run(pipeline(tmp_path, sink="Encoding: ASCII"))
    assert output(tmp_path).startswith(b"id,name")


def test_an_input_with_a_byte_order_mark_reads_its_first_column_name(tmp_path: Path) -> None:
    path = pipeline(tmp_path, source="Encoding: UTF-8")
    (tmp_path / "in.csv").write_bytes(BOM + INPUT.encode())
    run(path)
    assert output(tmp_path)[len(BOM) :].decode().splitlines()[0] == "id,name,status,amount"


@pytest.mark.parametrize(("ending", "terminator"), [("CRLF", b"\r\n"), ("LF", b"\n")])
def test_line_ending_sets_the_line_terminator(
    tmp_path: Path, ending: str, terminator: bytes
) -> None:
    run(pipeline(tmp_path, sink=f"LineEnding: {ending}"))
    assert output(tmp_path)[len(BOM) :] == INPUT.encode().replace(b"\n", terminator)


def test_an_unknown_line_ending_is_an_error_naming_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_pipeline(pipeline(tmp_path, sink="LineEnding: Unix"))
    assert "unknown LineEnding 'Unix'" in str(info.value)
    assert "System, CRLF, LF or CR" in str(info.value)


def test_overwrite_is_accepted_with_a_warning_that_flowengine_ignores_it(tmp_path: Path) -> None:
    (tmp_path / "out.csv").write_text("old\n")
    result = run(pipeline(tmp_path, sink="Overwrite: false"))
    assert "config.Overwrite (FlowEngine's DelimitedSink does not read it" in result.stderr
    assert output(tmp_path).startswith(BOM + b"id,")


def test_inference_sample_rows_is_accepted_with_a_warning(tmp_path: Path) -> None:
    spec = load_pipeline(pipeline(tmp_path, source="InferSchema: true\nInferenceSampleRows: 50"))
    assert any("InferenceSampleRows (Quiver infers the types" in w for w in spec.warnings)


def test_column_mappings_write_the_mapped_columns_in_order_under_their_names(
    tmp_path: Path,
) -> None:
    sink = """
    ColumnMappings:
      - {SourceColumn: amount, OutputColumn: total, Format: "F2"}
      - {SourceColumn: id, OutputColumn: id}
    """
    result = run(pipeline(tmp_path, sink=sink))
    assert "Format (.NET format strings are not applied" in result.stderr
    assert output(tmp_path)[len(BOM) :].decode().splitlines() == [
        "total,id",
        "10.50,1",
        "3,2",
        "7.25,3",
    ]


def test_input_schema_is_read_and_ignored_with_a_warning(tmp_path: Path) -> None:
    sink = """
    InputSchema:
      Columns:
        - {Name: id, Type: Integer, Index: 0}
    """
    spec = load_pipeline(pipeline(tmp_path, sink=sink))
    assert any(
        "config.InputSchema (the sink writes the columns it receives" in w for w in spec.warnings
    )


def test_a_connection_filter_passes_only_the_rows_whose_field_has_the_value(
    tmp_path: Path,
) -> None:
    path = pipeline(tmp_path)
    text = path.read_text().replace(
        "      to: Sink\n", "      to: Sink\n      filter: {field: status, value: active}\n"
    )
    path.write_text(text)
    run(path)
    assert output(tmp_path)[len(BOM) :].decode().splitlines() == [
        "id,name,status,amount",
        "1,ada,active,10.50",
        "3,cy,active,7.25",
    ]


def test_infer_from_script_takes_the_fields_the_script_sets(tmp_path: Path) -> None:
    source = ""
    path = pipeline(tmp_path, source=source)
    text = path.read_text().replace(
        "    - name: Sink\n",
        textwrap.indent(
            textwrap.dedent(
                """\
                - name: Script
                  type: JavaScriptTransform
                  config:
                    OutputSchema: {InferFromScript: true}
                    Script: |
                      function process(context) {
                        var name = context.input.getValue('name');
                        context.output.setField('shout', name.toUpperCase());
                        return true;
                      }
                """
            ),
            "    ",
        )
        + "    - name: Sink\n",
    )
    text = text.replace(
        "from: Source\n      to: Sink",
        "from: Source\n      to: Script\n    - from: Script\n      to: Sink",
    )
    path.write_text(text)
    run(path)
    lines = output(tmp_path)[len(BOM) :].decode().splitlines()
    assert lines[0] == "id,name,status,amount,shout"
    assert lines[1] == "1,ada,active,10.50,ADA"


def test_a_key_beyond_a_delimited_plugins_schema_is_ignored_with_a_warning(tmp_path: Path) -> None:
    spec = load_pipeline(pipeline(tmp_path, source="HasHeader5: true", sink="Colour: blue"))
    warnings = "\n".join(spec.warnings)
    assert "config.HasHeader5 (not a setting of the config of DelimitedSource" in warnings
    assert "did you mean 'HasHeaders'?" in warnings
    assert "Colour (not a setting of the config of DelimitedSink 'Sink'" in warnings


def test_a_windows_path_in_a_native_pipeline_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "native.yaml"
    path.write_text(
        "steps:\n"
        "  src: {csv: {path: 'C:\\data\\in.csv'}}\n"
        "  out: {csv: {path: out.csv}}\n"
        "connections: [{from: src, to: out}]\n"
    )
    with pytest.raises(ConfigError) as info:
        load_pipeline(path)
    assert r"'C:\\data\\in.csv' is a Windows path" in str(info.value)
    assert not list(tmp_path.glob("C:*"))


def test_the_longest_mapped_prefix_wins_whatever_its_case_and_slashes(tmp_path: Path) -> None:
    (tmp_path / "deep").mkdir()
    (tmp_path / "deep" / "in.csv").write_text(INPUT)
    path = pipeline(tmp_path)
    path.write_text(
        path.read_text()
        .replace("FilePath: in.csv", r"FilePath: 'c:/Data/Deep\in.csv'")
        .replace("FilePath: out.csv", r"FilePath: 'C:\data\out.csv'")
    )
    run(
        path,
        "--path-map",
        rf"C:\data={tmp_path}",
        "--path-map",
        rf"C:\Data\deep={tmp_path / 'deep'}",
    )
    assert output(tmp_path)[len(BOM) :] == INPUT.encode()
