from radmesh.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ParseRequest(_message.Message):
    __slots__ = ("prompt",)
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    def __init__(self, prompt: _Optional[str] = ...) -> None: ...

class ParseResponse(_message.Message):
    __slots__ = ("intent", "matched_phrases")
    INTENT_FIELD_NUMBER: _ClassVar[int]
    MATCHED_PHRASES_FIELD_NUMBER: _ClassVar[int]
    intent: _common_pb2.Intent
    matched_phrases: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, intent: _Optional[_Union[_common_pb2.Intent, _Mapping]] = ..., matched_phrases: _Optional[_Iterable[str]] = ...) -> None: ...

class EncodeRequest(_message.Message):
    __slots__ = ("texts", "class_indices", "backend")
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    CLASS_INDICES_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    class_indices: _containers.RepeatedScalarFieldContainer[int]
    backend: str
    def __init__(self, texts: _Optional[_Iterable[str]] = ..., class_indices: _Optional[_Iterable[int]] = ..., backend: _Optional[str] = ...) -> None: ...

class Embedding(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class EncodeResponse(_message.Message):
    __slots__ = ("backend", "dimension", "embeddings", "encoder_id")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    ENCODER_ID_FIELD_NUMBER: _ClassVar[int]
    backend: str
    dimension: int
    embeddings: _containers.RepeatedCompositeFieldContainer[Embedding]
    encoder_id: str
    def __init__(self, backend: _Optional[str] = ..., dimension: _Optional[int] = ..., embeddings: _Optional[_Iterable[_Union[Embedding, _Mapping]]] = ..., encoder_id: _Optional[str] = ...) -> None: ...
