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


def serve_config_from_args(args: argparse.Namespace, option_names: tuple[str, ...] = ()) -> ServeConfig:
    cfg = ServeConfig(
        options={name: getattr(args, name) for name in option_names},
        host=args.host, port=args.port, metrics_port=args.metrics_port, max_message_mb=args.max_message_mb,
        max_volume_mb=args.max_volume_mb, workers=args.workers, drain_s=args.drain_s,
        max_request_s=args.max_request_s, log_level=args.log_level.upper(),
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
