"""Client side of the mesh: channels with the same limits as servers, TLS and the
bearer token as this process is configured (``security.py``), and gRPC failures
turned back into radmesh errors (one readable line in the CLI)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from radmesh.common.errors import (DeadlineExceededError, FailedPreconditionError, InvalidInputError, NotFoundError,
                                   RadmeshError, ResourceExhaustedError, UnauthenticatedError, UnavailableError)
from radmesh.common.metrics import ANSWERED_KEY
from radmesh.common.security import ClientSecurity, client_security, secure_channel
from radmesh.common.server import grpc_options

_BY_CODE: dict[grpc.StatusCode, type[RadmeshError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidInputError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
}


@contextmanager
def channel(target: str, max_message_mb: int = 64, security: ClientSecurity | None = None) -> Iterator[grpc.Channel]:
    """``security``: None for this process's settings (``security.configure_client``)."""
    ch = secure_channel(target, security or client_security(), grpc_options(max_message_mb))
    try:
        yield ch
    finally:
        ch.close()


@contextmanager
def call_errors(target: str, service: str) -> Iterator[None]:
    """Re-raise a failed call as the radmesh error of its status code."""
    try:
        yield
    except grpc.RpcError as e:
        code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
        details = e.details() if hasattr(e, "details") else str(e)
        trailing = dict(e.trailing_metadata() or ()) if hasattr(e, "trailing_metadata") else {}
        if ANSWERED_KEY in trailing and code in _BY_CODE:
            pass  # the service itself answered with this status: its message says what and where
        elif code == grpc.StatusCode.UNAVAILABLE:
            details = f"{service} service at {target} is unavailable ({details})"
        elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
            details = f"{service} service at {target} did not answer within the deadline"
        if code == grpc.StatusCode.UNAUTHENTICATED:
            details = f"{service} service at {target} refused the call: {details} (see --auth-token-file)"
        err = _BY_CODE.get(code, RadmeshError)(details)
        if type(err) is RadmeshError:
            err = RadmeshError(f"{service} service failed with {code.name}: {details}")
        raise err from None


def wait_serving(target: str, timeout_s: float, service: str = "") -> None:
    """Block until grpc.health.v1 reports SERVING at ``target``, or raise UnavailableError."""
    import time

    from grpc_health.v1 import health_pb2, health_pb2_grpc

    end = time.monotonic() + timeout_s
    last = "no answer"
    with channel(target) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while time.monotonic() < end:
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2.0).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
            except grpc.RpcError as e:
                last = e.code().name
            time.sleep(0.2)
    raise UnavailableError(f"{target} did not become healthy within {timeout_s:.0f} s (last: {last})")
