"""DICOM out: SEG and SR (TID 1500) from phantoms — conformant (dciodvfy), and read back with highdicom.

SEG masks are compared voxel for voxel on the label map's grid; SR numbers are
compared with the findings dict to 1e-9 relative (they travel as DS strings of
16 characters, about 12 significant digits).
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import highdicom as hd
from pydicom.sr.codedict import codes

from dicom_conformance import dciodvfy_errors, dciodvfy_report
from radmesh.common import vocabulary as V
from radmesh.common.errors import InvalidInputError
from radmesh.common.volume import Geometry, Volume
from radmesh.dicom import codes as dcodes
from radmesh.dicom.seg import build_seg, derived_source
from radmesh.dicom.series import read_dicom_series
from radmesh.dicom.source import headers_to_bytes, source_from_headers
from radmesh.dicom.sr import build_sr, lesion_tracking_uid
from radmesh.dicom.write_ct import instance_uid, write_ct_series
from radmesh.measurement.core import measure
from radmesh.phantom.generator import PhantomConfig, generate

MODEL = {"model_id": "radmesh-unet-phantom", "model_version": "radmesh-unet-phantom-1",
         "embedding_backend": "minilm", "class_table_sha256": "ab" * 32}
LESIONS = (V.LIVER_TUMOR, V.LIVER_TUMOR, V.PANCREAS_TUMOR, V.KIDNEY_TUMOR, V.KIDNEY_CYST)
CLASSES = [V.SPLEEN, V.RIGHT_KIDNEY, V.LEFT_KIDNEY, V.LIVER, V.PANCREAS, V.AORTA,
           V.KIDNEY_TUMOR, V.LIVER_TUMOR, V.PANCREAS_TUMOR, V.KIDNEY_CYST]
STUDY = {"patient_name": "Doe^Jane", "patient_id": "P-0001", "patient_sex": "F", "study_date": "20240102",
         "accession_number": "ACC42", "study_description": "CT abdomen"}


def _phantom(oblique: bool):
    return generate(21, PhantomConfig(in_plane_size=64, spacing_xyz_mm=(5.0, 5.0, 7.0), slices=32,
                                      oblique=oblique, lesions=LESIONS))


@pytest.fixture(scope="module")
def axial():
    return _phantom(False)


@pytest.fixture(scope="module")
def oblique_dicom(tmp_path_factory):
    """An oblique phantom written as a CT series and read back: (phantom, DicomSource)."""
    ph = _phantom(True)
    folder = tmp_path_factory.mktemp("ct")
    write_ct_series(ph.ct, folder, STUDY, slice_order="shuffled")
    return ph, read_dicom_series(folder)


def _save(ds, path) -> str:
    ds.save_as(path, enforce_file_format=True)
    return str(path)


def _present(labels: Volume, classes) -> list[int]:
    return [c for c in sorted(classes) if np.any(labels.array == c)]


def _masks_by_source_instance(seg: hd.seg.Segmentation, sop_uids: list[str]) -> np.ndarray:
    """(z, y, x, segments) binary masks, frames matched to source slices by SOP Instance UID."""
    return seg.get_pixels_by_source_instance(source_sop_instance_uids=sop_uids, combine_segments=False,
                                             assert_missing_frames_are_empty=True)


def _masks_by_position(seg: hd.seg.Segmentation, grid: Geometry) -> dict[int, np.ndarray]:
    """{segment number: (z, y, x) mask on ``grid``} placed by the SEG's own plane positions and orientation."""
    out = {}
    for item in seg.SegmentSequence:
        n = int(item.SegmentNumber)
        vol = seg.get_volume(segment_numbers=[n], combine_segments=False)
        idx = np.argwhere(vol.array[..., 0] > 0)
        lps = np.c_[idx, np.ones(len(idx))] @ vol.affine.T
        zyx = grid.to_index_zyx(lps[:, :3])
        assert np.abs(zyx - np.rint(zyx)).max() < 1e-3, "SEG voxels fall between the grid's voxel centres"
        mask = np.zeros(grid.shape_zyx, dtype=bool)
        k, j, i = np.rint(zyx).astype(int).T
        mask[k, j, i] = True
        out[n] = mask
    return out


