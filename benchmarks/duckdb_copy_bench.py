"""The JavaScript and passthrough pipelines against DuckDB's own CSV -> CSV COPY, in one run.

Run by hand (not a test):

    .venv/bin/python benchmarks/duckdb_copy_bench.py [--rows 1000000] [--rounds 3]
        [--cache-dir DIR] [--json results.json]

The input is the 10-column orders CSV of ``pipeline_bench.py`` (generated once, cached). Each
round runs, one after the other and each in a process of its own (wall time from spawn to
exit, peak RSS of the process tree):

  duckdb       ``COPY (SELECT * FROM read_csv('in.csv')) TO 'out.csv' (FORMAT csv, HEADER)``
  passthrough  ``quiver run``: CSV -> CSV                       goal >= 1.0x DuckDB's COPY
  js           ``quiver run``: CSV -> JavaScript (3 derived fields) -> CSV
                                                                 goal >= 0.5x DuckDB's COPY

The order of the three rotates from round to round, so a burst of load elsewhere on the
machine does not always hit the same one. Each figure is the median of its rounds; each ratio
is taken against DuckDB's median in the same run. Every output is checked (row count and
column checksums computed by DuckDB from the input). The load average and the busiest other
processes are printed before and after: on a shared machine the ratios are what count.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline_bench import (  # a sibling script, not a package
    ENRICH_JS,
    Expected,
    Measure,
    cached_input,
    check_csv_output,
    compile_quiver,
    machine,
    measure,
    run_quiver,
)

GOALS = {"passthrough": 1.0, "js": 0.5}


def copy_command(src: Path, out: Path) -> list[str]:
    """DuckDB's own COPY in a Python process of its own (as ``quiver run`` has one)."""
    sql = f"COPY (SELECT * FROM read_csv('{src}')) TO '{out}' (FORMAT csv, HEADER)"
    return [sys.executable, "-c", f"import duckdb; duckdb.sql({sql!r})"]


def load() -> dict[str, Any]:
    """The load average and the processes (other than this one) using the most CPU now."""
    me = os.getpid()
    procs = []
    for p in psutil.process_iter(["pid", "name", "cmdline"]):
        try:
            if p.pid != me:
                p.cpu_percent(None)
                procs.append(p)
        except psutil.Error:
            continue
    psutil.cpu_percent(None)
    busy: list[tuple[float, str]] = []
    time.sleep(1.0)
    total = psutil.cpu_percent(None)
    for p in procs:
        try:
            cpu = p.cpu_percent(None)
            if cpu >= 5:
                cmd = " ".join(p.info["cmdline"] or [p.info["name"] or "?"])[:90]
                busy.append((cpu, cmd))
        except psutil.Error:
            continue
    busy.sort(reverse=True)
    return {
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpu_percent_all_cores": total,
        "busiest_other_processes": [f"{cpu:.0f}% {cmd}" for cpu, cmd in busy[:6]],
    }


def write(directory: Path, name: str, text: str) -> None:
    (directory / name).write_text(textwrap.dedent(text), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME", tempfile.gettempdir())) / "quiver-bench",
    )
    parser.add_argument("--json", type=Path, help="also write the JSON summary here")
    args = parser.parse_args()

    compile_quiver()
    info = machine()
    before = load()
    print(f"{info['date']}  {info['nproc']} cores ({info['cpu']}), Python {info['python']}")
    print(f"load before: {before['load_average']}, all cores {before['cpu_percent_all_cores']}%")
    for line in before["busiest_other_processes"]:
        print(f"  {line}")
    src = cached_input(args.cache_dir, args.rows)
    exp = Expected.of(src)
    print(f"input: {src} ({src.stat().st_size / 1e6:.0f} MB, {exp.rows:,} rows, 10 columns)")

    times: dict[str, list[Measure]] = {"duckdb": [], "passthrough": [], "js": []}
    checks: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="quiver-copy-bench-") as tmp:
        work = Path(tmp)
        (work / "out").mkdir()
        (work / "enrich.js").write_text(ENRICH_JS, encoding="utf-8")
        write(
            work,
            "copy.yaml",
            f"""\
            source: {{csv: {{path: "{src}"}}}}
            sink: {{csv: {{path: out/copy.csv}}}}
            """,
        )
        write(
            work,
            "js.yaml",
            f"""\
            source: {{csv: {{path: "{src}"}}}}
            processors:
              - js: {{file: enrich.js}}
            sink: {{csv: {{path: out/js.csv}}}}
            """,
        )
        runs = {
            "duckdb": lambda: measure(copy_command(src, work / "out" / "duckdb.csv"), work),
            "passthrough": lambda: run_quiver(["run", "copy.yaml", "--quiet"], work),
            "js": lambda: run_quiver(["run", "js.yaml", "--quiet"], work),
        }
        outputs = {"duckdb": "duckdb.csv", "passthrough": "copy.csv", "js": "js.csv"}
        names = list(runs)
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                m = runs[name]()
                times[name].append(m)
                out = work / "out" / outputs[name]
                checks[name] = check_csv_output(out, exp, derived=name == "js")
                out.unlink()
                print(
                    f"round {r + 1} {name:12s} {m.seconds:6.2f} s "
                    f"{exp.rows / m.seconds / 1e3:8.1f} K rows/s  peak RSS "
                    f"{m.peak_rss / 2**20:5.0f} MB"
                )
    after = load()
    median = {n: statistics.median(m.seconds for m in ms) for n, ms in times.items()}
    print(f"\nload after: {after['load_average']}, all cores {after['cpu_percent_all_cores']}%")
    for line in after["busiest_other_processes"]:
        print(f"  {line}")
    print(f"\nmedian of {args.rounds} rounds, {exp.rows:,} rows:")
    figures: dict[str, Any] = {}
    # each round's own ratio: DuckDB's COPY and the pipeline ran minutes apart at most, under
    # much the same load
    per_round = {
        n: [d.seconds / m.seconds for d, m in zip(times["duckdb"], times[n], strict=True)]
        for n in times
    }
    for name in ("duckdb", "passthrough", "js"):
        ratio = median["duckdb"] / median[name]
        goal = GOALS.get(name)
        verdict = (
            ""
            if goal is None
            else f"  goal >= {goal:.1f}x: {'met' if ratio >= goal else 'NOT met'}"
        )
        rounds = ", ".join(f"{r:.2f}" for r in per_round[name])
        print(
            f"  {name:12s} {median[name]:6.2f} s {exp.rows / median[name] / 1e3:8.1f} K rows/s"
            f"  {ratio:5.2f}x DuckDB's COPY{verdict}"
            + (
                ""
                if name == "duckdb"
                else f"\n  {'':12s} per round: {rounds}x (median "
                f"{statistics.median(per_round[name]):.2f}x)"
            )
        )
        figures[name] = {
            "seconds": [round(m.seconds, 3) for m in times[name]],
            "median_seconds": round(median[name], 3),
            "rows_per_second": round(exp.rows / median[name]),
            "peak_rss_mb": max(round(m.peak_rss / 2**20, 1) for m in times[name]),
            "ratio_to_duckdb_copy": round(ratio, 3),
            "ratio_per_round": [round(r, 3) for r in per_round[name]],
            "median_ratio_per_round": round(statistics.median(per_round[name]), 3),
            "goal": goal,
            "check": checks[name],
        }
    summary = {
        "machine": info,
        "load_before": before,
        "load_after": after,
        "rows": exp.rows,
        "rounds": args.rounds,
        "figures": figures,
    }
    text = json.dumps(summary, indent=2)
    print("\n" + text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
