"""Pipeline throughput: ``quiver run`` end to end, beside baselines measured in the same run.

Run by hand (not a test):

    .venv/bin/python benchmarks/pipeline_bench.py [--rows 1000000] [--only js,passthrough]
        [--js-workers N] [--js-isolation thread|process] [--cache-dir DIR] [--json results.json]

Generates (once, deterministically, cached outside the repository) a 10-column CSV of orders:
ints, decimals, strings with quotes and commas, dates, emails. Then, each as ``quiver run`` in
a subprocess (wall time from spawn to exit, rows/s, peak RSS of the whole process tree: the
engine and any JavaScript worker processes, polled in /proc):

  js           CSV -> JavaScript deriving 3 fields -> CSV (goal >= 300K rows/s), beside the same
               script in ONE mini-racer isolate over columnar JSON batches, in-process;
  passthrough  CSV -> CSV, beside DuckDB's ``COPY (SELECT * FROM read_csv(...)) TO ... (HEADER)``
               of the same file (goal >= 50% of DuckDB's rate);
  python       CSV -> Python batch function (pyarrow.compute) -> Parquet, beside
               pyarrow.csv.read_csv + the same function + pyarrow.parquet.write_table;
  startup      ``quiver --help`` (goal < 0.5 s) beside ``python -c pass`` (hyperfine when
               installed, else repeated timing).

Every output is checked (row count and checksums of several columns, computed by DuckDB from
the input) so a fast wrong run cannot pass. FlowEngine's published figures are printed for
context. Prints a table, then a JSON summary (also written to ``--json``).
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import orjson
import psutil
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

VENV_BIN = Path(sys.executable).parent
QUIVER = str(VENV_BIN / "quiver")
DATA_VERSION = 2  # bump when the generated data changes, so stale caches are not reused
COLUMNS = [
    "id",
    "customer",
    "email",
    "city",
    "country",
    "qty",
    "price",
    "total",
    "ordered_on",
    "note",
]
#: FlowEngine's published throughput (rows/s), for context only: another machine, another stack.
FLOWENGINE = {"js": (3_870, 3_997), "passthrough": (6_650, 6_650)}
GOALS = {
    "js": "300K rows/s",
    "passthrough": ">= 50% of DuckDB",
    "python": "(none)",
    "startup": "< 0.5 s",
}

ENRICH_JS = """\
function transform(row, ctx) {
  row.customer_upper = row.customer.toUpperCase();
  row.email_domain = row.email.slice(row.email.indexOf("@") + 1);
  row.gross = Math.round(Number(row.price) * Number(row.qty) * 100) / 100;
  return row;
}
"""

# One isolate, columnar JSON in and out: the simplest fast way to run the script in-process.
BASELINE_DRIVER_JS = """\
function __run_batch(text) {
  var batch = JSON.parse(text), names = Object.keys(batch), n = batch[names[0]].length;
  var out = null, outNames = null;
  for (var i = 0; i < n; i++) {
    var row = {};
    for (var c = 0; c < names.length; c++) row[names[c]] = batch[names[c]][i];
    var r = transform(row, null);
    if (r === null) continue;
    if (out === null) {
      outNames = Object.keys(r);
      out = {};
      for (var k = 0; k < outNames.length; k++) out[outNames[k]] = [];
    }
    for (var k = 0; k < outNames.length; k++) out[outNames[k]].push(r[outNames[k]]);
  }
  return JSON.stringify(out);
}
"""

TRANSFORM_PY = '''\
"""Batch transform of the pipeline benchmark: three derived columns with pyarrow.compute."""

import pyarrow as pa
import pyarrow.compute as pc


def enrich(batch, ctx=None):
    qty = pc.cast(batch.column("qty"), pa.int64())
    price = pc.cast(batch.column("price"), pa.float64())
    gross = pc.round(pc.multiply(price, pc.cast(qty, pa.float64())), 2)
    domain = pc.extract_regex(batch.column("email"), r"@(?P<domain>.*)$").field("domain")
    names = [*batch.schema.names, "qty_int", "gross", "email_domain"]
    return pa.RecordBatch.from_arrays([*batch.columns, qty, gross, domain], names=names)
'''


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def generate_csv(path: Path, rows: int) -> None:
    """Write ``rows`` orders to ``path`` deterministically (same seed, same bytes)."""
    rng = np.random.default_rng(20240611)
    first = np.array(["Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "Ken"])
    last = np.array(["Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Allen"])
    cities = np.array(["Paris", "Berlin", "New York", "Tokyo", "São Paulo", "Zürich", "Lagos"])
    countries = np.array(["FR", "DE", "US", "JP", "BR", "CH", "NG"])
    notes = np.array(
        ["", "ok", 'said "hello", then left', "gift, wrapped", "call before 9", '5" screen']
    )
    tmp = path.with_suffix(".tmp")
    chunk = 250_000
    schema = pa.schema(
        [
            ("id", pa.int64()),
            ("customer", pa.string()),
            ("email", pa.string()),
            ("city", pa.string()),
            ("country", pa.string()),
            ("qty", pa.int64()),
            ("price", pa.decimal128(10, 2)),
            ("total", pa.decimal128(12, 2)),
            ("ordered_on", pa.date32()),
            ("note", pa.string()),
        ]
    )
    # strings are quoted (as many exporters do), numbers and dates are not
    with pacsv.CSVWriter(tmp, schema) as writer:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            ids = np.arange(start + 1, start + n + 1)
            f, s = rng.integers(0, len(first), n), rng.integers(0, len(last), n)
            qty = rng.integers(1, 100, n)
            cents = rng.integers(1, 100_000, n)
            days = rng.integers(0, 3650, n)
            city = rng.integers(0, len(cities), n)
            customer = np.char.add(np.char.add(last[s], ", "), first[f])
            quoted = rng.random(n) < 0.1  # 10% of names hold a quoted nickname
            customer = np.where(
                quoted,
                np.char.add(customer, np.char.add(' "', np.char.add(first[s], '"'))),
                customer,
            )
            email = np.char.add(
                np.char.add(np.char.lower(first[f]), ids.astype(str)),
                np.char.add("@", np.array(["example.com", "mail.test", "corp.example"])[ids % 3]),
            )
            price = cents / 100
            dates = np.datetime64("2015-01-01") + days.astype("timedelta64[D]")
            batch = pa.record_batch(
                [
                    pa.array(ids),
                    pa.array(customer),
                    pa.array(email),
                    pa.array(cities[city]),
                    pa.array(countries[city]),
                    pa.array(qty),
                    pa.array(np.char.mod("%.2f", price)).cast(schema.field("price").type),
                    pa.array(np.char.mod("%.2f", price * qty)).cast(schema.field("total").type),
                    pa.array(dates),
                    pa.array(notes[rng.integers(0, len(notes), n)]),
                ],
                schema=schema,
            )
            writer.write_batch(batch)
    os.replace(tmp, path)


def cached_input(cache_dir: Path, rows: int) -> Path:
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"orders-{rows}-v{DATA_VERSION}.csv"
    if not path.exists():
        start = time.perf_counter()
        generate_csv(path, rows)
        print(f"generated {path} in {time.perf_counter() - start:.1f} s")
    return path


def fetch_one(sql: str) -> tuple[Any, ...]:
    """The single row of a DuckDB query."""
    row = duckdb.connect().execute(sql).fetchone()
    if row is None:
        raise AssertionError(f"no row from: {sql}")
    return tuple(row)


@dataclass
class Expected:
    """Checksums of the input, computed by DuckDB: what every output must reproduce."""

    rows: int
    sum_id: int
    sum_qty: int
    customer_chars: int
    note_chars: int
    gross: float

    @classmethod
    def of(cls, path: Path) -> Expected:
        row = fetch_one(
            f"""select count(*), sum(id::bigint), sum(qty::bigint), sum(length(customer)),
                       sum(length(coalesce(note, ''))),
                       sum(round(price::double * qty::bigint, 2))
                from read_csv('{path}', all_varchar=true, header=true)"""
        )
        rows, sum_id, sum_qty, customer_chars, note_chars = (int(v) for v in row[:5])
        return cls(rows, sum_id, sum_qty, customer_chars, note_chars, float(row[5]))


def check_csv_output(path: Path, exp: Expected, derived: bool) -> str:
    """Row count and checksums of a CSV output; raises when anything differs."""
    cols = (
        "count(*), sum(id::bigint), sum(qty::bigint), sum(length(customer)), "
        "sum(length(coalesce(note, '')))"
    )
    if derived:
        cols += (
            ", sum(length(customer_upper)), sum(gross::double), "
            "count(*) filter (where email_domain = split_part(email, '@', 2))"
        )
    row = fetch_one(f"select {cols} from read_csv('{path}', all_varchar=true, header=true)")
    got = [int(v) for v in row[:5]]
    want = [exp.rows, exp.sum_id, exp.sum_qty, exp.customer_chars, exp.note_chars]
    if got != want:
        raise AssertionError(f"{path}: (rows, sum id, sum qty, chars) {got} != {want}")
    if derived:
        if int(row[5]) != exp.customer_chars:
            raise AssertionError(
                f"{path}: customer_upper has {row[5]} chars, not {exp.customer_chars}"
            )
        if abs(float(row[6]) - exp.gross) > 1e-6 * max(1.0, exp.gross):
            raise AssertionError(f"{path}: sum(gross) {row[6]} != {exp.gross}")
        if int(row[7]) != exp.rows:
            raise AssertionError(f"{path}: email_domain right in {row[7]} of {exp.rows} rows")
    return f"{exp.rows} rows, checksums ok"


def check_parquet_output(path: Path, exp: Expected) -> str:
    row = fetch_one(
        f"""select count(*), sum(id::bigint), sum(qty_int), sum(length(customer)), sum(gross),
                   count(*) filter (where email_domain = split_part(email, '@', 2))
            from read_parquet('{path}')"""
    )
    got = [int(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[5])]
    want = [exp.rows, exp.sum_id, exp.sum_qty, exp.customer_chars, exp.rows]
    if got != want:
        raise AssertionError(f"{path}: (rows, sum id, sum qty, chars, domains) {got} != {want}")
    if abs(float(row[4]) - exp.gross) > 1e-6 * max(1.0, exp.gross):
        raise AssertionError(f"{path}: sum(gross) {row[4]} != {exp.gross}")
    return f"{exp.rows} rows, checksums ok"


# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------


@dataclass
class Measure:
    seconds: float
    peak_rss: int  # bytes, summed over the process tree at its largest


def _read(path: str) -> list[str]:
    """The words of a /proc file; none when it is gone (the process ended)."""
    try:
        with open(path) as f:
            return f.read().split()
    except OSError:
        return []


class TreeRss:
    """Polls the summed RSS of a process and all its descendants; keeps the peak.

    It reads the kernel's own lists (``/proc/PID/task/TID/children``, ``/proc/PID/statm``)
    instead of asking psutil for the descendants, which scans every process of the machine
    on each poll: that cost the benchmark about 9% of a core, taken from the runs it times.
    """

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.peak = 0
        self._pid = pid
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _tree(self) -> list[int]:
        pids, i = [self._pid], 0
        while i < len(pids):
            pid, i = pids[i], i + 1
            with contextlib.suppress(OSError):
                for task in os.listdir(f"/proc/{pid}/task"):
                    pids.extend(int(child) for child in _read(f"/proc/{pid}/task/{task}/children"))
        return pids

    def _poll(self) -> None:
        while not self._stop.is_set():
            total = 0
            for pid in self._tree():
                resident = _read(f"/proc/{pid}/statm")[1:2]
                total += int(resident[0]) * self._page if resident else 0
            self.peak = max(self.peak, total)
            self._stop.wait(self._interval)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def measure(cmd: list[str], cwd: Path) -> Measure:
    """Run ``cmd``: wall time from spawn to exit and the peak RSS of its process tree."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rss = TreeRss(proc.pid)
    out, err = proc.communicate()
    seconds = time.perf_counter() - start
    peak = rss.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{out}\n{err}")
    return Measure(seconds, peak)