def _assert_codes(item, class_index: int) -> None:
    c = dcodes.codes_for(class_index)
    cat = item.SegmentedPropertyCategoryCodeSequence[0]
    typ = item.SegmentedPropertyTypeCodeSequence[0]
    assert (cat.CodeValue, cat.CodingSchemeDesignator) == (c.category.value, "SCT")
    assert (typ.CodeValue, typ.CodingSchemeDesignator) == (c.type.value, "SCT")
    mods = typ.get("SegmentedPropertyTypeModifierCodeSequence", [])
    assert [m.CodeValue for m in mods] == ([c.type_modifier.value] if c.type_modifier else [])
    regions = item.get("AnatomicRegionSequence", [])
    assert [r.CodeValue for r in regions] == ([c.anatomic_region.value] if c.anatomic_region else [])


# ---- codes ---------------------------------------------------------------------------------

def test_codes_are_the_dicom_dictionarys():
    """Every code in the table is in pydicom's DICOM dictionaries with that meaning; spot checks by number."""
    by_value = {}
    for scheme in ("SCT", "DCM", "UCUM"):
        coll = getattr(codes, scheme)
        for name in coll.dir():
            code = getattr(coll, name)
            by_value.setdefault((scheme, code.value), set()).add(code.meaning)
    table = dcodes.CLASS_CODES
    assert set(table) == set(range(1, 33))
    for c in table.values():
        for code in (c.category, c.type, c.type_modifier, c.anatomic_region):
            if code is not None:
                assert code.meaning in by_value[(code.scheme_designator, code.value)]
    for code in dcodes.MEASUREMENTS.values():
        assert code.meaning in by_value[(code.scheme_designator, code.value)]
    expected = {V.LIVER: "10200004", V.SPLEEN: "78961009", V.PANCREAS: "15776009", V.RIGHT_KIDNEY: "64033007",
                V.LEFT_KIDNEY: "64033007", V.AORTA: "15825003", V.RIGHT_LUNG: "39607008", V.STOMACH: "69695003",
                V.GALL_BLADDER: "28231008", V.POSTCAVA: "64131007", V.PANCREAS_TUMOR: "108369006",
                V.KIDNEY_CYST: "367643001"}
    for c, value in expected.items():
        assert table[c].type.value == value
    assert table[V.RIGHT_KIDNEY].type_modifier.value == "24028007"
    assert table[V.LEFT_LUNG].type_modifier.value == "7771000"
    assert table[V.LIVER_TUMOR].category.value == "49755003"
    assert table[V.LIVER_TUMOR].anatomic_region.value == "10200004"
    assert table[V.LIVER].category.value == "91723000"
    m = dcodes.MEASUREMENTS
    assert (m["volume"].value, m["long_axis"].value, m["short_axis"].value, m["diameter"].value) == \
        ("118565006", "103339001", "103340004", "81827009")
    assert dcodes.UNITS["ml"].value == "ml" and dcodes.UNITS["mm"].value == "mm"


# ---- SEG -------------------------------------------------------------------------------------

