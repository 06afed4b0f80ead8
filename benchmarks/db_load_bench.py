"""Database loads and exports: ``quiver run`` beside the tools users would pick instead.

Run by hand (not a test), with the PostgreSQL and MariaDB of DEVELOPERS.md running:

    .venv/bin/python benchmarks/db_load_bench.py [--rows 1000000] [--repeat 3]
        [--only pg,mysql,export]

Generates (once per run, in a temporary folder) a CSV of ``--rows`` rows of six typed columns
(id bigint, name text, price double, qty bigint, day date, at timestamp), then times, each in a
subprocess from spawn to exit, alternating ours and the baseline ``--repeat`` times (median):

  pg      CSV -> PostgreSQL table, append: ``quiver run`` (csv source with declared types ->
          database sink, mode append) beside ``psql -c "\\copy t FROM file CSV HEADER"``
          (goal: at most 1.25x its time);
  mysql   CSV -> MariaDB table, append: ``quiver run`` beside ``mysql --local-infile`` running
          ``LOAD DATA LOCAL INFILE`` of the same file (goal: at most 2.0x its time);
  export  PostgreSQL table -> Parquet: ``quiver run`` (database source -> parquet sink) beside
          a Python script doing ADBC ``fetch_arrow_table`` + ``pyarrow.parquet.write_table``
          (goal: at most 1.0x its time).

The target table is emptied before every load, and after every run the row count and the sum
of ``id`` and ``qty`` are checked, so a fast wrong run cannot pass. Prints one line per load:
our time, the baseline's, the ratio, and the ratio once quiver's own start-up (a one-row
``quiver run``, timed first) is taken off ours.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline_bench import compile_quiver  # a sibling script, not a package

VENV_BIN = Path(sys.executable).parent
QUIVER = str(VENV_BIN / "quiver")
PG = "postgresql://postgres@127.0.0.1:5432/test"
MYSQL_DB = "quiver_bench"
MYSQL = f"mysql://root@127.0.0.1:3306/{MYSQL_DB}"
TABLE = "bench_load"
DDL = "id BIGINT, name VARCHAR(40), price DOUBLE PRECISION, qty BIGINT, day DATE, at {ts}"
TYPES = "{id: int, name: str, price: float, qty: int, day: date, at: datetime}"


def make_csv(path: Path, rows: int) -> tuple[int, int]:
    rng = np.random.default_rng(7)
    ids = np.arange(1, rows + 1, dtype=np.int64)
    qty = rng.integers(1, 1000, rows, dtype=np.int64)
    table = pa.table(
        {
            "id": ids,
            "name": pa.array([f"customer {i % 9973}" for i in range(rows)]),
            "price": np.round(rng.random(rows) * 1000, 2),
            "qty": qty,
            "day": pa.array((np.datetime64("2020-01-01") + (ids % 1500)).astype("datetime64[D]")),
            "at": pa.array(
                np.datetime64("2024-01-01T00:00:00") + ids.astype("timedelta64[s]") * 7
            ).cast(pa.timestamp("s")),
        }
    )
    pacsv.write_csv(table, path)
    return int(ids.sum()), int(qty.sum())


def timed(argv: list[str], **kw: object) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, **kw)  # type: ignore[call-overload]
    return time.perf_counter() - t0


def psql(sql: str) -> str:
    out = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-tAc", sql],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def mysql(sql: str, *extra: str) -> str:
    out = subprocess.run(
        ["mysql", "-h", "127.0.0.1", "-uroot", "-N", "-B", *extra, "-e", sql],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def compare(
    name: str,
    repeat: int,
    ours: Callable[[], float],
    baseline: Callable[[], float],
    check: Callable[[], None],
    startup: float,
) -> tuple[float, float]:
    ours_t, base_t = [], []
    for _ in range(repeat):
        base_t.append(baseline())
        check()
        ours_t.append(ours())
        check()
    o, b = statistics.median(ours_t), statistics.median(base_t)
    print(
        f"{name:<62} ours {o:6.2f} s  baseline {b:6.2f} s  ratio {o / b:5.2f}x"
        f"  (without quiver's start-up: {(o - startup) / b:4.2f}x)",
        flush=True,
    )
    return o, b


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="pg,mysql,export")
    args = parser.parse_args()
    only = set(args.only.split(","))
    compile_quiver()
    print(f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, {args.rows:,} rows")
    with tempfile.TemporaryDirectory(prefix="quiver-dbbench-") as tmp:
        folder = Path(tmp)
        csv = folder / "rows.csv"
        want = make_csv(csv, args.rows)

        def pipeline(name: str, text: str) -> Path:
            path = folder / f"{name}.yaml"
            path.write_text(textwrap.dedent(text))
            return path

        def run(path: Path) -> float:
            return timed([QUIVER, "run", str(path), "-q"])

        # quiver's own start-up (interpreter, imports, reading and planning the pipeline):
        # a one-row CSV -> CSV run, to tell the fixed cost from the cost per row.
        (folder / "one.csv").write_text("id\n1\n")
        tiny = pipeline(
            "tiny", "source: {csv: {path: one.csv}}\nsink: {csv: {path: one.out.csv}}\n"
        )
        startup = statistics.median(run(tiny) for _ in range(max(3, args.repeat)))
        print(f"quiver run start-up (one-row CSV -> CSV): {startup:.2f} s")

        if "pg" in only or "export" in only:
            psql(f"DROP TABLE IF EXISTS {TABLE}")
            psql(f"CREATE TABLE {TABLE} ({DDL.format(ts='TIMESTAMP')})")

            def pg_check() -> None:
                got = psql(f"SELECT count(*), sum(id), sum(qty) FROM {TABLE}")
                assert got == f"{args.rows}|{want[0]}|{want[1]}", got
                psql(f"TRUNCATE {TABLE}")

            load = pipeline(
                "pg",
                f"""
                source: {{csv: {{path: rows.csv, types: {TYPES}}}}}
                sink: {{database: {{url: "{PG}", table: {TABLE}, mode: append}}}}
                """,
            )
            copy = f"\\copy {TABLE} FROM '{csv}' CSV HEADER"
            if "pg" in only:
                compare(
                    "CSV -> PostgreSQL append (psql \\copy)",
                    args.repeat,
                    lambda: run(load),
                    lambda: timed(
                        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-c", copy]
                    ),
                    pg_check,
                    startup,
                )
            if "export" in only:
                timed(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-c", copy])
                out = folder / "out.parquet"
                export = pipeline(
                    "export",
                    f"""
                    source: {{database: {{url: "{PG}", table: {TABLE}}}}}
                    sink: {{parquet: {{path: {out}, compression: snappy}}}}
                    """,
                )
                script = folder / "adbc_export.py"
                script.write_text(
                    textwrap.dedent(
                        f"""
                        import adbc_driver_postgresql.dbapi as pg
                        import pyarrow.parquet as pq
                        with pg.connect("{PG}") as conn, conn.cursor() as cur:
                            cur.execute("SELECT * FROM {TABLE}")
                            pq.write_table(cur.fetch_arrow_table(), "{out}")
                        """
                    )
                )

                def parquet_check() -> None:
                    t = pq.read_table(out, columns=["id", "qty"])
                    got = (t.num_rows, pc.sum(t["id"]).as_py(), pc.sum(t["qty"]).as_py())
                    assert got == (args.rows, *want), got
                    out.unlink()

                compare(
                    "PostgreSQL -> Parquet (ADBC fetch_arrow_table + write_table)",
                    args.repeat,
                    lambda: run(export),
                    lambda: timed([sys.executable, str(script)]),
                    parquet_check,
                    startup,
                )
            psql(f"DROP TABLE {TABLE}")

        if "mysql" in only:
            mysql(f"DROP DATABASE IF EXISTS {MYSQL_DB}")
            mysql(f"CREATE DATABASE {MYSQL_DB}")
            mysql(f"CREATE TABLE {MYSQL_DB}.{TABLE} ({DDL.format(ts='DATETIME(6)')})")

            def mysql_check() -> None:
                got = mysql(f"SELECT count(*), sum(id), sum(qty) FROM {MYSQL_DB}.{TABLE}")
                assert got == f"{args.rows}\t{want[0]}\t{want[1]}", got
                mysql(f"TRUNCATE {MYSQL_DB}.{TABLE}")

            load = pipeline(
                "mysql",
                f"""
                source: {{csv: {{path: rows.csv, types: {TYPES}}}}}
                sink: {{database: {{url: "{MYSQL}", table: {TABLE}, mode: append}}}}
                """,
            )
            infile = (
                f"LOAD DATA LOCAL INFILE '{csv}' INTO TABLE {MYSQL_DB}.{TABLE} "
                "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' IGNORE 1 LINES"
            )
            compare(
                "CSV -> MariaDB append (LOAD DATA LOCAL INFILE)",
                args.repeat,
                lambda: run(load),
                lambda: timed(
                    ["mysql", "-h", "127.0.0.1", "-uroot", "--local-infile=1", "-e", infile]
                ),
                mysql_check,
                startup,
            )
            mysql(f"DROP DATABASE {MYSQL_DB}")


if __name__ == "__main__":
    main()
