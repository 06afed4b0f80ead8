"""What both OTLP receivers do with a decoded export request: convert, store, answer."""

from __future__ import annotations

from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2, status_pb2

from quiver.ingest.arrow_layout import Signal
from quiver.ingest.intake import Intake
from quiver.ingest.otlp.convert import Request, convert_request
from quiver.ingest.otlp.decode import RESPONSE_TYPES
from quiver.ingest.tenancy import TenantIntake

__all__ = ["bad_request_status", "export", "retry_status"]

_REJECTED_FIELD = {
    "traces": "rejected_spans",
    "metrics": "rejected_data_points",
    "logs": "rejected_log_records",
}


async def export(intake: Intake | TenantIntake, signal: Signal, request: Request) -> Any:
    """Store what ``request`` holds (durably, see :class:`Intake`) and return the
    Export*ServiceResponse, with ``partial_success`` when items were rejected.

    Raises :class:`~quiver.ingest.intake.BackpressureError` when the data cannot be taken now
    (:class:`~quiver.ingest.tenancy.TenantLimitError`: its tenant is over its limit), and
    :class:`~quiver.ingest.tenancy.TenantError` when its tenant is refused.
    """
    conversion = convert_request(signal, request)
    if conversion.batch is not None:
        await intake.accept(conversion.batch)
    response = RESPONSE_TYPES[signal]()
    if conversion.rejected:
        intake.rejected_items += conversion.rejected
        partial = response.partial_success
        setattr(partial, _REJECTED_FIELD[signal], conversion.rejected)
        partial.error_message = conversion.error_message
    return response


def bad_request_status(code: int, message: str) -> status_pb2.Status:
    """A google.rpc.Status for data that cannot be taken, with a BadRequestError detail."""
    status = status_pb2.Status(code=code, message=message)
    detail = error_details_pb2.BadRequest()
    violation = detail.field_violations.add()
    violation.field = "body"
    violation.description = message
    status.details.add().Pack(detail)
    return status


def retry_status(code: int, message: str, seconds: float) -> status_pb2.Status:
    """A google.rpc.Status telling the client to retry after ``seconds`` (RetryInfo)."""
    status = status_pb2.Status(code=code, message=message)
    whole = int(seconds)
    info = error_details_pb2.RetryInfo(
        retry_delay=Duration(seconds=whole, nanos=int((seconds - whole) * 1e9))
    )
    status.details.add().Pack(info)
    return status
