"""FlowEngine's own example pipelines, run by ``quiver run`` with only their Windows paths
mapped (``--path-map``), against the outputs FlowEngine committed beside them.

The fixtures in tests/pipeline/fixtures/flowengine are FlowEngine's files as published (see
the README there); the 20,000- and 50,000-row inputs are rebuilt from ``customers.csv``
exactly as FlowEngine's were made (their SHA-256 is checked).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import re
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "flowengine"
QUIVER = str(Path(sys.executable).with_name("quiver"))
ROOT = r"C:\source\FlowEngine"
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
BOM = b"\xef\xbb\xbf"

#: SHA-256 of FlowEngine's customers-20k.csv and customers-50k.csv
SHA_20K = "e97cdf9ff6de49dd6cd88a611a8453bdba6d9f730f49cf51b9d725257690032a"
SHA_50K = "8ea13d7f96982a22e6ad9064c25411fb02a951a6f75e302c0362c498b9f7d26a"


@pytest.fixture
def flowengine(tmp_path: Path) -> Path:
    """A FlowEngine checkout: its pipeline files and examples/data; examples/output empty."""
    root = tmp_path / "FlowEngine"
    for path in FIXTURES.rglob("*.yaml"):
        target = root / path.relative_to(FIXTURES)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    data = root / "examples" / "data"
    data.mkdir(parents=True, exist_ok=True)
    customers = gzip.decompress((FIXTURES / "examples/data/customers.csv.gz").read_bytes())
    (data / "customers.csv").write_bytes(customers)
    header, *rows = customers.decode().splitlines(keepends=True)
    # customers-20k.csv lost the line break after its header; customers-50k.csv is five copies
    big20 = (header.rstrip("\n") + "".join(rows[:10_000] + rows[:10_000])).encode()
    big50 = (header + "".join(rows * 5)).encode()
    assert hashlib.sha256(big20).hexdigest() == SHA_20K
    assert hashlib.sha256(big50).hexdigest() == SHA_50K
    (data / "customers-20k.csv").write_bytes(big20)
    (data / "customers-50k.csv").write_bytes(big50)
    return root


def quiver(command: str, root: Path, file: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [QUIVER, command, str(root / file), "--path-map", f"{ROOT}={root}", *extra],
        capture_output=True,
        text=True,
        timeout=300,
    )


def expected(name: str) -> bytes:
    return gzip.decompress((FIXTURES / "examples" / "output" / f"{name}.gz").read_bytes())


def rows_of(data: bytes) -> list[list[str]]:
    assert data.startswith(BOM), "FlowEngine's UTF-8 output starts with a byte order mark"
    return list(csv.reader(data[len(BOM) :].decode("utf-8").splitlines()))


def test_simple_pipeline_writes_flowengine_output(flowengine: Path) -> None:
    run = quiver("run", flowengine, "examples/simple-pipeline.yaml", "--quiet")
    assert run.returncode == 0, run.stderr
    ours = (flowengine / "examples/output/simple-output.csv").read_bytes()
    theirs = expected("simple-output.csv")
    ours_rows, their_rows = rows_of(ours), rows_of(theirs)
    assert len(ours_rows) == len(their_rows) == 10_001
    # decimals keep the text they were read with: 56244.0 stays 56244.0, 202099.64 stays
    assert any(row[-1].endswith(".0") for row in their_rows[1:])
    assert ours == theirs


def test_complex_pipeline_writes_flowengine_output_but_its_run_time(flowengine: Path) -> None:
    run = quiver("run", flowengine, "examples/complex-pipeline.yaml", "--quiet")
    assert run.returncode == 0, run.stderr
    ours = rows_of((flowengine / "examples/output/processed-customers-simplified.csv").read_bytes())
    theirs = rows_of(expected("processed-customers-simplified.csv"))
    assert ours[0] == theirs[0]
    assert ours[0][-1] == "processed_date"
    assert len(ours) == len(theirs) == 10_001
    for mine, their in zip(ours[1:], theirs[1:], strict=True):
        assert mine[:-1] == their[:-1]
        assert ISO_UTC.match(mine[-1]), mine[-1]


def _js_number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def _performance_row(row: dict[str, str]) -> list[str]:
    """What performance-test-20k.yaml's script computes for one input row, in Python."""
    full = f"{row['first_name']} {row['last_name']}"
    age = int(row["age"])
    bands = [(18, "Minor"), (25, "Young Adult"), (35, "Adult"), (45, "Mid Adult")]
    bands += [(55, "Mature Adult"), (65, "Pre-Senior")]
    age_category = next((name for limit, name in bands if age < limit), "Senior")
    domain = row["email"].split("@")[1].lower()
    value = float(row["account_value"])
    tiers = [(500000, "Platinum", 100), (250000, "Diamond", 80), (100000, "Premium", 60)]
    tiers += [(50000, "Gold", 40), (25000, "Silver", 25), (10000, "Bronze", 15)]
    category, score = next(((n, s) for lim, n, s in tiers if value >= lim), ("Basic", 5))
    if age_category in ("Adult", "Mid Adult", "Mature Adult"):
        score += 30
    elif age_category in ("Young Adult", "Pre-Senior"):
        score += 20
    else:
        score += 10
    if domain in ("enterprise.com", "company.com", "corp.com"):
        score += 25
    elif domain in ("gmail.com", "yahoo.com", "outlook.com", "hotmail.com"):
        score += 15
    else:
        score += 5
    text = f"{full}{age}{domain}{_js_number(value)}{category}"
    digest = "".join(format(ord(c) * 17 + i * 3, "x") for i, c in enumerate(text))[:16].upper()
    return [
        row["customer_id"],
        full,
        row["first_name"],
        row["last_name"],
        str(age),
        age_category,
        row["email"],
        domain,
        _js_number(value),
        category,
        str(score),
        digest,
    ]


