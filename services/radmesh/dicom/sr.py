"""DICOM SR: TID 1500 Measurement Report (highdicom ``Comprehensive3DSR``) of radmesh findings.

:func:`build_sr` turns the findings dict of
``radmesh.measurement.core.measure(...).to_dict()`` into one TID 1411 volumetric
measurement group per lesion and per measured organ/vessel, each referencing its
class's segment in the DICOM SEG it is given:

lesion group
    tracking identifier "<class name> lesion <id>" (id 1 = largest, as in the
    report) with a UID derived from the SEG and the lesion; finding category
    *Morphologically Abnormal Structure*; finding type *Neoplasm* (*Cyst* for
    kidney cysts); finding site the host organ (with laterality when the lesion
    has a side); for a lesion the scan cuts, one qualitative evaluation *Anatomy
    coverage incomplete* (DCM 130576) per edge it reaches (Superior, Inferior, or
    radmesh's own code for the in-plane border): its measurements are lower
    bounds; measurements (TID 1419):

    ========================  ==========================  ===========================
    findings key              concept                      unit
    ========================  ==========================  ===========================
    ``volume_ml``             Volume (SCT 118565006)       ml (UCUM)
    ``long_axis_mm``          Long axis (SCT 103339001)    mm
    ``short_axis_mm``         Short axis (SCT 103340004)   mm
    ``max_diameter_mm``       Diameter (SCT 81827009),     mm
                              derivation Maximum (56851009)
    ``hu_mean``               Attenuation Coefficient      [hnsf'U]
                              (DCM 112031), derivation
                              Mean (SCT 373098007)
    ========================  ==========================  ===========================

organ group
    one per structure of kind organ/vessel with voxels: tracking identifier and
    UID those of its SEG segment; finding type the organ; Volume (ml) and mean
    attenuation (HU); the same scan-edge evaluations when the scan cuts it.

All of a class's lesions live in one segment (the SEG has one segment per
class), so each lesion group references its class's whole segment; the tracking
identifier tells the lesions apart. The segment's source series is referenced
as *Source series for segmentation*. The evidence is the SEG (and the source CT
slices when ``source`` is given). The document is marked complete, preliminary
and unverified: a draft for review.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from radmesh import __version__
from radmesh.common import vocabulary as vocab
from radmesh.common.errors import InvalidInputError
from radmesh.common.volume import Geometry
from radmesh.dicom.codes import MEASUREMENTS, SCAN_EDGE_CONCEPT, SCAN_EDGES, UNITS, codes_for, laterality_code
from radmesh.dicom.series import DicomSource
from radmesh.dicom.write_ct import ds_str

__all__ = ["SR_SERIES_NUMBER", "build_sr", "lesion_tracking_uid"]

SR_SERIES_NUMBER = 9002
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
MANUFACTURER = "radmesh"


def lesion_tracking_uid(seg_sop_instance_uid: str, class_index: int, lesion_id: int) -> str:
    """The Tracking Unique Identifier of a lesion group: derived, so rebuilding the SR gives the same UID."""
    return generate_uid(entropy_srcs=[seg_sop_instance_uid, "lesion", str(int(class_index)), str(int(lesion_id))])


def _segments(seg: Dataset) -> dict[int, Dataset]:
    """{class index: segment item} from the SEG's segment labels (vocabulary names)."""
    out: dict[int, Dataset] = {}
    for item in seg.get("SegmentSequence", []):
        label = str(item.get("SegmentLabel", ""))
        try:
            out[vocab.by_name(label).index] = item
        except InvalidInputError:
            continue
    return out


def _source_series_uid(seg: Dataset) -> str:
    refs = seg.get("ReferencedSeriesSequence") or []
    if not refs:
        raise InvalidInputError("the SEG references no source series (ReferencedSeriesSequence is empty)")
    return str(refs[0].SeriesInstanceUID)


def _num(d: Mapping[str, Any], key: str, where: str) -> float:
    try:
        v = float(d[key])
    except (KeyError, TypeError, ValueError):
        raise InvalidInputError(f"findings: {where} has no numeric {key!r}") from None
    if not np.isfinite(v) or (v < 0 and not key.startswith("hu")):
        raise InvalidInputError(f"findings: {where} has {key} = {v}; expected a finite value ≥ 0")
    return v


