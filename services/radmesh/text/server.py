"""gRPC adapter of the text service: TextService.Parse and TextService.Encode."""

from __future__ import annotations

import grpc

from radmesh.common.config import ServeConfig
from radmesh.common.errors import InvalidInputError
from radmesh.common.intent_wire import parse_to_proto
from radmesh.common.server import ServiceSpec
from radmesh.text.encoders import get_encoder
from radmesh.text.parse import Parser
from radmesh.v1 import text_pb2, text_pb2_grpc

SERVICE_NAME = text_pb2.DESCRIPTOR.services_by_name["TextService"].full_name
MAX_TEXTS = 1024  # one Encode call; the vocabulary has 32 classes, prompts are short


def encoder_options(backend: str, cfg: ServeConfig) -> dict[str, str]:
    """The configured weights for a backend (flags or RADMESH_CLIP_WEIGHTS / RADMESH_CLASS_TABLE)."""
    if backend == "clip" and cfg.options.get("clip_weights"):
        return {"clip_weights": cfg.options["clip_weights"]}
    if backend == "table" and cfg.options.get("class_table"):
        return {"table": cfg.options["class_table"]}
    return {}


class TextServicer(text_pb2_grpc.TextServiceServicer):
    def __init__(self, cfg: ServeConfig):
        self.cfg = cfg
        self.parser = Parser()

    def Parse(self, request: text_pb2.ParseRequest, context: grpc.ServicerContext) -> text_pb2.ParseResponse:
        return parse_to_proto(self.parser.parse(request.prompt).to_dict())

    def Encode(self, request: text_pb2.EncodeRequest, context: grpc.ServicerContext) -> text_pb2.EncodeResponse:
        backend = request.backend or "minilm"
        if len(request.texts) + len(request.class_indices) > MAX_TEXTS:
            raise InvalidInputError(f"at most {MAX_TEXTS} texts and classes per Encode call, got "
                                    f"{len(request.texts) + len(request.class_indices)}")
        if not request.texts and not request.class_indices:
            raise InvalidInputError("Encode needs texts or class_indices")
        encoder = get_encoder(backend, **encoder_options(backend, self.cfg))
        rows = []
        if request.texts:
            rows.extend(encoder.encode(list(request.texts)))
        if request.class_indices:
            rows.extend(encoder.encode_classes(list(request.class_indices)))
        return text_pb2.EncodeResponse(
            backend=encoder.backend, dimension=encoder.dimension, encoder_id=encoder.encoder_id,
            embeddings=[text_pb2.Embedding(values=row.tolist()) for row in rows],
        )


def _register(server: grpc.Server, cfg: ServeConfig) -> None:
    servicer = TextServicer(cfg)
    servicer.parser.class_bank()  # load the encoder before reporting SERVING, not on the first request
    text_pb2_grpc.add_TextServiceServicer_to_server(servicer, server)


SPEC = ServiceSpec(name="text", full_names=(SERVICE_NAME,), register=_register)