def test_seg_from_a_nifti_source(axial, tmp_path):
    study = {**STUDY, "study_instance_uid": pydicom.uid.generate_uid(),
             "series_instance_uid": pydicom.uid.generate_uid(), "frame_of_reference_uid": pydicom.uid.generate_uid()}
    seg_ds = build_seg(axial.labels, CLASSES, study, None, MODEL)
    path = _save(seg_ds, tmp_path / "seg.dcm")
    assert dciodvfy_errors(path) == []

    seg = hd.seg.segread(path)
    present = _present(axial.labels, CLASSES)
    assert len(present) >= 8
    assert [(int(s.SegmentNumber), s.SegmentLabel) for s in seg.SegmentSequence] == \
        [(n, V.get(c).name) for n, c in enumerate(present, start=1)]
    for n, c in enumerate(present, start=1):
        item = seg.get_segment_description(n)
        _assert_codes(item, c)
        assert item.algorithm_type.value == "AUTOMATIC"
        alg = item.algorithm_identification[0]
        assert (alg.AlgorithmName, alg.AlgorithmVersion) == (MODEL["model_id"], MODEL["model_version"])
        assert alg.AlgorithmFamilyCodeSequence[0].CodeValue == "123110"  # Artificial Intelligence
        assert "class_table_sha256=" + MODEL["class_table_sha256"] in alg.AlgorithmParameters
    assert seg.SegmentationType == "BINARY"

    # the SEG sits in the study it was given and references the derived series, instance for instance
    assert seg.StudyInstanceUID == study["study_instance_uid"]
    assert seg.FrameOfReferenceUID == study["frame_of_reference_uid"]
    assert str(seg.PatientName) == "Doe^Jane" and seg.PatientID == "P-0001" and seg.AccessionNumber == "ACC42"
    ref = seg.ReferencedSeriesSequence[0]
    assert ref.SeriesInstanceUID == study["series_instance_uid"]
    nz = axial.labels.geometry.shape_zyx[0]
    sop_uids = [instance_uid(study["series_instance_uid"], k) for k in range(nz)]
    assert {r.ReferencedSOPInstanceUID for r in ref.ReferencedInstanceSequence} <= set(sop_uids)

    # same voxels per class: by source instance and by the SEG's own geometry
    masks = _masks_by_source_instance(seg, sop_uids)
    by_pos = _masks_by_position(seg, axial.labels.geometry)
    for n, c in enumerate(present, start=1):
        want = axial.labels.array == c
        assert np.array_equal(masks[..., n - 1] > 0, want), V.get(c).name
        assert np.array_equal(by_pos[n], want), V.get(c).name

    # writing the CT with the same study gives exactly the instances the SEG references
    paths = write_ct_series(axial.ct, tmp_path / "ct", study)
    assert [pydicom.dcmread(p).SOPInstanceUID for p in paths] == sop_uids


def test_seg_without_study_is_anonymous_but_valid(axial, tmp_path):
    seg_ds = build_seg(axial.labels, [V.LIVER, V.LIVER_TUMOR], {}, None, {})
    path = _save(seg_ds, tmp_path / "seg.dcm")
    assert dciodvfy_errors(path) == []
    seg = hd.seg.segread(path)
    assert str(seg.PatientName) == "" and seg.PatientID == ""
    assert pydicom.uid.UID(seg.StudyInstanceUID).is_valid
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID != seg.SeriesInstanceUID


def test_seg_from_a_dicom_source(oblique_dicom, tmp_path):
    ph, src = oblique_dicom
    seg_ds = build_seg(ph.labels, CLASSES, src.study, src, MODEL)
    path = _save(seg_ds, tmp_path / "seg.dcm")
    assert dciodvfy_errors(path) == []
    seg = hd.seg.segread(path)
    # same study, patient and frame of reference as the CT; frames reference its slices
    for key in ("StudyInstanceUID", "FrameOfReferenceUID", "PatientID", "AccessionNumber"):
        assert seg[key].value == src.headers[0][key].value
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == src.study["series_instance_uid"]
    sop_uids = [h.SOPInstanceUID for h in src.headers]
    for frame in seg.PerFrameFunctionalGroupsSequence:
        source_uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        k = sop_uids.index(source_uid)
        frame_ipp = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        assert frame_ipp == pytest.approx([float(v) for v in src.headers[k].ImagePositionPatient], abs=1e-6)
    present = _present(ph.labels, CLASSES)
    masks = _masks_by_source_instance(seg, sop_uids)
    by_pos = _masks_by_position(seg, src.volume.geometry)
    for n, c in enumerate(present, start=1):
        want = ph.labels.array == c
        assert np.array_equal(masks[..., n - 1] > 0, want), V.get(c).name
        assert np.array_equal(by_pos[n], want), V.get(c).name
        _assert_codes(seg.get_segment_description(n), c)


