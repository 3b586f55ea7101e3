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


def _segmentation_options(parser: argparse.ArgumentParser) -> tuple[str, ...]:
    import os

    from radmesh.common.config import add_env_argument, env_name

    add_env_argument(parser, "--triton-url", default="127.0.0.1:8001", help="Triton's gRPC HOST:PORT")
    add_env_argument(parser, "--triton-model", default="universal_seg",
                     help="Triton model (universal_seg on CPU, universal_seg_trt on GPU)")
    add_env_argument(parser, "--shared-memory", default="auto",
                     help="Triton system shared memory: on, off, or auto (on when Triton is on loopback)")
    add_env_argument(parser, "--text-url", default="127.0.0.1:50052", help="text service HOST:PORT (Parse, Encode)")
    add_env_argument(parser, "--weights", help="model weights whose classes and class table the model has "
                                               "(default: the shipped reference weights)")
    env = env_name("--embedded")
    parser.add_argument("--embedded", action="store_true",
                        default=os.environ.get(env, "").lower() in ("1", "true", "yes", "on"),
                        help=f"run the model in-process with ONNX Runtime instead of Triton (env {env}=1)")
    return ("triton_url", "triton_model", "shared_memory", "text_url", "weights", "embedded")


def _assistant_options(parser: argparse.ArgumentParser) -> tuple[str, ...]:
    from radmesh.assistant.sessions import DEFAULT_IDLE_S, DEFAULT_MAX_SESSIONS
    from radmesh.common.config import add_env_argument

    for name in ("text", "segmentation", "measurement", "report"):
        add_env_argument(parser, f"--{name}-url", default=f"127.0.0.1:{SERVICES[name].port}",
                         help=f"{name} service HOST:PORT")
    add_env_argument(parser, "--session-idle-s", type=float, default=DEFAULT_IDLE_S,
                     help="seconds without a question after which a session and its files are removed")
    add_env_argument(parser, "--max-sessions", type=int, default=DEFAULT_MAX_SESSIONS,
                     help="sessions held at once; more are RESOURCE_EXHAUSTED")
    add_env_argument(parser, "--session-dir", help="folder for the sessions' files (default: a temporary folder, "
                                                   "removed at exit)")
    return ("text_url", "segmentation_url", "measurement_url", "report_url", "session_idle_s", "max_sessions",
            "session_dir")


SERVICES: dict[str, ServiceInfo] = {
    "measurement": ServiceInfo("radmesh.measurement.server", 50054, 9104,
                               "per-structure and per-lesion measurements of a label map"),
    "text": ServiceInfo("radmesh.text.server", 50052, 9102,
                        "understand clinicians' sentences (Parse) and embed class prompts (Encode)",
                        add_options=_text_options),
    "segmentation": ServiceInfo("radmesh.segmentation.server", 50053, 9103,
                                "segment a CT from targets or a prompt with the Universal Model on Triton",
                                add_options=_segmentation_options),
    "report": ServiceInfo("radmesh.report.server", 50055, 9105,
                          "draft structured reports (text, JSON) with DICOM SEG, DICOM SR and NIfTI"),
    # last: it calls every service above (radmesh up starts them in this order)
    "assistant": ServiceInfo("radmesh.assistant.server", 50051, 9101,
                             "answer clinicians' questions about a study by planning calls to the other services",
                             add_options=_assistant_options),
}


def load_spec(name: str) -> ServiceSpec:
    info = SERVICES.get(name)
    if info is None:
        raise InvalidInputError(f"no service named {name!r} (known: {', '.join(SERVICES)})")
    return importlib.import_module(info.module).SPEC
