from radmesh.v1 import common_pb2 as _common_pb2
from radmesh.v1 import text_pb2 as _text_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SegmentOptions(_message.Message):
    __slots__ = ("targets", "prompt", "fast", "overlap", "min_lesion_mm3")
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    FAST_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    MIN_LESION_MM3_FIELD_NUMBER: _ClassVar[int]
    targets: _containers.RepeatedCompositeFieldContainer[_common_pb2.ClassRef]
    prompt: str
    fast: bool
    overlap: float
    min_lesion_mm3: float
    def __init__(self, targets: _Optional[_Iterable[_Union[_common_pb2.ClassRef, _Mapping]]] = ..., prompt: _Optional[str] = ..., fast: _Optional[bool] = ..., overlap: _Optional[float] = ..., min_lesion_mm3: _Optional[float] = ...) -> None: ...

class SegmentRequest(_message.Message):
    __slots__ = ("options", "header", "chunk")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    options: SegmentOptions
    header: _common_pb2.VolumeHeader
    chunk: _common_pb2.VolumeChunk
    def __init__(self, options: _Optional[_Union[SegmentOptions, _Mapping]] = ..., header: _Optional[_Union[_common_pb2.VolumeHeader, _Mapping]] = ..., chunk: _Optional[_Union[_common_pb2.VolumeChunk, _Mapping]] = ...) -> None: ...

class ClassVoxelCount(_message.Message):
    __slots__ = ("class_index", "name", "voxel_count", "volume_ml", "host_only")
    CLASS_INDEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VOXEL_COUNT_FIELD_NUMBER: _ClassVar[int]
    VOLUME_ML_FIELD_NUMBER: _ClassVar[int]
    HOST_ONLY_FIELD_NUMBER: _ClassVar[int]
    class_index: int
    name: str
    voxel_count: int
    volume_ml: float
    host_only: bool
    def __init__(self, class_index: _Optional[int] = ..., name: _Optional[str] = ..., voxel_count: _Optional[int] = ..., volume_ml: _Optional[float] = ..., host_only: _Optional[bool] = ...) -> None: ...

class SegmentSummary(_message.Message):
    __slots__ = ("classes", "model", "elapsed_s", "parse")
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_S_FIELD_NUMBER: _ClassVar[int]
    PARSE_FIELD_NUMBER: _ClassVar[int]
    classes: _containers.RepeatedCompositeFieldContainer[ClassVoxelCount]
    model: _common_pb2.ModelInfo
    elapsed_s: float
    parse: _text_pb2.ParseResponse
    def __init__(self, classes: _Optional[_Iterable[_Union[ClassVoxelCount, _Mapping]]] = ..., model: _Optional[_Union[_common_pb2.ModelInfo, _Mapping]] = ..., elapsed_s: _Optional[float] = ..., parse: _Optional[_Union[_text_pb2.ParseResponse, _Mapping]] = ...) -> None: ...

class SegmentEvent(_message.Message):
    __slots__ = ("progress", "label_header", "label_chunk", "summary")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    LABEL_HEADER_FIELD_NUMBER: _ClassVar[int]
    LABEL_CHUNK_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    progress: _common_pb2.Progress
    label_header: _common_pb2.VolumeHeader
    label_chunk: _common_pb2.VolumeChunk
    summary: SegmentSummary
    def __init__(self, progress: _Optional[_Union[_common_pb2.Progress, _Mapping]] = ..., label_header: _Optional[_Union[_common_pb2.VolumeHeader, _Mapping]] = ..., label_chunk: _Optional[_Union[_common_pb2.VolumeChunk, _Mapping]] = ..., summary: _Optional[_Union[SegmentSummary, _Mapping]] = ...) -> None: ...

class ListClassesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListClassesResponse(_message.Message):
    __slots__ = ("classes", "model")
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    classes: _containers.RepeatedCompositeFieldContainer[_common_pb2.ClassInfo]
    model: _common_pb2.ModelInfo
    def __init__(self, classes: _Optional[_Iterable[_Union[_common_pb2.ClassInfo, _Mapping]]] = ..., model: _Optional[_Union[_common_pb2.ModelInfo, _Mapping]] = ...) -> None: ...