def _measurement(name: str, value: float, unit: str, derivation: str | None = None,
                 method: str | None = None) -> hd.sr.Measurement:
    # Rounded to what a DS holds, so highdicom's own formatting stays within 16 characters.
    return hd.sr.Measurement(
        name=MEASUREMENTS[name], value=float(ds_str(value)), unit=UNITS[unit],
        derivation=MEASUREMENTS[derivation] if derivation else None,
        method=MEASUREMENTS[method] if method else None,
    )


def _cut(d: Mapping[str, Any], where: str) -> list[hd.sr.QualitativeEvaluation] | None:
    """The scan edges a structure reaches, as "Anatomy coverage incomplete" = edge (None when whole)."""
    edges = list(d.get("scan_edges") or [])
    unknown = [e for e in edges if e not in SCAN_EDGES]
    if unknown:
        raise InvalidInputError(f"findings: {where} has scan_edges {unknown}; expected {sorted(SCAN_EDGES)}")
    return [hd.sr.QualitativeEvaluation(name=SCAN_EDGE_CONCEPT, value=SCAN_EDGES[e]) for e in edges] or None


def _site(class_index: int, laterality: str | None) -> hd.sr.FindingSite:
    c = codes_for(class_index)
    side = c.type_modifier or laterality_code(laterality)
    return hd.sr.FindingSite(anatomic_location=c.site, laterality=side)


def _check_grid(findings: Mapping[str, Any], seg: Dataset, source: DicomSource | None) -> None:
    grid = findings.get("grid")
    if not isinstance(grid, Mapping):
        return
    try:
        g = Geometry(shape_zyx=grid["shape_zyx"], spacing_xyz_mm=grid["spacing_xyz_mm"],
                     origin_lps_mm=grid["origin_lps_mm"], direction=np.asarray(grid["direction"]).reshape(3, 3))
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidInputError(f"findings: malformed grid ({e})") from None
    if source is not None:
        source.volume.geometry.require_match(g, what="findings grid", ref="source CT series")
    nz, ny, nx = g.shape_zyx
    refs = seg.get("ReferencedSeriesSequence") or []
    n_src = len(refs[0].get("ReferencedInstanceSequence", [])) if refs else 0
    if (int(seg.Rows), int(seg.Columns)) != (ny, nx) or (n_src and n_src != nz):
        raise InvalidInputError(
            f"findings grid {tuple(g.shape_zyx)} (z,y,x) does not match the SEG's grid "
            f"({n_src} source slices of {seg.Rows}×{seg.Columns})")


def _device_observer(model: Mapping[str, Any]) -> hd.sr.ObserverContext:
    model_id = str(model.get("model_id", "") or "radmesh")[:64]
    version = str(model.get("model_version", "") or "unknown")[:64]
    return hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(entropy_srcs=["radmesh-device", model_id, version]),
            name=model_id, manufacturer_name=MANUFACTURER, model_name=version),
    )


def _algorithm(model: Mapping[str, Any]) -> hd.sr.AlgorithmIdentification:
    model_id = str(model.get("model_id", "") or "radmesh")[:64]
    version = str(model.get("model_version", "") or "unknown")[:64]
    params = [f"{k}={v}"[:64] for k, v in model.items()
              if k not in ("model_id", "model_version") and v not in (None, "")]
    return hd.sr.AlgorithmIdentification(name=model_id, version=version, parameters=params or None,
                                         family=codes.cid7162.ArtificialIntelligence)


