"""``python -m radmesh.common.healthcheck``: exit 0 when a service's grpc.health.v1 says SERVING.

    python -m radmesh.common.healthcheck                      # the service this container runs
    python -m radmesh.common.healthcheck --target HOST:PORT [--service radmesh.v1.TextService]

The container image's HEALTHCHECK. Without ``--target`` it asks 127.0.0.1 on
``RADMESH_PORT`` when set (the variable ``radmesh serve`` reads for ``--port``), else on
the port that the command of PID 1 (``radmesh serve NAME [--port N]``) listens on, so
one image serves every service of the table without a healthcheck of its own each.
Over TLS (the kubelet's ``grpc:`` probe speaks plaintext only, so a TLS mesh probes with
this as an exec probe) it takes the client options of every radmesh caller, ``--tls-ca``,
``--tls-cert``, ``--tls-key`` (``RADMESH_TLS_CA``, ``RADMESH_TLS_CERT``, ``RADMESH_TLS_KEY``:
a service container already has them), and ``--tls-server-name`` (``RADMESH_TLS_SERVER_NAME``)
for the name the certificate is issued to when it does not cover 127.0.0.1. Health needs no
bearer token.
Exit 1: not SERVING or no answer; 2: no target could be worked out, or bad TLS files.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def port_of_command(argv: list[str]) -> int | None:
    """The gRPC port of ``... serve NAME [--port N | --port=N] ...``, or None when it is not such a command."""
    from radmesh.services import SERVICES

    names = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "serve"]
    if not names or names[0] not in SERVICES:
        return None
    for i, arg in enumerate(argv):
        if arg == "--port" and i + 1 < len(argv) and argv[i + 1].isdigit():
            return int(argv[i + 1])
        if arg.startswith("--port=") and arg[7:].isdigit():
            return int(arg[7:])
    return SERVICES[names[0]].port


def default_target(proc_cmdline: Path = Path("/proc/1/cmdline")) -> str | None:
    port = os.environ.get("RADMESH_PORT", "")
    if port.isdigit():
        return f"127.0.0.1:{port}"
    try:
        argv = proc_cmdline.read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    found = port_of_command([a for a in argv if a])
    return f"127.0.0.1:{found}" if found else None


def check(target: str, service: str = "", timeout_s: float = 3.0, security=None, server_name: str = "") -> str:
    """The health status name at ``target`` (``SERVING``, ``NOT_SERVING``, ...) or the RPC error's code name.

    ``security``: a :class:`radmesh.common.security.ClientSecurity` for TLS (None: plaintext)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from radmesh.common.security import ClientSecurity, secure_channel

    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    with secure_channel(target, security or ClientSecurity(), options) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                              timeout=timeout_s)
        except grpc.RpcError as e:
            return e.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m radmesh.common.healthcheck", description=__doc__.split("\n")[0])
    p.add_argument("--target", help="HOST:PORT (default: 127.0.0.1 on RADMESH_PORT or PID 1's serve port)")
    p.add_argument("--service", default="", help="proto service name to ask about ('' = the whole server)")
    p.add_argument("--timeout-s", type=float, default=3.0)
    from radmesh.common.config import add_env_argument
    from radmesh.common.errors import RadmeshError
    from radmesh.common.security import load_client

    add_env_argument(p, "--tls-ca", help="CA (PEM) of the service's certificate: ask over TLS")
    add_env_argument(p, "--tls-cert", help="client certificate (PEM), for a service that requires one")
    add_env_argument(p, "--tls-key", help="private key (PEM) of --tls-cert")
    add_env_argument(p, "--tls-server-name", help="name to verify the certificate against instead of the "
                                                  "target's host")
    args = p.parse_args(argv)
    try:
        # cert and key without a CA: the service container's own server certificate, plaintext probe
        security = load_client(args.tls_ca, args.tls_cert, args.tls_key, serving=True)
    except RadmeshError as e:
        print(f"healthcheck: {e}", file=sys.stderr)
        return 2
    target = args.target or default_target()
    if not target:
        print("healthcheck: no target: pass --target or set RADMESH_PORT", file=sys.stderr)
        return 2
    status = check(target, args.service, args.timeout_s, security, args.tls_server_name or "")
    if status != "SERVING":
        print(f"healthcheck: {target}: {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
