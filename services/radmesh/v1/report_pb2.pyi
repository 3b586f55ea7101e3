from radmesh.v1 import common_pb2 as _common_pb2
from radmesh.v1 import measurement_pb2 as _measurement_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OutputFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTPUT_FORMAT_UNSPECIFIED: _ClassVar[OutputFormat]
    OUTPUT_FORMAT_DICOM_SEG: _ClassVar[OutputFormat]
    OUTPUT_FORMAT_DICOM_SR: _ClassVar[OutputFormat]
    OUTPUT_FORMAT_NIFTI: _ClassVar[OutputFormat]
OUTPUT_FORMAT_UNSPECIFIED: OutputFormat
OUTPUT_FORMAT_DICOM_SEG: OutputFormat
OUTPUT_FORMAT_DICOM_SR: OutputFormat
OUTPUT_FORMAT_NIFTI: OutputFormat

class StudyMetadata(_message.Message):
    __slots__ = ("patient_name", "patient_id", "patient_sex", "patient_birth_date", "study_date", "accession_number", "study_instance_uid", "series_instance_uid", "frame_of_reference_uid", "study_description", "source_dicom_headers")
    PATIENT_NAME_FIELD_NUMBER: _ClassVar[int]
    PATIENT_ID_FIELD_NUMBER: _ClassVar[int]
    PATIENT_SEX_FIELD_NUMBER: _ClassVar[int]
    PATIENT_BIRTH_DATE_FIELD_NUMBER: _ClassVar[int]
    STUDY_DATE_FIELD_NUMBER: _ClassVar[int]
    ACCESSION_NUMBER_FIELD_NUMBER: _ClassVar[int]
    STUDY_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    SERIES_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    FRAME_OF_REFERENCE_UID_FIELD_NUMBER: _ClassVar[int]
    STUDY_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_DICOM_HEADERS_FIELD_NUMBER: _ClassVar[int]
    patient_name: str
    patient_id: str
    patient_sex: str
    patient_birth_date: str
    study_date: str
    accession_number: str
    study_instance_uid: str
    series_instance_uid: str
    frame_of_reference_uid: str
    study_description: str
    source_dicom_headers: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, patient_name: _Optional[str] = ..., patient_id: _Optional[str] = ..., patient_sex: _Optional[str] = ..., patient_birth_date: _Optional[str] = ..., study_date: _Optional[str] = ..., accession_number: _Optional[str] = ..., study_instance_uid: _Optional[str] = ..., series_instance_uid: _Optional[str] = ..., frame_of_reference_uid: _Optional[str] = ..., study_description: _Optional[str] = ..., source_dicom_headers: _Optional[_Iterable[bytes]] = ...) -> None: ...

class GenerateOptions(_message.Message):
    __slots__ = ("findings", "intent", "study", "formats", "model", "validated_class_indices")
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    STUDY_FIELD_NUMBER: _ClassVar[int]
    FORMATS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VALIDATED_CLASS_INDICES_FIELD_NUMBER: _ClassVar[int]
    findings: _measurement_pb2.MeasureResponse
    intent: _common_pb2.Intent
    study: StudyMetadata
    formats: _containers.RepeatedScalarFieldContainer[OutputFormat]
    model: _common_pb2.ModelInfo
    validated_class_indices: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, findings: _Optional[_Union[_measurement_pb2.MeasureResponse, _Mapping]] = ..., intent: _Optional[_Union[_common_pb2.Intent, _Mapping]] = ..., study: _Optional[_Union[StudyMetadata, _Mapping]] = ..., formats: _Optional[_Iterable[_Union[OutputFormat, str]]] = ..., model: _Optional[_Union[_common_pb2.ModelInfo, _Mapping]] = ..., validated_class_indices: _Optional[_Iterable[int]] = ...) -> None: ...

class GenerateRequest(_message.Message):
    __slots__ = ("options", "labels")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    options: GenerateOptions
    labels: _common_pb2.VolumePart
    def __init__(self, options: _Optional[_Union[GenerateOptions, _Mapping]] = ..., labels: _Optional[_Union[_common_pb2.VolumePart, _Mapping]] = ...) -> None: ...

class Recommendation(_message.Message):
    __slots__ = ("text", "source", "class_index", "lesion_id")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CLASS_INDEX_FIELD_NUMBER: _ClassVar[int]
    LESION_ID_FIELD_NUMBER: _ClassVar[int]
    text: str
    source: str
    class_index: int
    lesion_id: int
    def __init__(self, text: _Optional[str] = ..., source: _Optional[str] = ..., class_index: _Optional[int] = ..., lesion_id: _Optional[int] = ...) -> None: ...

class Report(_message.Message):
    __slots__ = ("text", "json", "recommendations", "provenance")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATIONS_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    text: str
    json: str
    recommendations: _containers.RepeatedCompositeFieldContainer[Recommendation]
    provenance: str
    def __init__(self, text: _Optional[str] = ..., json: _Optional[str] = ..., recommendations: _Optional[_Iterable[_Union[Recommendation, _Mapping]]] = ..., provenance: _Optional[str] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("report", "artifact", "artifact_chunk")
    REPORT_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_CHUNK_FIELD_NUMBER: _ClassVar[int]
    report: Report
    artifact: _common_pb2.Artifact
    artifact_chunk: _common_pb2.ArtifactChunk
    def __init__(self, report: _Optional[_Union[Report, _Mapping]] = ..., artifact: _Optional[_Union[_common_pb2.Artifact, _Mapping]] = ..., artifact_chunk: _Optional[_Union[_common_pb2.ArtifactChunk, _Mapping]] = ...) -> None: ...
