"""The services of the mesh, their default ports, and how to load each one.

``radmesh serve NAME`` and ``radmesh up`` read this table; the Helm chart uses
the same ports. A service's ``server.py`` exposes ``SPEC`` (a ServiceSpec).
"""

from __future__ import annotations

import importlib
import argparse
from collections.abc import Callable
from dataclasses import dataclass

from radmesh.common.errors import InvalidInputError
from radmesh.common.server import ServiceSpec


@dataclass(frozen=True)
class ServiceInfo:
    module: str        # module holding SPEC
    port: int          # default gRPC port
    metrics_port: int  # default Prometheus port
    help: str
    # Adds the service's own flags (each with its RADMESH_* variable); returns their dest names.
    add_options: Callable[[argparse.ArgumentParser], tuple[str, ...]] | None = None


def _text_options(parser: argparse.ArgumentParser) -> tuple[str, ...]:
    from radmesh.common.config import add_env_argument

    add_env_argument(parser, "--clip-weights", help="open_clip ViT-B/32 weights file for the clip backend")
    add_env_argument(parser, "--class-table", help="precomputed K×E class embedding table for the table backend")
    return ("clip_weights", "class_table")


SERVICES: dict[str, ServiceInfo] = {
    "measurement": ServiceInfo("radmesh.measurement.server", 50054, 9104,
                               "per-structure and per-lesion measurements of a label map"),
    "text": ServiceInfo("radmesh.text.server", 50052, 9102,
                        "understand clinicians' sentences (Parse) and embed class prompts (Encode)",
                        add_options=_text_options),
}


def load_spec(name: str) -> ServiceSpec:
    info = SERVICES.get(name)
    if info is None:
        raise InvalidInputError(f"no service named {name!r} (known: {', '.join(SERVICES)})")
    return importlib.import_module(info.module).SPEC