def build_sr(findings: dict, seg: Dataset, study: dict | None, source: DicomSource | None,
             model: dict | None) -> Dataset:
    """A TID 1500 Measurement Report (Comprehensive 3D SR) of ``findings``, referencing ``seg``.

    findings: ``measure(...).to_dict()`` (MeasureResponse field names).
    seg:      the DICOM SEG from :func:`radmesh.dicom.seg.build_seg` for the same label map.
    study:    StudyMetadata fields; the SR joins the SEG's study, so a different
              ``study_instance_uid`` here is an error.
    source:   the DICOM CT source (its slices become evidence), or None.
    model:    ModelInfo fields, for the algorithm identification and device observer.

    Raises InvalidInputError for malformed findings, a structure with no segment
    in the SEG, or grids that do not match.
    """
    if not isinstance(findings, Mapping) or not isinstance(findings.get("structures"), list):
        raise InvalidInputError("findings must be the dict of measure(...).to_dict() (with a 'structures' list)")
    if not isinstance(seg, Dataset) or str(seg.get("SOPClassUID", "")) != SEG_SOP_CLASS:
        raise InvalidInputError("seg must be a DICOM Segmentation dataset (from build_seg)")
    study_uid = str((study or {}).get("study_instance_uid", "") or "")
    if study_uid and study_uid != str(seg.StudyInstanceUID):
        raise InvalidInputError(f"study.study_instance_uid {study_uid} is not the SEG's study "
                                f"{seg.StudyInstanceUID}; the SR must join the SEG's study")
    if source is not None and not isinstance(source, DicomSource):
        raise InvalidInputError(f"source must be a DicomSource or None, got {type(source).__name__}")
    _check_grid(findings, seg, source)
    model = dict(model or {})
    segments = _segments(seg)
    series_uid = _source_series_uid(seg)
    algorithm = _algorithm(model)

    def referenced(class_index: int) -> hd.sr.ReferencedSegment:
        return hd.sr.ReferencedSegment(
            sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID,
            segment_number=int(segments[class_index].SegmentNumber),
            source_series=hd.sr.SourceSeriesForSegmentation(series_uid))

    groups: list[hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations] = []
    for s in findings["structures"]:
        c = vocab.get(s.get("class_index")).index
        info, cc = vocab.get(c), codes_for(c)
        if int(s.get("voxel_count", 0) or 0) == 0 and not s.get("lesions"):
            continue  # asked for but absent: nothing to measure or reference
        if c not in segments:
            raise InvalidInputError(f"findings hold {info.name} but the SEG has no segment for it; build the SEG "
                                    "with the same classes as the measurement")
        if info.is_lesion:
            for lesion in s.get("lesions", []):
                lid = int(lesion.get("id", 0))
                where = f"{info.name} lesion {lid}"
                host = int(lesion.get("host_class_index", 0) or 0)
                site = _site(host, lesion.get("laterality")) if host else \
                    hd.sr.FindingSite(anatomic_location=cc.site, laterality=laterality_code(lesion.get("laterality")))
                groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                    tracking_identifier=hd.sr.TrackingIdentifier(
                        uid=lesion_tracking_uid(seg.SOPInstanceUID, c, lid), identifier=where[:64]),
                    referenced_segment=referenced(c),
                    finding_type=cc.type,
                    finding_category=cc.category,
                    finding_sites=[site],
                    algorithm_id=algorithm,
                    measurements=[
                        _measurement("volume", _num(lesion, "volume_ml", where), "ml", method="voxel_sum"),
                        _measurement("long_axis", _num(lesion, "long_axis_mm", where), "mm"),
                        _measurement("short_axis", _num(lesion, "short_axis_mm", where), "mm"),
                        _measurement("diameter", _num(lesion, "max_diameter_mm", where), "mm",
                                     derivation="maximum"),
                        _measurement("attenuation", _num(lesion, "hu_mean", where), "hu", derivation="mean"),
                    ],
                    qualitative_evaluations=_cut(lesion, where),
                ))
        else:
            where = info.name
            item = segments[c]
            measurements = [_measurement("volume", _num(s, "volume_ml", where), "ml", method="voxel_sum")]
            if int(s.get("voxel_count", 0) or 0) > 0:
                measurements.append(_measurement("attenuation", _num(s, "hu_mean", where), "hu", derivation="mean"))
            groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=str(item.get("TrackingUID", "") or generate_uid()),
                    identifier=str(item.get("TrackingID", "") or info.name)[:64]),
                referenced_segment=referenced(c),
                finding_type=cc.type,
                finding_category=cc.category,
                finding_sites=[_site(c, None)],
                algorithm_id=algorithm,
                measurements=measurements,
                qualitative_evaluations=_cut(s, where),
            ))

    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=_device_observer(model)),
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
        imaging_measurements=groups or None,
    )
    evidence = [seg] + (list(source.headers) if source is not None else [])
    return hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report,
        series_instance_uid=generate_uid(),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,
        is_verified=False,
        series_description="radmesh measurements (draft)",
        software_versions=f"radmesh {__version__}",
    )
