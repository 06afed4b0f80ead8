"""The ``otlp`` source: an OpenTelemetry receiver (OTLP/gRPC and OTLP/HTTP) as a pipeline
source, running until the run is stopped.

Every accepted request becomes one batch of the telemetry layout
(:mod:`quiver.ingest.arrow_layout`), written and ``fsync``'d to the spool
(:mod:`quiver.ingest.spool`) before the client is answered. On the first SIGINT / SIGTERM the
receivers stop accepting, requests in flight finish, everything accepted is handed on, and the
sinks commit; then the spool is emptied. If the process dies instead (SIGKILL, a crash, a
failed sink), what was accepted stays in the spool and the next run on it sends it on first.

With ``commit_every`` / ``commit_seconds`` the run commits in checkpoints
(:class:`~quiver.pipeline.component.Checkpointing`): the batches end at each checkpoint while
the receivers keep accepting, the sinks commit, and the spool drops what they committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator, Callable

import pyarrow as pa

from quiver.ingest.access import TLS_FIX, TlsConfig
from quiver.ingest.intake import Intake
from quiver.ingest.listener import BindProblem, listen_error, open_listener
from quiver.ingest.otlp.config import OtlpSourceConfig, split_endpoint
from quiver.ingest.otlp.grpc import GrpcReceiver
from quiver.ingest.otlp.http import HttpReceiver, otlp_http_app
from quiver.ingest.spool import Spool
from quiver.ingest.tenancy import Tenancy, with_tenant_column
from quiver.pipeline.component import (
    Acknowledging,
    Checking,
    Checkpointing,
    Draining,
    Listening,
    RunContext,
    source,
)
from quiver.runtime.errors import ErrorDetail
from quiver.runtime.metrics import expose
from quiver.runtime.wording import plural

__all__ = ["OtlpSource"]


@source("otlp", config=OtlpSourceConfig)
class OtlpSource(Acknowledging, Checking, Draining, Checkpointing, Listening):
    """OTLP traces, metrics and logs received over gRPC and/or HTTP until stopped."""

    def __init__(self, cfg: OtlpSourceConfig) -> None:
        self.cfg = cfg
        self.intake: Intake | None = None
        self.grpc: GrpcReceiver | None = None
        self.http: HttpReceiver | None = None
        self.grpc_port: int | None = None  # the ports bound (an endpoint may say :0)
        self.http_port: int | None = None
        self._spool: Spool | None = None
        self._stop_requested = False
        self._ended = False  # the input has ended (no checkpoint follows)
        self._checkpointing = False  # the engine runs this source in checkpoints
        self.tenancy = Tenancy(cfg.tenancy) if cfg.tenancy is not None else None
        self._withdraw_metrics: list[Callable[[], None]] = []
        self._listening = False  # the receivers are started and no stop was asked for

    # ------------------------------------------------------------------ hooks

    def _resolve_paths(self, base_dir: str) -> None:
        """TLS files named relative to the pipeline file's directory."""
        update = {}
        for name in ("grpc", "http"):
            listener = getattr(self.cfg, name)
            if listener is not None and listener.tls is not None:
                update[name] = listener.model_copy(update={"tls": listener.tls.resolved(base_dir)})
        self.cfg = self.cfg.model_copy(update=update)

    def check(self, ctx: RunContext) -> list[ErrorDetail]:
        self._resolve_paths(ctx.base_dir)
        problems = []
        for name in ("grpc", "http"):
            listener = getattr(self.cfg, name)
            if listener is not None and listener.tls is not None:
                for where, problem in listener.tls.check_files(f"otlp.{name}"):
                    problems.append(ErrorDetail(problem, where, TLS_FIX))
        return problems

    @property
    def listening(self) -> bool:
        return self._listening

    def drain(self) -> None:
        self._stop_requested = True
        self._listening = False
        if self.intake is not None:
            self.intake.stop()

    def checkpoints(self) -> bool:
        """Whether the run commits in checkpoints; asked by the engine only when it will run
        this source checkpoint after checkpoint (otherwise, in a dry run or beside another
        source, the batches go on until the receiver is stopped)."""
        self._checkpointing = self.cfg.checkpoints
        return self._checkpointing

    def more(self) -> bool:
        return not self._ended

    async def commit(self) -> None:
        if self.intake is not None:
            await self.intake.commit()
        if self._ended:
            self._close_spool()

    async def abort(self) -> None:
        self._close_spool()  # what was not committed stays in the spool for the next run

    def _close_spool(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None

    # ------------------------------------------------------------------ batches

    def spool_path(self, ctx: RunContext) -> str:
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", ctx.pipeline).strip(".") or "pipeline"
        default = os.path.join(".quiver", "spool", name, "otlp")
        path = self.cfg.spool.path or default
        return os.path.join(ctx.base_dir, path)

    async def batches(self, ctx: RunContext) -> AsyncIterator[pa.RecordBatch]:
        """What was received, until stopped; or until the next checkpoint (then called
        again for the one after, the receivers listening all along)."""
        cfg = self.cfg
        try:
            if self.intake is None:
                async for batch in self._open(ctx):
                    yield batch
            intake = self.intake
            assert intake is not None
            limits = (cfg.commit_every, cfg.commit_seconds) if self._checkpointing else (None, None)
            async for batch in intake.arriving(count=limits[0], seconds=limits[1]):
                yield batch
            if not intake.stopping:
                return  # a checkpoint: the receivers go on accepting into the spool
            await self._stop_servers()
            for batch in intake.drain():
                yield batch
            self._ended = True
            ctx.log(_received(intake), "notice")
            if intake.rejected_items:
                ctx.log(
                    f"OTLP receivers refused {intake.rejected_items} item(s) with impossible ids, "
                    "times or counts past what the rows hold, or no metric name (answered as "
                    "partial_success)",
                    "warning",
                )
        except BaseException:
            self._ended = True
            with contextlib.suppress(Exception):
                await self._stop_servers()
            raise

    async def _open(self, ctx: RunContext) -> AsyncIterator[pa.RecordBatch]:
        """Open the spool, hand on what an earlier run left in it, then start listening."""
        self._resolve_paths(ctx.base_dir)
        cfg = self.cfg
        spool = Spool(
            self.spool_path(ctx),
            max_bytes=cfg.spool.max_bytes,
            segment_bytes=cfg.spool.segment_bytes,
            fsync=cfg.spool.fsync,
            compression=cfg.spool.compression,
        )
        await asyncio.to_thread(spool.open)
        self._spool = spool
        intake = self.intake = Intake(
            spool,
            max_queued_batches=cfg.max_queued_batches,
            retry_after=cfg.retry_after_seconds,
        )
        if self._stop_requested:
            intake.stop()
        async for batch in intake.replayed():
            yield with_tenant_column(batch)  # spooled by an older version, maybe
        await self._start(ctx)

    async def _start(self, ctx: RunContext) -> None:
        cfg = self.cfg
        assert self.intake is not None
        if not self._withdraw_metrics:
            from quiver.ingest.receiver_metrics import ReceiverMetrics

            metrics = ReceiverMetrics(self.intake, ctx.pipeline, "otlp")
            self._withdraw_metrics.append(expose(metrics.registry))
            if self.tenancy is not None:
                self._withdraw_metrics.append(expose(self.tenancy.metrics.registry))
        if cfg.grpc is not None:
            self.grpc = GrpcReceiver(
                self.intake, cfg.grpc, cfg.auth, cfg.signals, cfg.arrow, self.tenancy
            )
            port = self.grpc.bind()
            self.grpc_port = port
            await self.grpc.start()
            name = "OTLP/gRPC and OTAP" if cfg.arrow is not None else "OTLP/gRPC"
            ctx.log(_listening(name, cfg.grpc.endpoint, port, cfg.grpc.tls), "notice")
        if cfg.http is not None:
            host, port = split_endpoint(cfg.http.endpoint)
            sock = open_listener(host, port)
            if isinstance(sock, BindProblem):
                raise listen_error(
                    "OTLP/HTTP", cfg.http.endpoint, sock, "source otlp.http.endpoint"
                )
            self.http_port = sock.getsockname()[1]
            app = otlp_http_app(self.intake, cfg.http, cfg.auth, cfg.signals, self.tenancy)
            self.http = HttpReceiver(app, cfg.http, sock, ctx.log)
            await self.http.start()
            ctx.log(
                _listening("OTLP/HTTP", cfg.http.endpoint, self.http_port, cfg.http.tls), "notice"
            )
        self._listening = not self._stop_requested

    async def _stop_servers(self) -> None:
        seconds = self.cfg.stop_seconds
        grpc_server, http_server = self.grpc, self.http
        self.grpc = self.http = None
        self._listening = False
        for withdraw in self._withdraw_metrics:
            withdraw()
        self._withdraw_metrics = []
        stops = [s.stop(seconds) for s in (grpc_server, http_server) if s is not None]
        if stops:
            await asyncio.gather(*stops)


def _listening(name: str, endpoint: str, port: int, tls: TlsConfig | None) -> str:
    """The line saying where a receiver listens, as the Collector says it at start."""
    host, _ = split_endpoint(endpoint)
    shown = f"[{host}]" if ":" in host else host
    if tls is None:
        security = "plaintext"
    elif tls.client_ca_file:
        security = "TLS, client certificates required"
    else:
        security = "TLS"
    scheme = "" if name != "OTLP/HTTP" else ("https://" if tls is not None else "http://")
    return f"{name} receiver listening on {scheme}{shown}:{port} ({security})"


def _received(intake: Intake) -> str:
    """What the receivers took, said when they stop."""
    refused = sum(intake.refused_requests.values())
    line = (
        f"OTLP receivers stopped: received {plural(intake.accepted_rows, 'item')} "
        f"(spans, data points, log records) in {plural(intake.accepted_batches, 'request')}"
    )
    if intake.rejected_items or refused:
        line += (
            f"; refused {plural(intake.rejected_items, 'item')} one by one and "
            f"{plural(refused, 'request')} whole (backpressure, stopping)"
        )
    return line
