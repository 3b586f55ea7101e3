"""Intent ↔ radmesh.v1 messages, so the CLI's JSON and the gRPC answer match."""

from __future__ import annotations

from typing import Any

from radmesh.common import vocabulary as V
from radmesh.text.parse import Intent
from radmesh.v1 import common_pb2, text_pb2

_LATERALITY = {"": common_pb2.LATERALITY_UNSPECIFIED, "left": common_pb2.LATERALITY_LEFT,
               "right": common_pb2.LATERALITY_RIGHT, "both": common_pb2.LATERALITY_BOTH}
_LATERALITY_NAME = {v: k for k, v in _LATERALITY.items()}
_ACTION = {"segment": common_pb2.ACTION_SEGMENT, "measure": common_pb2.ACTION_MEASURE,
           "locate": common_pb2.ACTION_LOCATE, "count": common_pb2.ACTION_COUNT,
           "report": common_pb2.ACTION_REPORT}
_ACTION_NAME = {v: k for k, v in _ACTION.items()}


def intent_to_proto(intent: Intent) -> text_pb2.ParseResponse:
    msg = common_pb2.Intent(
        targets=[common_pb2.ClassRef(class_index=t.class_index, name=V.get(t.class_index).name,
                                     laterality=_LATERALITY[t.laterality], subregion=t.subregion)
                 for t in intent.targets],
        actions=[_ACTION[a] for a in intent.actions],
        if_any=intent.if_any,
        confidence=intent.confidence,
        unsupported=intent.unsupported,
        unsupported_phrase=intent.unsupported_phrase,
        suggestions=[common_pb2.ClassRef(class_index=c, name=V.get(c).name) for c in intent.suggestions],
    )
    return text_pb2.ParseResponse(intent=msg, matched_phrases=[t.phrase for t in intent.targets])


def parse_response_to_dict(response: text_pb2.ParseResponse) -> dict[str, Any]:
    """The same dict as ``Intent.to_dict()``, from the wire."""
    i = response.intent
    return {
        "targets": [{"class_index": t.class_index, "name": t.name, "laterality": _LATERALITY_NAME[t.laterality],
                     "subregion": t.subregion} for t in i.targets],
        "actions": [_ACTION_NAME[a] for a in i.actions],
        "if_any": i.if_any,
        # float32 on the wire: round as Intent.to_dict does
        "confidence": round(float(i.confidence), 4),
        "unsupported": i.unsupported,
        "unsupported_phrase": i.unsupported_phrase,
        "suggestions": [{"class_index": s.class_index, "name": s.name} for s in i.suggestions],
        "matched_phrases": list(response.matched_phrases),
    }
