"""Service configuration from flags, each also settable as a ``RADMESH_*`` variable.

``radmesh serve NAME --port 50051`` and ``RADMESH_PORT=50051 radmesh serve NAME``
are the same; a flag given on the command line wins over the environment. The
Helm chart sets the variables, people type the flags.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from radmesh.common.errors import InvalidInputError

ENV_PREFIX = "RADMESH_"


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 50051
    metrics_port: int = 9090            # 0 disables the metrics endpoint
    max_message_mb: int = 64            # gRPC send/receive limit per message, MiB
    max_volume_mb: int = 2048           # largest volume a stream may carry, MiB
    workers: int = 8                    # concurrent RPCs
    drain_s: float = 20.0               # grace period for in-flight RPCs on SIGTERM, seconds
    max_request_s: float = 600.0        # budget of an RPC whose client set no deadline, seconds
    log_level: str = "INFO"
    # TLS and the bearer token: file paths, read and checked by radmesh.common.security at startup
    tls_cert: str | None = None         # certificate chain served (PEM); also the client certificate for mTLS
    tls_key: str | None = None          # its private key (PEM, unencrypted)
    tls_client_ca: str | None = None    # require client certificates signed by this CA
    tls_ca: str | None = None           # calls to other services go over TLS, verified against this CA
    auth_token_file: str | None = None  # require this bearer token; also sent on calls to other services
    options: Mapping[str, Any] = field(default_factory=dict)  # service-specific flags, by dest name


def env_name(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


def add_env_argument(parser: argparse.ArgumentParser, flag: str, *, type=str, default=None, help: str = "",
                     env: str | None = None) -> None:
    """Add ``--flag`` whose default comes from ``RADMESH_FLAG`` (or ``env``, when given) when set."""
    name = env or env_name(flag)
    raw = os.environ.get(name)
    if raw is not None and raw != "":
        try:
            default = type(raw)
        except ValueError:
            raise InvalidInputError(f"environment variable {name}={raw!r} is not a valid {type.__name__}") from None
    parser.add_argument(flag, type=type, default=default, help=f"{help} (env {name}; default {default})")


def add_serve_arguments(parser: argparse.ArgumentParser, default_port: int, default_metrics_port: int) -> None:
    d = ServeConfig()
    add_env_argument(parser, "--host", default=d.host, help="address to listen on ('0.0.0.0' in a pod)")
    add_env_argument(parser, "--port", type=int, default=default_port, help="gRPC port")
    add_env_argument(parser, "--metrics-port", type=int, default=default_metrics_port,
                     help="Prometheus /metrics HTTP port, 0 to disable")
    add_env_argument(parser, "--max-message-mb", type=int, default=d.max_message_mb, help="gRPC message limit, MiB")
    add_env_argument(parser, "--max-volume-mb", type=int, default=d.max_volume_mb, help="largest accepted volume, MiB")
    add_env_argument(parser, "--workers", type=int, default=d.workers, help="concurrent RPCs")
    add_env_argument(parser, "--drain-s", type=float, default=d.drain_s, help="grace for in-flight RPCs on SIGTERM, s")
    add_env_argument(parser, "--max-request-s", type=float, default=d.max_request_s,
                     help="time budget of an RPC without a client deadline, s")
    add_env_argument(parser, "--log-level", default=d.log_level, help="DEBUG, INFO, WARNING or ERROR")
    add_env_argument(parser, "--tls-cert", help="certificate chain (PEM) the gRPC port serves TLS with; with "
                                                "--tls-ca also this process's client certificate")
    add_env_argument(parser, "--tls-key", help="private key (PEM) of --tls-cert")
    add_env_argument(parser, "--tls-client-ca", help="require client certificates signed by this CA (mutual TLS)")
    add_env_argument(parser, "--tls-ca", help="CA (PEM) of the services this one calls: calls go over TLS")
    add_env_argument(parser, "--auth-token-file", help="file holding the bearer token every RPC must carry "
                                                       "(health and reflection excepted); sent on this "
                                                       "service's own calls too")


def add_client_security_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a process that only calls (the CLI's --server, the UI, the healthcheck)."""
    add_env_argument(parser, "--tls-ca", help="CA (PEM) that signed the server's certificate: connect over TLS")
    add_env_argument(parser, "--tls-cert", help="client certificate (PEM) for mutual TLS; needs --tls-ca")
    add_env_argument(parser, "--tls-key", help="private key (PEM) of --tls-cert")
    add_env_argument(parser, "--auth-token-file", help="file holding the bearer token sent with every call")


def serve_config_from_args(args: argparse.Namespace, option_names: tuple[str, ...] = ()) -> ServeConfig:
    cfg = ServeConfig(
        options={name: getattr(args, name) for name in option_names},
        host=args.host, port=args.port, metrics_port=args.metrics_port, max_message_mb=args.max_message_mb,
        max_volume_mb=args.max_volume_mb, workers=args.workers, drain_s=args.drain_s,
        max_request_s=args.max_request_s, log_level=args.log_level.upper(),
        tls_cert=args.tls_cert, tls_key=args.tls_key, tls_client_ca=args.tls_client_ca, tls_ca=args.tls_ca,
        auth_token_file=args.auth_token_file,
    )
    for name, value, low in (("port", cfg.port, 1), ("metrics-port", cfg.metrics_port, 0)):
        if not low <= value <= 65535:
            raise InvalidInputError(f"--{name} {value} is not a TCP port")
    for name, value in (("max-message-mb", cfg.max_message_mb), ("max-volume-mb", cfg.max_volume_mb),
                        ("workers", cfg.workers), ("max-request-s", cfg.max_request_s)):
        if value <= 0:
            raise InvalidInputError(f"--{name} must be positive, got {value}")
    if cfg.drain_s < 0:
        raise InvalidInputError(f"--drain-s must not be negative, got {cfg.drain_s}")
    if cfg.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise InvalidInputError(f"--log-level {cfg.log_level} is not DEBUG, INFO, WARNING or ERROR")
    return cfg