def test_seg_refuses_mismatched_grids_and_empty_requests(oblique_dicom, axial):
    ph, src = oblique_dicom
    g = ph.labels.geometry
    shifted = Volume(ph.labels.array, Geometry(g.shape_zyx, g.spacing_xyz_mm,
                                               tuple(np.asarray(g.origin_lps_mm) + [0.0, 2.0, 0.0]), g.direction))
    with pytest.raises(InvalidInputError, match="source CT series"):
        build_seg(shifted, CLASSES, {}, src, MODEL)
    cropped = Volume(ph.labels.array[1:].copy(), Geometry((31, 64, 64), g.spacing_xyz_mm, g.origin_lps_mm,
                                                         g.direction))
    with pytest.raises(InvalidInputError, match=r"does not match the source CT series grid"):
        build_seg(cropped, CLASSES, {}, src, MODEL)
    with pytest.raises(InvalidInputError, match="none of the requested classes"):
        build_seg(axial.labels, [V.PROSTATE], {}, None, MODEL)
    with pytest.raises(InvalidInputError, match="not in the vocabulary"):
        build_seg(axial.labels, [99], {}, None, MODEL)
    with pytest.raises(InvalidInputError, match="patient_sex"):
        build_seg(axial.labels, [V.LIVER], {"patient_sex": "female"}, None, MODEL)


# ---- SR --------------------------------------------------------------------------------------

def _by_concept(group) -> dict[str, hd.sr.Measurement]:
    out = {}
    for m in group.get_measurements():
        key = m.name.value
        if m.derivation is not None:
            key += "/" + m.derivation.value
        out[key] = m
    return out


def _assert_sr_matches(sr: hd.sr.Comprehensive3DSR, findings: dict, seg_ds) -> None:
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    evidence = {r.ReferencedSOPInstanceUID for study in sr.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence for r in series.ReferencedSOPSequence}
    assert seg_ds.SOPInstanceUID in evidence
    assert sr.StudyInstanceUID == seg_ds.StudyInstanceUID
    assert sr.PreliminaryFlag == "PRELIMINARY" and sr.VerificationFlag == "UNVERIFIED"
    groups = sr.content.get_volumetric_roi_measurement_groups()
    by_id = {str(g.tracking_identifier): g for g in groups}
    labels = {int(s.SegmentNumber): s.SegmentLabel for s in seg_ds.SegmentSequence}
    source_series = seg_ds.ReferencedSeriesSequence[0].SeriesInstanceUID
    n_lesions = 0
    for s in findings["structures"]:
        info = V.get(s["class_index"])
        if not s["voxel_count"]:
            continue
        items = [(f"{info.name} lesion {les['id']}", les) for les in s["lesions"]] if info.is_lesion \
            else [(info.name, s)]
        for ident, d in items:
            g = by_id[ident]
            ref = g.referenced_segment
            assert ref.referenced_sop_instance_uid == seg_ds.SOPInstanceUID
            assert labels[ref.referenced_segment_numbers[0]] == info.name
            assert ref.source_series_for_segmentation.value == source_series
            assert g.finding_type.value == dcodes.codes_for(info.index).type.value
            m = _by_concept(g)
            assert m["118565006"].value == pytest.approx(d["volume_ml"], rel=1e-9)
            assert m["118565006"].unit.value == "ml"
            assert m["112031/373098007"].value == pytest.approx(d["hu_mean"], rel=1e-9, abs=1e-9)
            if info.is_lesion:
                n_lesions += 1
                assert g.tracking_uid == lesion_tracking_uid(seg_ds.SOPInstanceUID, info.index, d["id"])
                assert m["103339001"].value == pytest.approx(d["long_axis_mm"], rel=1e-9)
                assert m["103340004"].value == pytest.approx(d["short_axis_mm"], rel=1e-9)
                assert m["81827009/56851009"].value == pytest.approx(d["max_diameter_mm"], rel=1e-9)
                assert {m[k].unit.value for k in ("103339001", "103340004", "81827009/56851009")} == {"mm"}
                site = g.finding_sites[0]
                host = d["host_class_index"]
                assert site.value.value == (dcodes.codes_for(host).site.value if host
                                            else dcodes.codes_for(info.index).site.value)
                if d["laterality"]:
                    assert site.laterality.value == dcodes.laterality_code(d["laterality"]).value
    assert n_lesions == sum(len(s["lesions"]) for s in findings["structures"]) >= 4
    assert len(groups) == len(by_id)


