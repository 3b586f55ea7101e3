"""Prometheus metrics for every RPC, recorded by one server interceptor.

- ``radmesh_grpc_requests_total{service,method,code}``: finished RPCs by status code;
- ``radmesh_grpc_request_duration_seconds{service,method}``: latency histogram,
  buckets from 5 ms to 10 min (a CPU segmentation takes minutes);
- ``radmesh_grpc_in_flight_requests{service,method}``: RPCs running now.

The same interceptor maps radmesh errors to status codes (see ``errors.py``), so
a servicer only raises.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator

import grpc
from prometheus_client import Counter, Gauge, Histogram

from radmesh.common.errors import RadmeshError

log = logging.getLogger("radmesh.rpc")

REQUESTS = Counter("radmesh_grpc_requests", "Finished RPCs by status code", ["service", "method", "code"])
LATENCY = Histogram(
    "radmesh_grpc_request_duration_seconds", "RPC latency, seconds", ["service", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
# Trailing metadata key set on the statuses radmesh servers answer with (see grpcclient.call_errors).
ANSWERED_KEY = "radmesh-answered"
IN_FLIGHT = Gauge("radmesh_grpc_in_flight_requests", "RPCs in progress", ["service", "method"])


def _split(full_method: str) -> tuple[str, str]:
    # "/radmesh.v1.MeasurementService/Measure" → ("radmesh.v1.MeasurementService", "Measure")
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service, method


class _Call:
    """Bookkeeping of one RPC: start, status, finish (exactly once)."""

    def __init__(self, full_method: str):
        self.service, self.method = _split(full_method)
        self.start = time.perf_counter()
        self.done = False
        IN_FLIGHT.labels(self.service, self.method).inc()

    def finish(self, context: grpc.ServicerContext) -> None:
        if self.done:
            return
        self.done = True
        code = context.code() if hasattr(context, "code") else None
        name = (code or grpc.StatusCode.OK).name
        elapsed = time.perf_counter() - self.start
        IN_FLIGHT.labels(self.service, self.method).dec()
        REQUESTS.labels(self.service, self.method, name).inc()
        LATENCY.labels(self.service, self.method).observe(elapsed)
        log.info("rpc finished", extra={"service": self.service, "method": self.method, "code": name,
                                         "duration_s": round(elapsed, 4)})


def _abort_for(exc: BaseException, context: grpc.ServicerContext) -> None:
    """Turn an exception escaping a servicer into a status (context.abort raises)."""
    if isinstance(exc, RadmeshError):
        # tells the caller the status is this server's answer, not a transport failure on the way
        context.set_trailing_metadata(((ANSWERED_KEY, "1"),))
        context.abort(exc.code, str(exc))
    error_id = uuid.uuid4().hex[:12]
    log.error("unhandled error", exc_info=exc, extra={"error_id": error_id})
    context.abort(grpc.StatusCode.INTERNAL, f"internal error {error_id}; the server log has details")


class ServerInterceptor(grpc.ServerInterceptor):
    def intercept_service(self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        full_method = handler_call_details.method
        if full_method.startswith("/grpc."):  # health and reflection are not product traffic
            return handler

        def wrap_unary_response(behavior):
            def wrapped(request, context):
                call = _Call(full_method)
                try:
                    return behavior(request, context)
                except grpc.RpcError:
                    raise  # context.abort() already set the status
                except BaseException as exc:  # noqa: BLE001 - mapped to a status here
                    _abort_for(exc, context)
                finally:
                    call.finish(context)
            return wrapped

        def wrap_stream_response(behavior):
            def wrapped(request, context) -> Iterator:
                call = _Call(full_method)
                try:
                    yield from behavior(request, context)
                except grpc.RpcError:
                    raise
                except GeneratorExit:
                    raise  # client went away; grpc sets CANCELLED
                except BaseException as exc:  # noqa: BLE001
                    _abort_for(exc, context)
                finally:
                    call.finish(context)
            return wrapped

        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                wrap_unary_response(handler.unary_unary), handler.request_deserializer, handler.response_serializer)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                wrap_unary_response(handler.stream_unary), handler.request_deserializer, handler.response_serializer)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                wrap_stream_response(handler.unary_stream), handler.request_deserializer, handler.response_serializer)
        return grpc.stream_stream_rpc_method_handler(
            wrap_stream_response(handler.stream_stream), handler.request_deserializer, handler.response_serializer)
