"""Calling a running text service (``radmesh parse|encode --server HOST:PORT``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from radmesh.common.grpcclient import call_errors, channel
from radmesh.common.intent_wire import parse_from_proto
from radmesh.v1 import text_pb2, text_pb2_grpc


def parse_remote(target: str, prompt: str, timeout_s: float = 30.0) -> dict[str, Any]:
    with channel(target) as ch, call_errors(target, "text"):
        response = text_pb2_grpc.TextServiceStub(ch).Parse(text_pb2.ParseRequest(prompt=prompt), timeout=timeout_s)
    return parse_from_proto(response)


def encode_remote(target: str, texts: Sequence[str] = (), class_indices: Sequence[int] = (), backend: str = "",
                  timeout_s: float = 60.0) -> tuple[np.ndarray, str, str]:
    """(N×E float32 embeddings, backend, encoder_id) from the service at ``target``."""
    request = text_pb2.EncodeRequest(texts=list(texts), class_indices=list(class_indices), backend=backend)
    with channel(target) as ch, call_errors(target, "text"):
        r = text_pb2_grpc.TextServiceStub(ch).Encode(request, timeout=timeout_s)
    array = np.array([e.values for e in r.embeddings], dtype=np.float32).reshape(len(r.embeddings), r.dimension)
    return array, r.backend, r.encoder_id