def test_sr_from_a_dicom_source(oblique_dicom, tmp_path):
    ph, src = oblique_dicom
    seg_ds = build_seg(ph.labels, CLASSES, src.study, src, MODEL)
    findings = measure(src.volume, ph.labels, classes=CLASSES).to_dict()
    sr_ds = build_sr(findings, seg_ds, src.study, src, MODEL)
    path = _save(sr_ds, tmp_path / "sr.dcm")
    assert dciodvfy_errors(path) == [], dciodvfy_report(path)
    sr = hd.sr.srread(path)
    _assert_sr_matches(sr, findings, seg_ds)
    # the CT slices are evidence too
    evidence = {r.ReferencedSOPInstanceUID for study in sr.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence for r in series.ReferencedSOPSequence}
    assert {h.SOPInstanceUID for h in src.headers} <= evidence
    assert str(sr.PatientName) == "Doe^Jane"


def test_sr_from_a_nifti_source(axial, tmp_path):
    seg_ds = build_seg(axial.labels, CLASSES, STUDY, None, MODEL)
    findings = measure(axial.ct, axial.labels, classes=CLASSES).to_dict()
    sr_ds = build_sr(findings, seg_ds, STUDY, None, MODEL)
    path = _save(sr_ds, tmp_path / "sr.dcm")
    assert dciodvfy_errors(path) == [], dciodvfy_report(path)
    _assert_sr_matches(hd.sr.srread(path), findings, seg_ds)


def test_sr_marks_structures_the_scan_cuts(axial, tmp_path):
    """The phantom's top slices dropped: what reaches the new first slice carries "Anatomy coverage
    incomplete" = that edge in its group; a whole structure carries none; the file stays conformant."""
    from dataclasses import replace

    keep = slice(6, None)
    geometry = replace(axial.ct.geometry, shape_zyx=axial.ct.array[keep].shape,
                       origin_lps_mm=tuple(axial.ct.geometry.to_lps(np.array([[6.0, 0.0, 0.0]]))[0]))
    ct, labels = Volume(axial.ct.array[keep], geometry), Volume(axial.labels.array[keep], geometry)
    seg_ds = build_seg(labels, CLASSES, STUDY, None, MODEL)
    findings = measure(ct, labels, classes=CLASSES).to_dict()
    cut = {s["class_index"]: s["scan_edges"] for s in findings["structures"] if s["scan_edges"]}
    assert any(not V.get(c).is_lesion for c in cut), f"the cut reaches no organ ({cut}): choose a deeper cut"
    path = _save(build_sr(findings, seg_ds, STUDY, None, MODEL), tmp_path / "sr.dcm")
    assert dciodvfy_errors(path) == [], dciodvfy_report(path)
    sr = hd.sr.srread(path)
    _assert_sr_matches(sr, findings, seg_ds)
    by_id = {str(g.tracking_identifier): g for g in sr.content.get_volumetric_roi_measurement_groups()}
    for s in findings["structures"]:
        if not s["voxel_count"] or V.get(s["class_index"]).is_lesion:
            continue
        group = by_id[V.get(s["class_index"]).name]
        edges = [e.value.value for e in group.get_qualitative_evaluations() if e.name.value == "130576"]
        assert edges == [dcodes.SCAN_EDGES[e].value for e in s["scan_edges"]]
    with pytest.raises(InvalidInputError, match="scan_edges"):
        bad = {**findings, "structures": [dict(s, scan_edges=["lateral"]) for s in findings["structures"]]}
        build_sr(bad, seg_ds, STUDY, None, MODEL)