def test_performance_20k_skips_the_broken_header_line_as_flowengine_does(
    flowengine: Path,
) -> None:
    run = quiver("run", flowengine, "examples/performance-test-20k.yaml", "--quiet")
    assert run.returncode == 0, run.stderr
    ours = rows_of((flowengine / "examples/output/performance-test-20k.csv").read_bytes())
    # The file's first line is its header and its first customer, run together: FlowEngine
    # skips that line and reads the rest by position under the schema's names.
    with (flowengine / "examples/data/customers.csv").open(newline="") as f:
        customers = list(csv.DictReader(f))
    inputs = customers[1:] + customers
    assert len(ours) - 1 == len(inputs) == 19_999
    assert ours[0][-2:] == ["processed_date", "complexity_hash"]
    for mine, row in zip(ours[1:], inputs, strict=True):
        assert [*mine[:11], mine[12]] == _performance_row(row)
        assert ISO_UTC.match(mine[11])


def test_simple_scaling_test_without_connections_runs_its_plugins_in_order(
    flowengine: Path,
) -> None:
    run = quiver("run", flowengine, "examples/simple-scaling-test.yaml", "--quiet")
    assert run.returncode == 0, run.stderr
    assert "no connections: the plugins run in the order listed" in run.stderr
    assert "CustomerSource -> SimpleTransform -> ScalingOutput" in run.stderr
    assert "Pipeline.Plugins[2].Config.Overwrite" not in run.stderr  # keys: lower case here
    assert "pipeline.plugins[2].config.Overwrite" in run.stderr
    ours = rows_of((flowengine / "examples/output/simple-scaling-50k.csv").read_bytes())
    with (flowengine / "examples/data/customers.csv").open(newline="") as f:
        customers = list(csv.reader(f))
    header = customers[0]
    assert ours[0] == [*header, "full_name", "timestamp"]
    assert len(ours) == 50_001
    value_column = header.index("account_value")
    for i, mine in enumerate(ours[1:]):
        source = customers[1 + i % 10_000]
        assert mine[:value_column] == source[:value_column]
        assert Decimal(mine[value_column]) == Decimal(source[value_column])
        assert mine[-2] == f"{source[1]} {source[2]}"
        assert ISO_UTC.match(mine[-1])


def test_hang_debug_file_runs_with_inferred_types(flowengine: Path) -> None:
    run = quiver("run", flowengine, "test-hang-debug.yaml", "--quiet")
    assert run.returncode == 0, run.stderr
    assert "config.InferenceSampleRows (Quiver infers the types" in run.stderr
    assert "plugins[0].assembly (.NET assembly" in run.stderr
    ours = rows_of((flowengine / "test-output.csv").read_bytes())
    with (flowengine / "examples/data/customers.csv").open(newline="") as f:
        customers = list(csv.reader(f))
    assert len(ours) == len(customers) == 10_001
    for mine, source in zip(ours, customers, strict=True):
        assert mine[:5] == source[:5]
        if mine is not ours[0]:
            assert Decimal(mine[5]) == Decimal(source[5])


@pytest.mark.parametrize(
    ("file", "source"),
    [
        ("debug-variables.yaml", "test-plugin"),
        ("test-nested-variables.yaml", "test-source"),
        ("yaml-test.yaml", "TestPlugin"),
    ],
)
def test_debug_files_with_a_lone_source_say_so_in_the_first_pass(
    flowengine: Path, file: str, source: str
) -> None:
    run = quiver("validate", flowengine, file)
    assert run.returncode == 2, run.stderr
    assert f"source '{source}' feeds no plugin" in run.stderr
    assert "No downstream plugin found" in run.stderr
    assert "Traceback" not in run.stderr


def test_an_unmapped_windows_path_is_refused_with_the_option_that_maps_it(
    flowengine: Path,
) -> None:
    run = subprocess.run(
        [QUIVER, "validate", str(flowengine / "examples/simple-pipeline.yaml")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert (
        r"'C:\\source\\FlowEngine\\examples\\data\\customers.csv' is a Windows path" in run.stderr
    )
    assert r"--path-map 'C:\source\FlowEngine\examples\data=/local/folder'" in run.stderr
    assert "Plugins[0].Config.FilePath" in run.stderr and "Plugins[1].Config.FilePath" in run.stderr
    assert not list(flowengine.glob("C:*"))


def test_a_path_map_without_a_local_folder_is_refused(flowengine: Path) -> None:
    run = subprocess.run(
        [QUIVER, "run", str(flowengine / "examples/simple-pipeline.yaml"), "--path-map", ROOT],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 2
    assert "is not WINDOWS_PREFIX=LOCAL_FOLDER" in run.stderr
