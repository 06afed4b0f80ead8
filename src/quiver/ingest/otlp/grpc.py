"""The OTLP/gRPC receiver: the TraceService, MetricsService and LogsService ``Export`` calls.

Request messages are decoded here (not by grpc), so a malformed one is answered
INVALID_ARGUMENT with what is wrong. Status codes follow the OTLP specification:
INVALID_ARGUMENT for bad data (not retried), UNAUTHENTICATED without a valid key (or, with
tenancy, without a tenant), PERMISSION_DENIED for a tenant refused, UNIMPLEMENTED for a signal
the receiver does not take, RESOURCE_EXHAUSTED with a RetryInfo detail when too much waits or
the tenant is over its rate limit (retried after that delay), UNAVAILABLE with RetryInfo while
stopping or when the disk refuses a write. The RetryInfo is in the Status's details and, as
well, alone in the ``google.rpc.retryinfo-bin`` trailer, the one the Python SDK reads. Compression
(gzip) is grpc's own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import grpc.aio

from quiver.ingest.access import TLS_FIX, AuthConfig, admit_grpc_call, grpc_metadata
from quiver.ingest.arrow_layout import SIGNALS, Signal
from quiver.ingest.intake import BackpressureError, Intake, UnavailableError
from quiver.ingest.listener import BindProblem, bind_problem, listen_error
from quiver.ingest.otap.config import ArrowReceiverConfig
from quiver.ingest.otap.service import arrow_handlers
from quiver.ingest.otlp.config import GrpcReceiverConfig, split_endpoint
from quiver.ingest.otlp.decode import RESPONSE_TYPES, BadRequestError, decode_body
from quiver.ingest.otlp.export import bad_request_status, export, retry_status
from quiver.ingest.tenancy import Tenancy, TenantError, TenantIntake
from quiver.runtime.errors import ConfigError, ErrorDetail

__all__ = ["GrpcReceiver"]

_SERVICES: dict[Signal, str] = {
    "traces": "opentelemetry.proto.collector.trace.v1.TraceService",
    "metrics": "opentelemetry.proto.collector.metrics.v1.MetricsService",
    "logs": "opentelemetry.proto.collector.logs.v1.LogsService",
}
_DETAILS_KEY = "grpc-status-details-bin"
_RETRY_INFO_KEY = "google.rpc.retryinfo-bin"

Handler = Callable[[bytes, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]


def _handler(
    signal: Signal,
    intake: Intake,
    auth: AuthConfig | None,
    enabled: bool,
    tenancy: Tenancy | None,
) -> Handler:
    async def call(body: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        caller = await admit_grpc_call(context, auth, enabled, signal)
        try:
            taking: Intake | TenantIntake = intake
            if tenancy is not None:
                claim = tenancy.claim(caller, grpc_metadata(context))
                taking = TenantIntake(intake, tenancy, claim, signal)
            request = decode_body(signal, body, json=False)
            return await export(taking, signal, request)
        except TenantError as exc:
            await context.abort(grpc.StatusCode[exc.grpc_code], exc.message)
        except BadRequestError as exc:
            status = bad_request_status(grpc.StatusCode.INVALID_ARGUMENT.value[0], exc.message)
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                exc.message,
                ((_DETAILS_KEY, status.SerializeToString()),),
            )
        except BackpressureError as exc:
            code = (
                grpc.StatusCode.UNAVAILABLE
                if isinstance(exc, UnavailableError)
                else grpc.StatusCode.RESOURCE_EXHAUSTED
            )
            status = retry_status(code.value[0], exc.message, exc.retry_after)
            # the RetryInfo twice: in the Status, where the Go exporters and the Collector read
            # it, and alone under the key the Python SDK's exporters read (they ignore the other)
            info = status.details[0].value
            trailers = ((_DETAILS_KEY, status.SerializeToString()), (_RETRY_INFO_KEY, info))
            await context.abort(code, exc.message, trailers)

    return call


class GrpcReceiver:
    """A grpc.aio server with the three OTLP services (and with ``arrow``, the three OTAP
    ones)."""

    def __init__(
        self,
        intake: Intake,
        cfg: GrpcReceiverConfig,
        auth: AuthConfig | None,
        signals: list[Signal],
        arrow: ArrowReceiverConfig | None = None,
        tenancy: Tenancy | None = None,
    ) -> None:
        self.cfg = cfg
        self.server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", cfg.max_message_bytes),
                ("grpc.so_reuseport", 0),
            ]
        )
        for signal in SIGNALS:
            handler = grpc.unary_unary_rpc_method_handler(
                _handler(signal, intake, auth, signal in signals, tenancy),
                request_deserializer=None,
                response_serializer=RESPONSE_TYPES[signal].SerializeToString,
            )
            self.server.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(_SERVICES[signal], {"Export": handler}),)
            )
        if arrow is not None:
            self.server.add_generic_rpc_handlers(
                arrow_handlers(intake, arrow, auth, signals, tenancy)
            )

    def bind(self) -> int:
        """Listen on the endpoint; returns the port. A QuiverError names the endpoint and why
        it cannot be listened on (a port in use, one needing privileges, an address of another
        machine, a TLS file that does not load) rather than gRPC's bare "Failed to bind"."""
        endpoint = self.cfg.endpoint
        where = "source otlp.grpc.endpoint"
        host, port = split_endpoint(endpoint)
        problem = bind_problem(host, port)
        if problem is not None:
            raise listen_error(self.receiver, endpoint, problem, where)
        try:
            if self.cfg.tls is None:
                bound = int(self.server.add_insecure_port(endpoint))
            else:
                bound = int(self.server.add_secure_port(endpoint, self._credentials()))
        except RuntimeError:  # grpc says no more than "Failed to bind"
            bound = 0
        if not bound:
            problem = bind_problem(host, port) or BindProblem(
                "gRPC could not bind it", "choose another endpoint"
            )
            raise listen_error(self.receiver, endpoint, problem, where)
        return bound

    @property
    def receiver(self) -> str:
        return "OTLP/gRPC"

    def _credentials(self) -> grpc.ServerCredentials:
        tls = self.cfg.tls
        assert tls is not None
        problems = tls.check_files("otlp.grpc")
        if problems:
            raise ConfigError(
                [ErrorDetail(problem, f"source {where}", TLS_FIX) for where, problem in problems]
            )
        cert, key, ca = tls.read()
        return grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=ca, require_client_auth=ca is not None
        )

    async def start(self) -> None:
        await self.server.start()

    async def stop(self, seconds: float) -> None:
        """Stop accepting; calls in flight get up to ``seconds`` to finish."""
        await self.server.stop(seconds)