def test_sr_refuses_mismatches(oblique_dicom, axial):
    ph, src = oblique_dicom
    seg_ds = build_seg(ph.labels, [V.LIVER, V.LIVER_TUMOR], src.study, src, MODEL)
    other = measure(axial.ct, axial.labels, classes=[V.LIVER, V.LIVER_TUMOR]).to_dict()
    with pytest.raises(InvalidInputError, match="findings grid"):
        build_sr(other, seg_ds, src.study, src, MODEL)
    findings = measure(src.volume, ph.labels, classes=[V.LIVER, V.LIVER_TUMOR, V.PANCREAS]).to_dict()
    with pytest.raises(InvalidInputError, match="the SEG has no segment for it"):
        build_sr(findings, seg_ds, src.study, src, MODEL)
    ok = measure(src.volume, ph.labels, classes=[V.LIVER, V.LIVER_TUMOR]).to_dict()
    with pytest.raises(InvalidInputError, match="not the SEG's study"):
        build_sr(ok, seg_ds, {"study_instance_uid": pydicom.uid.generate_uid()}, src, MODEL)
    with pytest.raises(InvalidInputError, match="Segmentation"):
        build_sr(ok, src.headers[0], src.study, src, MODEL)


# ---- headers sent over the wire -------------------------------------------------------------

def test_source_from_headers_rebuilds_the_source(oblique_dicom):
    ph, src = oblique_dicom
    raw = headers_to_bytes(src.headers)[::-1]
    rebuilt = source_from_headers(raw, ph.labels.geometry)
    assert [h.SOPInstanceUID for h in rebuilt.headers] == [h.SOPInstanceUID for h in src.headers]
    assert rebuilt.volume.geometry.matches(src.volume.geometry, tol_mm=1e-6)
    assert rebuilt.study == src.study
    seg_ds = build_seg(ph.labels, [V.LIVER], rebuilt.study, rebuilt, MODEL)
    assert seg_ds.ReferencedSeriesSequence[0].SeriesInstanceUID == src.study["series_instance_uid"]
    g = ph.labels.geometry
    other = Geometry(g.shape_zyx, (4.0, 5.0, 7.0), g.origin_lps_mm, g.direction)
    with pytest.raises(InvalidInputError, match="source DICOM series"):
        source_from_headers(raw, other)


def test_derived_source_matches_its_volume(axial):
    src = derived_source(axial.ct, STUDY)
    assert len(src.headers) == axial.ct.geometry.shape_zyx[0]
    assert src.study["patient_name"] == "Doe^Jane" and src.study["series_instance_uid"]
    rebuilt = source_from_headers(src.headers)
    assert rebuilt.volume.geometry.matches(axial.ct.geometry, tol_mm=1e-6)


def test_dciodvfy_helper_reports_errors(axial, tmp_path):
    """The conformance helper is not vacuous: a CT slice missing a type 1 attribute is an error."""
    path = write_ct_series(axial.ct, tmp_path / "ct")[0]
    ds = pydicom.dcmread(path)
    del ds.ImageType
    del ds.SOPInstanceUID
    ds.save_as(tmp_path / "broken.dcm")
    errors = dciodvfy_errors(tmp_path / "broken.dcm")
    assert errors and any("ImageType" in e or "SOPInstanceUID" in e for e in errors)
