"""Protobuf messages ↔ plain Python dicts with the proto's own field names.

Unlike ``json_format.MessageToDict`` this keeps 64-bit integers as ints and
prints every field, so a gRPC response and the CLI's ``--json`` output of the
same result are equal as Python objects. Enums become their names.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message


def _value(field: FieldDescriptor, v: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return to_plain(v)
    if field.type == FieldDescriptor.TYPE_ENUM:
        return field.enum_type.values_by_number[v].name if v in field.enum_type.values_by_number else v
    if field.type == FieldDescriptor.TYPE_BYTES:
        return bytes(v)
    return v


def to_plain(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        v = getattr(message, field.name)
        if field.is_repeated:
            out[field.name] = [_value(field, x) for x in v]
        elif field.type == FieldDescriptor.TYPE_MESSAGE and not message.HasField(field.name):
            out[field.name] = None
        else:
            out[field.name] = _value(field, v)
    return out


def from_plain(data: dict[str, Any], message: Message) -> Message:
    """Fill ``message`` from a dict with proto field names; unknown keys are an error."""
    return json_format.ParseDict(data, message, ignore_unknown_fields=False)