ENGINE_ARGS: list[str] = []  # extra ``quiver run`` options (``--workers N``)


def compile_quiver() -> None:
    """Write the bytecode of Quiver's modules first, as installing a wheel does. From a source
    checkout with PYTHONDONTWRITEBYTECODE set, every ``quiver run`` would otherwise compile
    each module it imports again (about 65 ms on a 2-core machine), a cost no install pays."""
    spec = importlib.util.find_spec("quiver")
    assert spec is not None and spec.submodule_search_locations
    for folder in spec.submodule_search_locations:
        compileall.compile_dir(folder, quiet=1)


def run_quiver(args: list[str], cwd: Path) -> Measure:
    return measure([QUIVER, *args, *ENGINE_ARGS], cwd)


def run_baseline(name: str, src: Path, out: Path) -> Measure:
    """A baseline in its own Python process (this file, ``--baseline NAME``), measured alike."""
    return measure([sys.executable, __file__, "--baseline", name, str(src), str(out)], out.parent)


def all_text_options() -> pacsv.ConvertOptions:
    return pacsv.ConvertOptions(
        column_types={c: pa.string() for c in COLUMNS}, strings_can_be_null=True
    )


def baseline_js(src: Path, out: Path) -> None:
    """The JavaScript transform in ONE mini-racer isolate over columnar JSON batches."""
    from py_mini_racer import MiniRacer

    ctx = MiniRacer()
    ctx.eval(ENRICH_JS)
    ctx.eval(BASELINE_DRIVER_JS)
    # a function handle: its string argument goes to V8 as is (ctx.call would build and parse
    # JavaScript source holding the whole batch, several times slower)
    run_batch: Any = ctx.eval("__run_batch")
    reader = pacsv.open_csv(
        src,
        convert_options=all_text_options(),
        read_options=pacsv.ReadOptions(block_size=8 << 20),
    )
    writer: pacsv.CSVWriter | None = None
    for batch in reader:
        text = orjson.dumps(batch.to_pydict()).decode()
        result = orjson.loads(run_batch(text))
        table = pa.RecordBatch.from_pydict(result)
        if writer is None:
            writer = pacsv.CSVWriter(str(out), table.schema)
        writer.write_batch(table)
    assert writer is not None
    writer.close()
    del run_batch  # release the handle before its context goes away
    ctx.close()


