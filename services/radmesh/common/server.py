"""The one bootstrap every radmesh service runs under.

``run(spec, cfg)`` starts a gRPC server with raised message limits, the metrics
and error interceptor, TLS / mTLS and the bearer-token check when configured (see
``security.py``), grpc.health.v1 and reflection, a Prometheus endpoint, JSON
logs, and a graceful drain: on SIGTERM the health status turns NOT_SERVING (so
Kubernetes stops routing), new RPCs are refused, in-flight ones get ``drain_s``
seconds to finish, then the process exits 0.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from radmesh import __version__
from radmesh.common.config import ServeConfig
from radmesh.common.errors import CancelledError, DeadlineExceededError, UnavailableError
from radmesh.common.jsonlog import setup_logging
from radmesh.common.metrics import ServerInterceptor
from radmesh.common.security import configure_client, load_client, load_server

log = logging.getLogger("radmesh.server")


@dataclass(frozen=True)
class ServiceSpec:
    """What a service's ``server.py`` hands to the bootstrap.

    ``register(server, cfg)`` adds the servicer and may return a cleanup to run once the
    server has drained (e.g. removing the files of what it held); ``full_names`` are the
    proto service names announced by health and reflection.
    """

    name: str
    full_names: tuple[str, ...]
    register: Callable[[grpc.Server, ServeConfig], Callable[[], None] | None]


def grpc_options(max_message_mb: int) -> list[tuple[str, int]]:
    limit = max_message_mb << 20
    return [
        ("grpc.max_send_message_length", limit),
        ("grpc.max_receive_message_length", limit),
        ("grpc.so_reuseport", 0),  # a second server on a busy port must fail, not share it
    ]


class RunningServer:
    """A started service: the gRPC server, its health servicer and metrics endpoint."""

    def __init__(self, spec: ServiceSpec, cfg: ServeConfig):
        self.spec, self.cfg = spec, cfg
        # before register(): a bad certificate or token file fails in a second, not after loading a model
        security = load_server(cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca, cfg.auth_token_file)
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=cfg.workers, thread_name_prefix=f"{spec.name}-rpc"),
            # the token check inside the metrics interceptor, so refused calls are counted by code
            interceptors=[ServerInterceptor(), *security.interceptors()],
            options=grpc_options(cfg.max_message_mb),
            maximum_concurrent_rpcs=cfg.workers * 4,
        )
        self._cleanup = spec.register(self.server, cfg)
        self.health = health.HealthServicer(experimental_non_blocking=True)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (*spec.full_names, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
        )
        address = f"{cfg.host}:{cfg.port}"
        credentials = security.credentials()
        try:
            bound = self.server.add_insecure_port(address) if credentials is None else \
                self.server.add_secure_port(address, credentials)
        except RuntimeError:
            bound = 0
        if bound == 0:
            raise UnavailableError(f"cannot listen on {address} (port in use or address not local)")
        self.port = bound
        self._metrics_server = None
        if cfg.metrics_port:
            try:
                self._metrics_server, _ = start_http_server(cfg.metrics_port, addr=cfg.host)
            except OSError as e:
                raise UnavailableError(f"cannot serve metrics on {cfg.host}:{cfg.metrics_port} ({e.strerror})") from None
        self.server.start()
        self._set_status(health_pb2.HealthCheckResponse.SERVING)
        log.info("serving", extra={"service": spec.name, "host": cfg.host, "port": self.port,
                                   "metrics_port": cfg.metrics_port, "version": __version__,
                                   "tls": security.tls, "auth": "token" if security.token else "none"})

    def _set_status(self, status) -> None:
        self.health.set("", status)
        for name in self.spec.full_names:
            self.health.set(name, status)

    def drain(self) -> None:
        """Stop taking traffic, let in-flight RPCs finish within drain_s, stop."""
        self._set_status(health_pb2.HealthCheckResponse.NOT_SERVING)
        log.info("draining", extra={"service": self.spec.name, "drain_s": self.cfg.drain_s})
        self.server.stop(grace=self.cfg.drain_s).wait()
        if self._cleanup is not None:
            self._cleanup()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        log.info("stopped", extra={"service": self.spec.name})


def run(spec: ServiceSpec, cfg: ServeConfig) -> int:
    """Serve until SIGTERM or SIGINT, then drain. Returns the process exit code."""
    setup_logging(cfg.log_level)
    # every channel this process opens (to other services, to Triton) uses the same files
    configure_client(load_client(cfg.tls_ca, cfg.tls_cert, cfg.tls_key, cfg.auth_token_file, serving=True))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    running = RunningServer(spec, cfg)
    while not stop.wait(1.0):
        pass
    running.drain()
    return 0


def time_budget_s(context: grpc.ServicerContext, cfg: ServeConfig) -> float:
    """Seconds this RPC may still run: the client's deadline, else the server's budget."""
    remaining = context.time_remaining()
    return cfg.max_request_s if remaining is None else min(remaining, cfg.max_request_s)


class Deadline:
    """Checks, between stages of work, that the RPC still has time left."""

    def __init__(self, context: grpc.ServicerContext, cfg: ServeConfig):
        self._end = time.monotonic() + time_budget_s(context, cfg)
        self._context = context

    def check(self, stage: str) -> None:
        # radmesh errors, not context.abort(): the interceptor maps them to their status codes
        if time.monotonic() > self._end:
            raise DeadlineExceededError(f"deadline exceeded during {stage}")
        if not self._context.is_active():
            raise CancelledError(f"client cancelled during {stage}")
