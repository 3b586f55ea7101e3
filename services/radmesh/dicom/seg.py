"""DICOM SEG from a radmesh label map (highdicom ``Segmentation``, BINARY).

:func:`build_seg` writes one segment per requested class that is present in
the label map, numbered 1, 2, … in vocabulary order; each segment is coded with
the SNOMED CT category/type (and laterality modifier, anatomic region) of
:mod:`radmesh.dicom.codes`, labelled with the vocabulary name, marked AUTOMATIC
and identified by the model (AlgorithmIdentificationSequence: name = model_id,
version = model_version, family = Artificial Intelligence, the remaining
ModelInfo fields as parameters).

The SEG's frames reference source CT images:

- ``source`` given (the CT came from DICOM): its slice headers are the source
  images, so the SEG joins the CT's study, patient and frame of reference; the
  label map must lie on exactly the source grid (InvalidInputError otherwise).
- ``source`` None (the CT came from NIfTI): there are no DICOM images to point
  at, so a *derived* CT series is described from the label map's geometry with
  :func:`radmesh.dicom.write_ct.ct_headers` — study, series and frame-of-reference
  UIDs from ``study`` where it gives them, new ones otherwise; patient fields
  from ``study`` (empty stays empty: an anonymous but valid object). Its SOP
  Instance UIDs are derived from its series UID, so writing the CT with
  :func:`radmesh.dicom.write_ct.write_ct_series` and the same study dict (see
  :func:`derived_source`) produces exactly the instances the SEG references.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from radmesh import __version__
from radmesh.common import vocabulary as vocab
from radmesh.common.errors import InvalidInputError
from radmesh.common.labels import label_array
from radmesh.common.volume import Volume
from radmesh.dicom.codes import DISPLAY_RGB, codes_for
from radmesh.dicom.series import DicomSource
from radmesh.dicom.write_ct import ct_headers, resolve_study

__all__ = ["SEG_SERIES_NUMBER", "algorithm_identification", "build_seg", "derived_source", "segment_numbers"]

SEG_SERIES_NUMBER = 9001
MANUFACTURER = "radmesh"


def _classes(class_indices: Sequence[int]) -> list[int]:
    if isinstance(class_indices, (str, bytes)) or not hasattr(class_indices, "__iter__"):
        raise InvalidInputError(f"class_indices must be a list of vocabulary indices, got {class_indices!r}")
    out = sorted({vocab.get(c).index for c in class_indices})
    if not out:
        raise InvalidInputError("class_indices is empty; name the classes the SEG should hold")
    return out


def segment_numbers(labels: Volume, class_indices: Sequence[int]) -> dict[int, int]:
    """{class index: segment number} for the classes of ``class_indices`` present in ``labels`` (vocabulary order)."""
    lab = label_array(labels.array)
    present = set(np.flatnonzero(np.bincount(lab.ravel(), minlength=vocab.NUM_CLASSES + 1)).tolist())
    wanted = [c for c in _classes(class_indices) if c in present]
    return {c: n for n, c in enumerate(wanted, start=1)}


def algorithm_identification(model: Mapping[str, Any] | None) -> hd.AlgorithmIdentificationSequence:
    """ModelInfo (model_id, model_version, and any other keys) → AlgorithmIdentificationSequence."""
    m = dict(model or {})
    name = str(m.pop("model_id", "") or "radmesh").strip()[:64]
    version = str(m.pop("model_version", "") or "unknown").strip()[:64]
    params = {str(k): str(v)[:64] for k, v in m.items() if v not in (None, "")}
    return hd.AlgorithmIdentificationSequence(
        name=name, family=codes.cid7162.ArtificialIntelligence, version=version, source="radmesh",
        parameters=params or None)


def derived_source(volume: Volume, study: Mapping[str, str] | None = None) -> DicomSource:
    """A DicomSource describing ``volume``'s grid as a CT series that does not exist on disk yet.

    Its headers are :func:`~radmesh.dicom.write_ct.ct_headers` of the volume's
    geometry and ``study`` (UIDs generated where ``study`` leaves them empty), and
    ``source.study`` holds the UIDs used. ``write_ct_series(ct, folder, source.study)``
    then writes exactly the instances these headers describe (same SOP Instance UIDs).
    """
    s = resolve_study(study)
    headers = ct_headers(volume.geometry, s, series_description="radmesh CT (derived from NIfTI)")
    return DicomSource(volume=volume, headers=headers, study=s,
                       chosen="derived CT series (the source was not DICOM); "
                              f"series {s['series_instance_uid']}, {volume.geometry.shape_zyx[0]} slices")


def _description(class_index: int, number: int, algorithm: hd.AlgorithmIdentificationSequence
                 ) -> hd.seg.SegmentDescription:
    info, c = vocab.get(class_index), codes_for(class_index)
    desc = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=info.name,
        segmented_property_category=c.category,
        segmented_property_type=c.type,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        tracking_uid=generate_uid(),
        tracking_id=f"{info.name}"[:64],
        anatomic_regions=[c.anatomic_region] if c.anatomic_region is not None else None,
        display_color=hd.color.CIELabColor.from_rgb(*DISPLAY_RGB[class_index]) if class_index in DISPLAY_RGB
        else None,
    )
    if c.type_modifier is not None:
        item = desc.SegmentedPropertyTypeCodeSequence[0]
        item.SegmentedPropertyTypeModifierCodeSequence = [hd.sr.CodedConcept.from_code(c.type_modifier)]
    return desc


def build_seg(labels: Volume, class_indices: list[int], study: dict | None, source: DicomSource | None,
              model: dict | None) -> Dataset:
    """A DICOM SEG (BINARY) of ``labels``: one segment per class of ``class_indices`` present in it.

    labels:        vocabulary class indices (0 background) on the source grid.
    class_indices: the classes to put in the SEG; listed classes absent from the
                   label map get no segment; other labels are left out.
    study:         StudyMetadata field names; used when ``source`` is None (see module docstring).
    source:        the DICOM CT the labels were made on, or None for a NIfTI source.
    model:         ModelInfo fields (model_id, model_version, embedding_backend, class_table_sha256, ...).

    Raises InvalidInputError when the grid does not match the source, when no
    listed class is present, or for malformed labels or class indices.
    """
    if not isinstance(labels, Volume):
        raise InvalidInputError(f"labels must be a radmesh Volume, got {type(labels).__name__}")
    numbers = segment_numbers(labels, class_indices)
    if not numbers:
        names = ", ".join(vocab.get(c).name for c in _classes(class_indices))
        raise InvalidInputError(f"none of the requested classes ({names}) is present in the label map; "
                                "a DICOM SEG needs at least one segment")
    if source is None:
        source = derived_source(labels, study)
    else:
        if not isinstance(source, DicomSource):
            raise InvalidInputError(f"source must be a DicomSource or None, got {type(source).__name__}")
        source.volume.geometry.require_match(labels.geometry, what="label map", ref="source CT series")
    if len(source.headers) != labels.geometry.shape_zyx[0]:
        raise InvalidInputError(f"source has {len(source.headers)} slice headers for "
                                f"{labels.geometry.shape_zyx[0]} label slices")

    lut = np.zeros(vocab.NUM_CLASSES + 1, dtype=np.uint8)
    for c, n in numbers.items():
        lut[c] = n
    pixel_array = lut[label_array(labels.array)]
    algorithm = algorithm_identification(model)
    descriptions = [_description(c, n, algorithm) for c, n in numbers.items()]
    m = dict(model or {})
    model_id = str(m.get("model_id", "") or "radmesh")[:64]
    model_version = str(m.get("model_version", "") or "unknown")[:64]
    seg = hd.seg.Segmentation(
        source_images=source.headers,
        pixel_array=pixel_array,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=model_id,
        software_versions=f"radmesh {__version__}",
        device_serial_number=model_version,
        content_label="RADMESH",
        content_description="radmesh automatic segmentation; draft for review",
        series_description="radmesh segmentation (draft)",
        omit_empty_frames=True,
    )
    return seg
