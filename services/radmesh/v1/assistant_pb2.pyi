from radmesh.v1 import common_pb2 as _common_pb2
from radmesh.v1 import measurement_pb2 as _measurement_pb2
from radmesh.v1 import report_pb2 as _report_pb2
from radmesh.v1 import segmentation_pb2 as _segmentation_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AnswerKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ANSWER_KIND_UNSPECIFIED: _ClassVar[AnswerKind]
    ANSWER_KIND_ANSWER: _ClassVar[AnswerKind]
    ANSWER_KIND_REFUSAL: _ClassVar[AnswerKind]
    ANSWER_KIND_QUESTION: _ClassVar[AnswerKind]
ANSWER_KIND_UNSPECIFIED: AnswerKind
ANSWER_KIND_ANSWER: AnswerKind
ANSWER_KIND_REFUSAL: AnswerKind
ANSWER_KIND_QUESTION: AnswerKind

class AskOptions(_message.Message):
    __slots__ = ("prompt", "study", "study_handle", "formats", "session_id", "fast", "figures")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    STUDY_FIELD_NUMBER: _ClassVar[int]
    STUDY_HANDLE_FIELD_NUMBER: _ClassVar[int]
    FORMATS_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    FAST_FIELD_NUMBER: _ClassVar[int]
    FIGURES_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    study: _report_pb2.StudyMetadata
    study_handle: str
    formats: _containers.RepeatedScalarFieldContainer[_report_pb2.OutputFormat]
    session_id: str
    fast: bool
    figures: bool
    def __init__(self, prompt: _Optional[str] = ..., study: _Optional[_Union[_report_pb2.StudyMetadata, _Mapping]] = ..., study_handle: _Optional[str] = ..., formats: _Optional[_Iterable[_Union[_report_pb2.OutputFormat, str]]] = ..., session_id: _Optional[str] = ..., fast: _Optional[bool] = ..., figures: _Optional[bool] = ...) -> None: ...

class AskRequest(_message.Message):
    __slots__ = ("options", "header", "chunk")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    options: AskOptions
    header: _common_pb2.VolumeHeader
    chunk: _common_pb2.VolumeChunk
    def __init__(self, options: _Optional[_Union[AskOptions, _Mapping]] = ..., header: _Optional[_Union[_common_pb2.VolumeHeader, _Mapping]] = ..., chunk: _Optional[_Union[_common_pb2.VolumeChunk, _Mapping]] = ...) -> None: ...

class Answer(_message.Message):
    __slots__ = ("intent", "text", "segmented", "findings", "report", "artifacts", "study_handle", "model", "session_id", "kind", "targets", "suggestions", "uploaded_bytes", "elapsed_s")
    INTENT_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SEGMENTED_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    STUDY_HANDLE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    SUGGESTIONS_FIELD_NUMBER: _ClassVar[int]
    UPLOADED_BYTES_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_S_FIELD_NUMBER: _ClassVar[int]
    intent: _common_pb2.Intent
    text: str
    segmented: _containers.RepeatedCompositeFieldContainer[_segmentation_pb2.ClassVoxelCount]
    findings: _measurement_pb2.MeasureResponse
    report: _report_pb2.Report
    artifacts: _containers.RepeatedCompositeFieldContainer[_common_pb2.Artifact]
    study_handle: str
    model: _common_pb2.ModelInfo
    session_id: str
    kind: AnswerKind
    targets: _containers.RepeatedCompositeFieldContainer[_common_pb2.ClassRef]
    suggestions: _containers.RepeatedCompositeFieldContainer[_common_pb2.ClassRef]
    uploaded_bytes: int
    elapsed_s: float
    def __init__(self, intent: _Optional[_Union[_common_pb2.Intent, _Mapping]] = ..., text: _Optional[str] = ..., segmented: _Optional[_Iterable[_Union[_segmentation_pb2.ClassVoxelCount, _Mapping]]] = ..., findings: _Optional[_Union[_measurement_pb2.MeasureResponse, _Mapping]] = ..., report: _Optional[_Union[_report_pb2.Report, _Mapping]] = ..., artifacts: _Optional[_Iterable[_Union[_common_pb2.Artifact, _Mapping]]] = ..., study_handle: _Optional[str] = ..., model: _Optional[_Union[_common_pb2.ModelInfo, _Mapping]] = ..., session_id: _Optional[str] = ..., kind: _Optional[_Union[AnswerKind, str]] = ..., targets: _Optional[_Iterable[_Union[_common_pb2.ClassRef, _Mapping]]] = ..., suggestions: _Optional[_Iterable[_Union[_common_pb2.ClassRef, _Mapping]]] = ..., uploaded_bytes: _Optional[int] = ..., elapsed_s: _Optional[float] = ...) -> None: ...

class AskEvent(_message.Message):
    __slots__ = ("progress", "artifact", "artifact_chunk", "label_header", "label_chunk", "answer")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_CHUNK_FIELD_NUMBER: _ClassVar[int]
    LABEL_HEADER_FIELD_NUMBER: _ClassVar[int]
    LABEL_CHUNK_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    progress: _common_pb2.Progress
    artifact: _common_pb2.Artifact
    artifact_chunk: _common_pb2.ArtifactChunk
    label_header: _common_pb2.VolumeHeader
    label_chunk: _common_pb2.VolumeChunk
    answer: Answer
    def __init__(self, progress: _Optional[_Union[_common_pb2.Progress, _Mapping]] = ..., artifact: _Optional[_Union[_common_pb2.Artifact, _Mapping]] = ..., artifact_chunk: _Optional[_Union[_common_pb2.ArtifactChunk, _Mapping]] = ..., label_header: _Optional[_Union[_common_pb2.VolumeHeader, _Mapping]] = ..., label_chunk: _Optional[_Union[_common_pb2.VolumeChunk, _Mapping]] = ..., answer: _Optional[_Union[Answer, _Mapping]] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class Turn(_message.Message):
    __slots__ = ("prompt", "kind", "targets")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    kind: AnswerKind
    targets: _containers.RepeatedCompositeFieldContainer[_common_pb2.ClassRef]
    def __init__(self, prompt: _Optional[str] = ..., kind: _Optional[_Union[AnswerKind, str]] = ..., targets: _Optional[_Iterable[_Union[_common_pb2.ClassRef, _Mapping]]] = ...) -> None: ...

class SessionInfo(_message.Message):
    __slots__ = ("session_id", "study_handle", "turns", "segmented_class_indices", "expires_in_s")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STUDY_HANDLE_FIELD_NUMBER: _ClassVar[int]
    TURNS_FIELD_NUMBER: _ClassVar[int]
    SEGMENTED_CLASS_INDICES_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_S_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    study_handle: str
    turns: _containers.RepeatedCompositeFieldContainer[Turn]
    segmented_class_indices: _containers.RepeatedScalarFieldContainer[int]
    expires_in_s: float
    def __init__(self, session_id: _Optional[str] = ..., study_handle: _Optional[str] = ..., turns: _Optional[_Iterable[_Union[Turn, _Mapping]]] = ..., segmented_class_indices: _Optional[_Iterable[int]] = ..., expires_in_s: _Optional[float] = ...) -> None: ...

class EndSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class EndSessionResponse(_message.Message):
    __slots__ = ("ended",)
    ENDED_FIELD_NUMBER: _ClassVar[int]
    ended: bool
    def __init__(self, ended: _Optional[bool] = ...) -> None: ...
