from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    DTYPE_UINT8: _ClassVar[DType]
    DTYPE_INT16: _ClassVar[DType]
    DTYPE_UINT16: _ClassVar[DType]
    DTYPE_INT32: _ClassVar[DType]
    DTYPE_FLOAT32: _ClassVar[DType]

class Compression(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPRESSION_NONE: _ClassVar[Compression]
    COMPRESSION_ZLIB: _ClassVar[Compression]

class Laterality(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LATERALITY_UNSPECIFIED: _ClassVar[Laterality]
    LATERALITY_LEFT: _ClassVar[Laterality]
    LATERALITY_RIGHT: _ClassVar[Laterality]
    LATERALITY_BOTH: _ClassVar[Laterality]

class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_UNSPECIFIED: _ClassVar[Action]
    ACTION_SEGMENT: _ClassVar[Action]
    ACTION_MEASURE: _ClassVar[Action]
    ACTION_LOCATE: _ClassVar[Action]
    ACTION_COUNT: _ClassVar[Action]
    ACTION_REPORT: _ClassVar[Action]
    ACTION_COMPARE: _ClassVar[Action]

class Stage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STAGE_UNSPECIFIED: _ClassVar[Stage]
    STAGE_RECEIVING: _ClassVar[Stage]
    STAGE_PARSING: _ClassVar[Stage]
    STAGE_ENCODING: _ClassVar[Stage]
    STAGE_PREPROCESSING: _ClassVar[Stage]
    STAGE_INFERENCE: _ClassVar[Stage]
    STAGE_POSTPROCESSING: _ClassVar[Stage]
    STAGE_MEASURING: _ClassVar[Stage]
    STAGE_REPORTING: _ClassVar[Stage]
    STAGE_SENDING: _ClassVar[Stage]
    STAGE_RENDERING: _ClassVar[Stage]

class StageState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STAGE_STATE_UNSPECIFIED: _ClassVar[StageState]
    STAGE_STATE_RUNNING: _ClassVar[StageState]
    STAGE_STATE_DONE: _ClassVar[StageState]
    STAGE_STATE_FAILED: _ClassVar[StageState]
    STAGE_STATE_SKIPPED: _ClassVar[StageState]
DTYPE_UNSPECIFIED: DType
DTYPE_UINT8: DType
DTYPE_INT16: DType
DTYPE_UINT16: DType
DTYPE_INT32: DType
DTYPE_FLOAT32: DType
COMPRESSION_NONE: Compression
COMPRESSION_ZLIB: Compression
LATERALITY_UNSPECIFIED: Laterality
LATERALITY_LEFT: Laterality
LATERALITY_RIGHT: Laterality
LATERALITY_BOTH: Laterality
ACTION_UNSPECIFIED: Action
ACTION_SEGMENT: Action
ACTION_MEASURE: Action
ACTION_LOCATE: Action
ACTION_COUNT: Action
ACTION_REPORT: Action
ACTION_COMPARE: Action
STAGE_UNSPECIFIED: Stage
STAGE_RECEIVING: Stage
STAGE_PARSING: Stage
STAGE_ENCODING: Stage
STAGE_PREPROCESSING: Stage
STAGE_INFERENCE: Stage
STAGE_POSTPROCESSING: Stage
STAGE_MEASURING: Stage
STAGE_REPORTING: Stage
STAGE_SENDING: Stage
STAGE_RENDERING: Stage
STAGE_STATE_UNSPECIFIED: StageState
STAGE_STATE_RUNNING: StageState
STAGE_STATE_DONE: StageState
STAGE_STATE_FAILED: StageState
STAGE_STATE_SKIPPED: StageState

class Geometry(_message.Message):
    __slots__ = ("shape_zyx", "spacing_xyz_mm", "origin_lps_mm", "direction")
    SHAPE_ZYX_FIELD_NUMBER: _ClassVar[int]
    SPACING_XYZ_MM_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_LPS_MM_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    shape_zyx: _containers.RepeatedScalarFieldContainer[int]
    spacing_xyz_mm: _containers.RepeatedScalarFieldContainer[float]
    origin_lps_mm: _containers.RepeatedScalarFieldContainer[float]
    direction: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, shape_zyx: _Optional[_Iterable[int]] = ..., spacing_xyz_mm: _Optional[_Iterable[float]] = ..., origin_lps_mm: _Optional[_Iterable[float]] = ..., direction: _Optional[_Iterable[float]] = ...) -> None: ...

class VolumeHeader(_message.Message):
    __slots__ = ("geometry", "dtype", "compression", "total_bytes", "sha256", "study_instance_uid", "series_instance_uid", "frame_of_reference_uid", "modality")
    GEOMETRY_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    STUDY_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    SERIES_INSTANCE_UID_FIELD_NUMBER: _ClassVar[int]
    FRAME_OF_REFERENCE_UID_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    geometry: Geometry
    dtype: DType
    compression: Compression
    total_bytes: int
    sha256: str
    study_instance_uid: str
    series_instance_uid: str
    frame_of_reference_uid: str
    modality: str
    def __init__(self, geometry: _Optional[_Union[Geometry, _Mapping]] = ..., dtype: _Optional[_Union[DType, str]] = ..., compression: _Optional[_Union[Compression, str]] = ..., total_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., study_instance_uid: _Optional[str] = ..., series_instance_uid: _Optional[str] = ..., frame_of_reference_uid: _Optional[str] = ..., modality: _Optional[str] = ...) -> None: ...

class VolumeChunk(_message.Message):
    __slots__ = ("offset_bytes", "data")
    OFFSET_BYTES_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    offset_bytes: int
    data: bytes
    def __init__(self, offset_bytes: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class VolumePart(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: VolumeHeader
    chunk: VolumeChunk
    def __init__(self, header: _Optional[_Union[VolumeHeader, _Mapping]] = ..., chunk: _Optional[_Union[VolumeChunk, _Mapping]] = ...) -> None: ...

class ClassRef(_message.Message):
    __slots__ = ("class_index", "name", "laterality", "subregion")
    CLASS_INDEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LATERALITY_FIELD_NUMBER: _ClassVar[int]
    SUBREGION_FIELD_NUMBER: _ClassVar[int]
    class_index: int
    name: str
    laterality: Laterality
    subregion: str
    def __init__(self, class_index: _Optional[int] = ..., name: _Optional[str] = ..., laterality: _Optional[_Union[Laterality, str]] = ..., subregion: _Optional[str] = ...) -> None: ...

class ClassInfo(_message.Message):
    __slots__ = ("class_index", "name", "kind", "laterality", "host_class_indices", "synonyms", "subregions", "validated")
    CLASS_INDEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LATERALITY_FIELD_NUMBER: _ClassVar[int]
    HOST_CLASS_INDICES_FIELD_NUMBER: _ClassVar[int]
    SYNONYMS_FIELD_NUMBER: _ClassVar[int]
    SUBREGIONS_FIELD_NUMBER: _ClassVar[int]
    VALIDATED_FIELD_NUMBER: _ClassVar[int]
    class_index: int
    name: str
    kind: str
    laterality: Laterality
    host_class_indices: _containers.RepeatedScalarFieldContainer[int]
    synonyms: _containers.RepeatedScalarFieldContainer[str]
    subregions: _containers.RepeatedScalarFieldContainer[str]
    validated: bool
    def __init__(self, class_index: _Optional[int] = ..., name: _Optional[str] = ..., kind: _Optional[str] = ..., laterality: _Optional[_Union[Laterality, str]] = ..., host_class_indices: _Optional[_Iterable[int]] = ..., synonyms: _Optional[_Iterable[str]] = ..., subregions: _Optional[_Iterable[str]] = ..., validated: _Optional[bool] = ...) -> None: ...

class Intent(_message.Message):
    __slots__ = ("targets", "actions", "if_any", "confidence", "unsupported", "unsupported_phrase", "suggestions", "refers_back", "refers_back_plural")
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    IF_ANY_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    UNSUPPORTED_FIELD_NUMBER: _ClassVar[int]
    UNSUPPORTED_PHRASE_FIELD_NUMBER: _ClassVar[int]
    SUGGESTIONS_FIELD_NUMBER: _ClassVar[int]
    REFERS_BACK_FIELD_NUMBER: _ClassVar[int]
    REFERS_BACK_PLURAL_FIELD_NUMBER: _ClassVar[int]
    targets: _containers.RepeatedCompositeFieldContainer[ClassRef]
    actions: _containers.RepeatedScalarFieldContainer[Action]
    if_any: bool
    confidence: float
    unsupported: bool
    unsupported_phrase: str
    suggestions: _containers.RepeatedCompositeFieldContainer[ClassRef]
    refers_back: bool
    refers_back_plural: bool
    def __init__(self, targets: _Optional[_Iterable[_Union[ClassRef, _Mapping]]] = ..., actions: _Optional[_Iterable[_Union[Action, str]]] = ..., if_any: _Optional[bool] = ..., confidence: _Optional[float] = ..., unsupported: _Optional[bool] = ..., unsupported_phrase: _Optional[str] = ..., suggestions: _Optional[_Iterable[_Union[ClassRef, _Mapping]]] = ..., refers_back: _Optional[bool] = ..., refers_back_plural: _Optional[bool] = ...) -> None: ...

class LesionMeasurement(_message.Message):
    __slots__ = ("id", "volume_ml", "max_diameter_mm", "long_axis_mm", "short_axis_mm", "long_axis_slice", "long_axis_endpoints_lps_mm", "centroid_mm", "bbox_min_mm", "bbox_max_mm", "hu_mean", "hu_std", "hu_min", "hu_max", "hu_median", "host_class_index", "host_hu_mean", "attenuation", "location", "subregion", "laterality", "location_method", "short_axis_endpoints_lps_mm", "scan_edges")
    ID_FIELD_NUMBER: _ClassVar[int]
    VOLUME_ML_FIELD_NUMBER: _ClassVar[int]
    MAX_DIAMETER_MM_FIELD_NUMBER: _ClassVar[int]
    LONG_AXIS_MM_FIELD_NUMBER: _ClassVar[int]
    SHORT_AXIS_MM_FIELD_NUMBER: _ClassVar[int]
    LONG_AXIS_SLICE_FIELD_NUMBER: _ClassVar[int]
    LONG_AXIS_ENDPOINTS_LPS_MM_FIELD_NUMBER: _ClassVar[int]
    CENTROID_MM_FIELD_NUMBER: _ClassVar[int]
    BBOX_MIN_MM_FIELD_NUMBER: _ClassVar[int]
    BBOX_MAX_MM_FIELD_NUMBER: _ClassVar[int]
    HU_MEAN_FIELD_NUMBER: _ClassVar[int]
    HU_STD_FIELD_NUMBER: _ClassVar[int]
    HU_MIN_FIELD_NUMBER: _ClassVar[int]
    HU_MAX_FIELD_NUMBER: _ClassVar[int]
    HU_MEDIAN_FIELD_NUMBER: _ClassVar[int]
    HOST_CLASS_INDEX_FIELD_NUMBER: _ClassVar[int]
    HOST_HU_MEAN_FIELD_NUMBER: _ClassVar[int]
    ATTENUATION_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    SUBREGION_FIELD_NUMBER: _ClassVar[int]
    LATERALITY_FIELD_NUMBER: _ClassVar[int]
    LOCATION_METHOD_FIELD_NUMBER: _ClassVar[int]
    SHORT_AXIS_ENDPOINTS_LPS_MM_FIELD_NUMBER: _ClassVar[int]
    SCAN_EDGES_FIELD_NUMBER: _ClassVar[int]
    id: int
    volume_ml: float
    max_diameter_mm: float
    long_axis_mm: float
    short_axis_mm: float
    long_axis_slice: int
    long_axis_endpoints_lps_mm: _containers.RepeatedScalarFieldContainer[float]
    centroid_mm: _containers.RepeatedScalarFieldContainer[float]
    bbox_min_mm: _containers.RepeatedScalarFieldContainer[float]
    bbox_max_mm: _containers.RepeatedScalarFieldContainer[float]
    hu_mean: float
    hu_std: float
    hu_min: float
    hu_max: float
    hu_median: float
    host_class_index: int
    host_hu_mean: float
    attenuation: str
    location: str
    subregion: str
    laterality: str
    location_method: str
    short_axis_endpoints_lps_mm: _containers.RepeatedScalarFieldContainer[float]
    scan_edges: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[int] = ..., volume_ml: _Optional[float] = ..., max_diameter_mm: _Optional[float] = ..., long_axis_mm: _Optional[float] = ..., short_axis_mm: _Optional[float] = ..., long_axis_slice: _Optional[int] = ..., long_axis_endpoints_lps_mm: _Optional[_Iterable[float]] = ..., centroid_mm: _Optional[_Iterable[float]] = ..., bbox_min_mm: _Optional[_Iterable[float]] = ..., bbox_max_mm: _Optional[_Iterable[float]] = ..., hu_mean: _Optional[float] = ..., hu_std: _Optional[float] = ..., hu_min: _Optional[float] = ..., hu_max: _Optional[float] = ..., hu_median: _Optional[float] = ..., host_class_index: _Optional[int] = ..., host_hu_mean: _Optional[float] = ..., attenuation: _Optional[str] = ..., location: _Optional[str] = ..., subregion: _Optional[str] = ..., laterality: _Optional[str] = ..., location_method: _Optional[str] = ..., short_axis_endpoints_lps_mm: _Optional[_Iterable[float]] = ..., scan_edges: _Optional[_Iterable[str]] = ...) -> None: ...

class StructureMeasurement(_message.Message):
    __slots__ = ("class_index", "name", "kind", "volume_ml", "voxel_count", "hu_mean", "lesions", "scan_edges")
    CLASS_INDEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    VOLUME_ML_FIELD_NUMBER: _ClassVar[int]
    VOXEL_COUNT_FIELD_NUMBER: _ClassVar[int]
    HU_MEAN_FIELD_NUMBER: _ClassVar[int]
    LESIONS_FIELD_NUMBER: _ClassVar[int]
    SCAN_EDGES_FIELD_NUMBER: _ClassVar[int]
    class_index: int
    name: str
    kind: str
    volume_ml: float
    voxel_count: int
    hu_mean: float
    lesions: _containers.RepeatedCompositeFieldContainer[LesionMeasurement]
    scan_edges: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, class_index: _Optional[int] = ..., name: _Optional[str] = ..., kind: _Optional[str] = ..., volume_ml: _Optional[float] = ..., voxel_count: _Optional[int] = ..., hu_mean: _Optional[float] = ..., lesions: _Optional[_Iterable[_Union[LesionMeasurement, _Mapping]]] = ..., scan_edges: _Optional[_Iterable[str]] = ...) -> None: ...

class Artifact(_message.Message):
    __slots__ = ("name", "media_type", "size_bytes", "sha256", "data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    media_type: str
    size_bytes: int
    sha256: str
    data: bytes
    def __init__(self, name: _Optional[str] = ..., media_type: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class ArtifactChunk(_message.Message):
    __slots__ = ("name", "offset_bytes", "data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OFFSET_BYTES_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    offset_bytes: int
    data: bytes
    def __init__(self, name: _Optional[str] = ..., offset_bytes: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("stage", "done", "total", "message", "state", "elapsed_s")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_S_FIELD_NUMBER: _ClassVar[int]
    stage: Stage
    done: int
    total: int
    message: str
    state: StageState
    elapsed_s: float
    def __init__(self, stage: _Optional[_Union[Stage, str]] = ..., done: _Optional[int] = ..., total: _Optional[int] = ..., message: _Optional[str] = ..., state: _Optional[_Union[StageState, str]] = ..., elapsed_s: _Optional[float] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("model_id", "model_version", "embedding_backend", "class_table_sha256", "postprocess_calibration")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_BACKEND_FIELD_NUMBER: _ClassVar[int]
    CLASS_TABLE_SHA256_FIELD_NUMBER: _ClassVar[int]
    POSTPROCESS_CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    model_version: str
    embedding_backend: str
    class_table_sha256: str
    postprocess_calibration: str
    def __init__(self, model_id: _Optional[str] = ..., model_version: _Optional[str] = ..., embedding_backend: _Optional[str] = ..., class_table_sha256: _Optional[str] = ..., postprocess_calibration: _Optional[str] = ...) -> None: ...
