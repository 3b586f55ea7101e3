from radmesh.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MeasureOptions(_message.Message):
    __slots__ = ("class_indices", "min_lesion_mm3")
    CLASS_INDICES_FIELD_NUMBER: _ClassVar[int]
    MIN_LESION_MM3_FIELD_NUMBER: _ClassVar[int]
    class_indices: _containers.RepeatedScalarFieldContainer[int]
    min_lesion_mm3: float
    def __init__(self, class_indices: _Optional[_Iterable[int]] = ..., min_lesion_mm3: _Optional[float] = ...) -> None: ...

class MeasureRequest(_message.Message):
    __slots__ = ("options", "ct", "labels")
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    CT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    options: MeasureOptions
    ct: _common_pb2.VolumePart
    labels: _common_pb2.VolumePart
    def __init__(self, options: _Optional[_Union[MeasureOptions, _Mapping]] = ..., ct: _Optional[_Union[_common_pb2.VolumePart, _Mapping]] = ..., labels: _Optional[_Union[_common_pb2.VolumePart, _Mapping]] = ...) -> None: ...

class MeasureResponse(_message.Message):
    __slots__ = ("structures", "grid", "min_lesion_mm3")
    STRUCTURES_FIELD_NUMBER: _ClassVar[int]
    GRID_FIELD_NUMBER: _ClassVar[int]
    MIN_LESION_MM3_FIELD_NUMBER: _ClassVar[int]
    structures: _containers.RepeatedCompositeFieldContainer[_common_pb2.StructureMeasurement]
    grid: _common_pb2.Geometry
    min_lesion_mm3: float
    def __init__(self, structures: _Optional[_Iterable[_Union[_common_pb2.StructureMeasurement, _Mapping]]] = ..., grid: _Optional[_Union[_common_pb2.Geometry, _Mapping]] = ..., min_lesion_mm3: _Optional[float] = ...) -> None: ...
