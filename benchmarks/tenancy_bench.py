"""What tenancy costs an OTLP request: decode + convert to the telemetry layout (the receiver's
work without tenancy, the baseline) beside the same with the tenancy step added, in this
process.

Run by hand (not a test):

    .venv/bin/python benchmarks/tenancy_bench.py [--requests 200] [--spans 500] [--repeat 5]

The requests are ``benchmarks/ingest_bench.py``'s (``--spans`` spans each, 8 span attributes,
3 resource attributes). Each mode times, median of ``--repeat`` passes over all requests, CPU
seconds of this process (``time.process_time``):

  baseline    decode_body + convert_request per request;
  header      the same, then the tenant of ``X-Scope-OrgID`` (one of 50 tenants) checked,
              written into ``tenant_id``, counted by the tenant's token buckets (limits high
              enough never to refuse) and by the tenant metrics;
  resource    the same with the tenant read from the ``tenant.id`` resource attribute of every
              row (the request carries one; 50 tenants over the requests).

Prints spans per CPU-second of each mode and the ratio to the baseline (1.00 = free), and
checks every row got the tenant it should, so a fast wrong result cannot pass.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import pyarrow.compute as pc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest_bench import make_bodies

from quiver.ingest.access import Caller
from quiver.ingest.otlp.convert import convert_request
from quiver.ingest.otlp.decode import decode_body
from quiver.ingest.tenancy import TENANT_COLUMN, Tenancy, TenancyConfig

TENANTS = 50


def with_resource_tenants(bodies: list[bytes]) -> list[bytes]:
    out = []
    for r, body in enumerate(bodies):
        request = ExportTraceServiceRequest.FromString(body)
        attr = request.resource_spans[0].resource.attributes.add()
        attr.key, attr.value.string_value = "tenant.id", f"tenant-{r % TENANTS}"
        out.append(request.SerializeToString())
    return out


def one_pass(bodies: list[bytes], mode: str, tenancy: Tenancy) -> float:
    start = time.process_time()
    for r, body in enumerate(bodies):
        batch = convert_request("traces", decode_body("traces", body, json=False)).batch
        assert batch is not None
        if mode == "baseline":
            continue
        headers = {"x-scope-orgid": f"tenant-{r % TENANTS}"} if mode == "header" else {}
        batch = tenancy.assign(batch, tenancy.claim(Caller(), headers))
        tenancy.taken(tenancy.admit(batch), "traces")
        if r == 0:  # the result is right, not only fast
            assert pc.all(pc.equal(batch.column(TENANT_COLUMN), "tenant-0")).as_py()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--spans", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    plain = make_bodies(args.requests, args.spans)
    tagged = with_resource_tenants(plain)
    limits = {"requests_per_second": 1e9, "items_per_second": 1e12}
    inputs = {"baseline": plain, "header": plain, "resource": tagged}
    sources = {"baseline": ["header"], "header": ["header"], "resource": ["resource_attribute"]}
    times: dict[str, list[float]] = {m: [] for m in inputs}
    for _ in range(args.repeat):  # alternated, so a burst of load hits every mode alike
        for mode, bodies in inputs.items():
            cfg = TenancyConfig.model_validate({"sources": sources[mode], "limits": limits})
            times[mode].append(one_pass(bodies, mode, Tenancy(cfg)))
    spans = args.requests * args.spans
    base = statistics.median(times["baseline"])
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}, {os.cpu_count()} cores")
    print(f"{args.requests} requests x {args.spans} spans, median of {args.repeat} passes")
    print(f"{'mode':<10} {'CPU s':>7} {'spans/CPU-s':>12} {'ratio':>6}")
    for mode, values in times.items():
        seconds = statistics.median(values)
        print(f"{mode:<10} {seconds:>7.3f} {spans / seconds:>12,.0f} {base / seconds:>6.2f}")


if __name__ == "__main__":
    main()
