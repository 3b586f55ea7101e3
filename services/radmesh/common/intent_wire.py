"""A parsed prompt (``Intent.to_dict()``) ↔ ``radmesh.v1.Intent`` / ``ParseResponse``.

One conversion for every service that carries a parse: the text service answers
Parse with it, the report service receives it, the segmentation service returns the
parse it segmented from. A dict that went through the wire compares equal to the one
that was sent (confidence is float32 on the wire, so both sides round it to 4 places).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from radmesh.common import vocabulary as vocab
from radmesh.common.errors import InvalidInputError
from radmesh.v1 import common_pb2, text_pb2

# What a request can ask to do with its targets, in the order a plan carries them out.
ACTIONS = ("segment", "measure", "locate", "count", "compare", "report")


def _side_enum(side: str) -> int:
    return common_pb2.LATERALITY_UNSPECIFIED if not side else common_pb2.Laterality.Value(f"LATERALITY_{side.upper()}")


def _side_name(value: int) -> str:
    name = common_pb2.Laterality.Name(value)
    return "" if value == common_pb2.LATERALITY_UNSPECIFIED else name.removeprefix("LATERALITY_").lower()


def intent_to_proto(intent: Mapping[str, Any]) -> common_pb2.Intent:
    """``Intent.to_dict()`` → ``radmesh.v1.Intent``; InvalidInputError naming what does not fit."""
    try:
        return common_pb2.Intent(
            targets=[common_pb2.ClassRef(class_index=int(t["class_index"]), name=vocab.get(t["class_index"]).name,
                                         laterality=_side_enum(str(t.get("laterality") or "")),
                                         subregion=str(t.get("subregion") or ""))
                     for t in intent.get("targets") or []],
            actions=[common_pb2.Action.Value(f"ACTION_{str(a).upper()}") for a in intent.get("actions") or []],
            if_any=bool(intent.get("if_any", False)),
            confidence=float(intent.get("confidence", 1.0)),
            unsupported=bool(intent.get("unsupported", False)),
            unsupported_phrase=str(intent.get("unsupported_phrase") or ""),
            suggestions=[common_pb2.ClassRef(class_index=int(s["class_index"]), name=vocab.get(s["class_index"]).name)
                         for s in intent.get("suggestions") or []],
            refers_back=bool(intent.get("refers_back", False)),
            refers_back_plural=bool(intent.get("refers_back_plural", False)),
        )
    except (KeyError, ValueError, TypeError) as e:
        raise InvalidInputError(f"intent cannot be sent: {e}") from None


def intent_from_proto(msg: common_pb2.Intent) -> dict[str, Any]:
    """``radmesh.v1.Intent`` → the ``Intent.to_dict()`` form (without ``matched_phrases``)."""
    return {
        "targets": [{"class_index": t.class_index, "name": t.name, "laterality": _side_name(t.laterality),
                     "subregion": t.subregion} for t in msg.targets],
        "actions": [common_pb2.Action.Name(a).removeprefix("ACTION_").lower() for a in msg.actions],
        "if_any": msg.if_any,
        "confidence": round(float(msg.confidence), 4),
        "unsupported": msg.unsupported,
        "unsupported_phrase": msg.unsupported_phrase,
        "suggestions": [{"class_index": s.class_index, "name": s.name} for s in msg.suggestions],
        "refers_back": msg.refers_back,
        "refers_back_plural": msg.refers_back_plural,
    }


def parse_to_proto(intent: Mapping[str, Any]) -> text_pb2.ParseResponse:
    """``Intent.to_dict()`` (with its ``matched_phrases``) → ``radmesh.v1.ParseResponse``."""
    return text_pb2.ParseResponse(intent=intent_to_proto(intent),
                                  matched_phrases=[str(p) for p in intent.get("matched_phrases") or []])


def parse_from_proto(response: text_pb2.ParseResponse) -> dict[str, Any]:
    """``radmesh.v1.ParseResponse`` → exactly ``Intent.to_dict()``."""
    return {**intent_from_proto(response.intent), "matched_phrases": list(response.matched_phrases)}
