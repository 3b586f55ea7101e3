"""Intent → radmesh.v1 messages, so the CLI's JSON and the gRPC answer match."""

from __future__ import annotations

from radmesh.common.intent_wire import parse_to_proto
from radmesh.text.parse import Intent
from radmesh.v1 import text_pb2


def intent_to_proto(intent: Intent) -> text_pb2.ParseResponse:
    return parse_to_proto(intent.to_dict())