def baseline_python(src: Path, out: Path) -> None:
    """pyarrow.csv.read_csv + the benchmark's batch function + pyarrow.parquet.write_table."""
    namespace: dict[str, Any] = {}
    exec(compile(TRANSFORM_PY, "transform.py", "exec"), namespace)
    enrich = namespace["enrich"]
    table = pacsv.read_csv(src, convert_options=all_text_options())
    batches = [enrich(b) for b in table.to_batches()]
    pq.write_table(pa.Table.from_batches(batches), out, compression="zstd")


def baseline_duckdb(src: Path, out: Path) -> None:
    """DuckDB's own CSV -> CSV."""
    duckdb.sql(f"copy (select * from read_csv('{src}')) to '{out}' (header)")


BASELINES: dict[str, Callable[[Path, Path], None]] = {
    "js": baseline_js,
    "python": baseline_python,
    "duckdb": baseline_duckdb,
}


@dataclass
class Figure:
    name: str
    what: str
    rows: int
    ours: Measure
    baseline: Measure
    baseline_what: str
    check: str
    notes: list[str] = field(default_factory=list)
    engine: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.rows / self.ours.seconds

    @property
    def baseline_rate(self) -> float:
        return self.rows / self.baseline.seconds

    def summary(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "rows": self.rows,
            "seconds": round(self.ours.seconds, 3),
            "rows_per_second": round(self.rate),
            "peak_rss_mb": round(self.ours.peak_rss / 2**20, 1),
            "baseline": self.baseline_what,
            "baseline_seconds": round(self.baseline.seconds, 3),
            "baseline_rows_per_second": round(self.baseline_rate),
            "baseline_peak_rss_mb": round(self.baseline.peak_rss / 2**20, 1),
            "ratio_to_baseline": round(self.rate / self.baseline_rate, 3),
            "goal": GOALS[self.name],
            "check": self.check,
            "engine_report": self.engine,
            "notes": self.notes,
        }


