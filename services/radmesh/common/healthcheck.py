"""``python -m radmesh.common.healthcheck``: exit 0 when a service's grpc.health.v1 says SERVING.

    python -m radmesh.common.healthcheck                      # the service this container runs
    python -m radmesh.common.healthcheck --target HOST:PORT [--service radmesh.v1.TextService]

The container image's HEALTHCHECK. Without ``--target`` it asks 127.0.0.1 on
``RADMESH_PORT`` when set (the variable ``radmesh serve`` reads for ``--port``), else on
the port that the command of PID 1 (``radmesh serve NAME [--port N]``) listens on, so
one image serves every service of the table without a healthcheck of its own each.
Exit 1: not SERVING or no answer; 2: no target could be worked out.
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


def check(target: str, service: str = "", timeout_s: float = 3.0) -> str:
    """The health status name at ``target`` (``SERVING``, ``NOT_SERVING``, ...) or the RPC error's code name."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
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
    args = p.parse_args(argv)
    target = args.target or default_target()
    if not target:
        print("healthcheck: no target: pass --target or set RADMESH_PORT", file=sys.stderr)
        return 2
    status = check(target, args.service, args.timeout_s)
    if status != "SERVING":
        print(f"healthcheck: {target}: {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
