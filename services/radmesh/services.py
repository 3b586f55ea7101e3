"""The services of the mesh, their default ports, and how to load each one.

``radmesh serve NAME`` and ``radmesh up`` read this table; the Helm chart uses
the same ports. A service's ``server.py`` exposes ``SPEC`` (a ServiceSpec).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from radmesh.common.errors import InvalidInputError
from radmesh.common.server import ServiceSpec


@dataclass(frozen=True)
class ServiceInfo:
    module: str        # module holding SPEC
    port: int          # default gRPC port
    metrics_port: int  # default Prometheus port
    help: str


SERVICES: dict[str, ServiceInfo] = {
    "measurement": ServiceInfo("radmesh.measurement.server", 50054, 9104,
                               "per-structure and per-lesion measurements of a label map"),
}


def load_spec(name: str) -> ServiceSpec:
    info = SERVICES.get(name)
    if info is None:
        raise InvalidInputError(f"no service named {name!r} (known: {', '.join(SERVICES)})")
    return importlib.import_module(info.module).SPEC