def engine_report(path: Path) -> dict[str, Any]:
    """What the engine says about its own run (from ``--report``)."""
    report = json.loads(path.read_text("utf-8"))
    return {
        "seconds": report["seconds"],
        "rows_per_second": report["rows_per_second"],
        "busy_seconds": {k: v["busy_seconds"] for k, v in report["steps"].items()},
    }


def write_pipeline(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# The figures
# ---------------------------------------------------------------------------------------------


def sharing_of(isolation: str) -> str:
    if isolation == "thread":
        return "each on a thread of the engine's process"
    return "each in a worker process of its own"


def bench_js(src: Path, work: Path, exp: Expected, workers: int, isolation: str) -> Figure:
    (work / "enrich.js").write_text(ENRICH_JS, encoding="utf-8")
    write_pipeline(
        work,
        "js.yaml",
        f"""\
        source: {{csv: {{path: "{src}"}}}}
        processors:
          - js: {{file: enrich.js, workers: {workers}, isolation: {isolation}}}
        sink: {{csv: {{path: out/js.csv}}}}
        """,
    )
    ours = run_quiver(["run", "js.yaml", "--quiet", "--report", "out/js.report.json"], work)
    check = check_csv_output(work / "out" / "js.csv", exp, derived=True)
    base = run_baseline("js", src, work / "out" / "js.baseline.csv")
    check_csv_output(work / "out" / "js.baseline.csv", exp, derived=True)
    return Figure(
        "js",
        "CSV -> JavaScript (3 derived fields) -> CSV",
        exp.rows,
        ours,
        base,
        "same script, one mini-racer isolate, columnar JSON batches, one process",
        check,
        [f"V8 isolates: {workers}, {sharing_of(isolation)}"],
        engine_report(work / "out" / "js.report.json"),
    )


def bench_passthrough(src: Path, work: Path, exp: Expected) -> Figure:
    write_pipeline(
        work,
        "copy.yaml",
        f"""\
        source: {{csv: {{path: "{src}"}}}}
        sink: {{csv: {{path: out/copy.csv}}}}
        """,
    )
    ours = run_quiver(["run", "copy.yaml", "--quiet", "--report", "out/copy.report.json"], work)
    check = check_csv_output(work / "out" / "copy.csv", exp, derived=False)
    base = run_baseline("duckdb", src, work / "out" / "copy.duckdb.csv")
    check_csv_output(work / "out" / "copy.duckdb.csv", exp, derived=False)
    return Figure(
        "passthrough",
        "CSV -> CSV passthrough",
        exp.rows,
        ours,
        base,
        "DuckDB COPY (SELECT * FROM read_csv(...)) TO ... (HEADER), own process",
        check,
        engine=engine_report(work / "out" / "copy.report.json"),
    )


def bench_python(src: Path, work: Path, exp: Expected) -> Figure:
    (work / "transform.py").write_text(TRANSFORM_PY, encoding="utf-8")
    write_pipeline(
        work,
        "python.yaml",
        f"""\
        source: {{csv: {{path: "{src}"}}}}
        processors:
          - python: {{file: transform.py, function: enrich, mode: batch}}
        sink: {{parquet: {{path: out/python.parquet}}}}
        """,
    )
    ours = run_quiver(["run", "python.yaml", "--quiet", "--report", "out/python.report.json"], work)
    check = check_parquet_output(work / "out" / "python.parquet", exp)
    base = run_baseline("python", src, work / "out" / "python.baseline.parquet")
    check_parquet_output(work / "out" / "python.baseline.parquet", exp)
    return Figure(
        "python",
        "CSV -> Python batch function (pyarrow.compute) -> Parquet",
        exp.rows,
        ours,
        base,
        "pyarrow.csv.read_csv + the same function + pyarrow.parquet.write_table (zstd)",
        check,
        engine=engine_report(work / "out" / "python.report.json"),
    )


@dataclass
class Startup:
    seconds: float
    baseline_seconds: float
    method: str

    def summary(self) -> dict[str, Any]:
        return {
            "what": "quiver --help",
            "seconds": round(self.seconds, 3),
            "baseline": "python -c pass",
            "baseline_seconds": round(self.baseline_seconds, 3),
            "goal": GOALS["startup"],
            "method": self.method,
        }


def bench_startup(work: Path) -> Startup:
    python = sys.executable
    hyperfine = shutil.which("hyperfine")
    if hyperfine:
        export = work / "startup.json"
        subprocess.run(
            [
                hyperfine,
                "--warmup",
                "3",
                "--runs",
                "20",
                "--style",
                "none",
                "--export-json",
                str(export),
                f"{QUIVER} --help",
                f"{python} -c pass",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        results = json.loads(export.read_text("utf-8"))["results"]
        return Startup(results[0]["mean"], results[1]["mean"], "hyperfine, 20 runs, mean")

    def mean(cmd: list[str]) -> float:
        for _ in range(3):
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        times = []
        for _ in range(20):
            start = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            times.append(time.perf_counter() - start)
        return sum(times) / len(times)

    return Startup(mean([QUIVER, "--help"]), mean([python, "-c", "pass"]), "20 timed runs, mean")


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "nproc": os.cpu_count(),
        "cpu": model,
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "pyarrow": pa.__version__,
        "duckdb": duckdb.__version__,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def print_figure(fig: Figure) -> None:
    print(f"\n{fig.name}: {fig.what}")
    print(
        f"  quiver run     {fig.ours.seconds:7.2f} s  {fig.rate / 1e3:8.1f} K rows/s"
        f"  peak RSS {fig.ours.peak_rss / 2**20:7.0f} MB   ({fig.check})"
    )
    print(
        f"  baseline       {fig.baseline.seconds:7.2f} s  {fig.baseline_rate / 1e3:8.1f} K rows/s"
        f"  peak RSS {fig.baseline.peak_rss / 2**20:7.0f} MB   ({fig.baseline_what})"
    )
    print(
        f"  ratio          {fig.rate / fig.baseline_rate:7.2f}x of the baseline;"
        f" goal {GOALS[fig.name]}"
    )
    if fig.engine:
        print(
            f"  engine report  {fig.engine['seconds']:.2f} s inside the run; busy seconds per "
            f"step {fig.engine['busy_seconds']}"
        )
    if fig.name in FLOWENGINE:
        low, high = FLOWENGINE[fig.name]
        published = f"{low:,}" if low == high else f"{low:,}-{high:,}"
        print(
            f"  FlowEngine     {published} rows/s published (another machine): "
            f"{fig.rate / high:,.0f}x"
        )
    for note in fig.notes:
        print(f"  note           {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--only", default="js,passthrough,python,startup", help="comma-separated figures"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME", tempfile.gettempdir())) / "quiver-bench",
        help="where the generated input is kept between runs",
    )
    parser.add_argument(
        "--js-workers",
        type=int,
        default=os.cpu_count() or 1,
        help="V8 isolates of the js step (default: one per core)",
    )
    parser.add_argument(
        "--js-isolation",
        choices=["thread", "process"],
        default="thread",
        help="where the isolates run: threads of the engine's process (the default) or "
        "worker processes",
    )
    parser.add_argument(
        "--engine-workers",
        type=int,
        default=None,
        help="pass --workers N to quiver run (default: the engine's own default)",
    )
    parser.add_argument("--json", type=Path, help="also write the JSON summary here")
    parser.add_argument(
        "--baseline", nargs=3, metavar=("NAME", "SRC", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.baseline:
        name, src_arg, out_arg = args.baseline
        BASELINES[name](Path(src_arg), Path(out_arg))
        return
    compile_quiver()
    wanted = set(args.only.split(","))
    if args.engine_workers is not None:
        ENGINE_ARGS.extend(["--workers", str(args.engine_workers)])
    engine_workers = (
        str(args.engine_workers) if args.engine_workers is not None else "engine default"
    )
    info = machine()
    cores = info["nproc"]
    print(
        f"{info['date']}  {cores} cores ({info['cpu']}), {info['ram_gb']} GB RAM, "
        f"Python {info['python']}, load average {info['load_average_at_start']}"
    )
    print(
        f"cores: the {cores} cores are shared by everything: in the JavaScript figure "
        f"{args.js_workers} V8 isolates ({sharing_of(args.js_isolation)}) run the script while "
        "the engine reads and parses CSV (pyarrow threads) and writes the output; nothing is "
        "pinned. "
        f"quiver run --workers: {engine_workers}. "
        "Other work on the machine competes for the same cores."
    )
    src = cached_input(args.cache_dir, args.rows)
    exp = Expected.of(src)
    print(f"input: {src} ({src.stat().st_size / 1e6:.0f} MB, {exp.rows} rows, 10 columns)")
    figures: list[Figure] = []
    startup: Startup | None = None
    with tempfile.TemporaryDirectory(prefix="quiver-bench-") as tmp:
        work = Path(tmp)
        (work / "out").mkdir()
        steps: list[tuple[str, Callable[[], Figure]]] = [
            ("js", lambda: bench_js(src, work, exp, args.js_workers, args.js_isolation)),
            ("passthrough", lambda: bench_passthrough(src, work, exp)),
            ("python", lambda: bench_python(src, work, exp)),
        ]
        for name, step in steps:
            if name in wanted:
                fig = step()
                figures.append(fig)
                print_figure(fig)
                for f in (work / "out").iterdir():
                    f.unlink()  # keep the temp dir small between figures
        if "startup" in wanted:
            startup = bench_startup(work)
            print(
                f"\nstartup: quiver --help {startup.seconds * 1e3:.0f} ms; "
                f"python -c pass {startup.baseline_seconds * 1e3:.0f} ms; goal < 500 ms "
                f"({startup.method})"
            )
    summary: dict[str, Any] = {
        "machine": info,
        "cores": {
            "nproc": cores,
            "js_workers": args.js_workers,
            "js_isolation": args.js_isolation,
            "engine_workers": engine_workers,
            "sharing": f"the V8 isolates ({sharing_of(args.js_isolation)}) and the engine "
            "(CSV read/parse, CSV write) share all cores; nothing pinned",
        },
        "input": {"rows": exp.rows, "columns": len(COLUMNS), "bytes": src.stat().st_size},
        "figures": {f.name: f.summary() for f in figures},
        "flowengine_published_rows_per_second": {
            "js_transform": list(FLOWENGINE["js"]),
            "passthrough": FLOWENGINE["passthrough"][0],
        },
    }
    if startup is not None:
        summary["figures"]["startup"] = startup.summary()
    text = json.dumps(summary, indent=2)
    print("\n" + text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
