"""The report core: wording, counts, absences, normal ranges, rules at their thresholds, provenance,
the aortic diameter on analytic tubes, and reports of measured phantoms."""

from __future__ import annotations

import io
import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from radmesh import __version__
from radmesh.common import vocabulary as V
from radmesh.common.errors import InvalidInputError
from radmesh.common.volume import Geometry, Volume
from radmesh.measurement.core import measure
from radmesh.report import rules
from radmesh.report.aorta import abdominal_aortic_diameter, max_axial_diameter, min_feret_width
from radmesh.report.core import DRAFT_NOTICE, generate
from radmesh.report.normals import NORMAL_VOLUMES, assess
from radmesh.report.sentences import number_word
from radmesh.text.parse import parse

NOW = datetime(2025, 3, 1, 12, 30, 5, tzinfo=timezone.utc)
GRID = {"shape_zyx": [80, 64, 64], "spacing_xyz_mm": [0.8, 0.8, 2.5], "origin_lps_mm": [0.0, 0.0, 0.0],
        "direction": [1, 0, 0, 0, 1, 0, 0, 0, 1]}


# ---- hand-written findings ------------------------------------------------------------------------

def lesion(id=1, long=23.0, short=17.0, slice_=44, vol=4.2, hu=45.0, host=V.PANCREAS, host_hu=110.0,
           att="hypoattenuating", sub="tail", side="", location="pancreatic tail"):
    return {"id": id, "volume_ml": vol, "max_diameter_mm": long + 1, "long_axis_mm": long, "short_axis_mm": short,
            "long_axis_slice": slice_, "hu_mean": hu, "host_class_index": host, "host_hu_mean": host_hu,
            "attenuation": att, "location": location, "subregion": sub, "laterality": side}


def structure(c, lesions=(), voxels=1000, vol=None, hu=60.0):
    vol = vol if vol is not None else (sum(x["volume_ml"] for x in lesions) if lesions else 100.0)
    return {"class_index": c, "voxel_count": voxels if (lesions or vol) else 0, "volume_ml": vol,
            "hu_mean": hu, "lesions": list(lesions)}


def findings(*structures):
    return {"structures": list(structures), "grid": GRID, "min_lesion_mm3": 10.0}


def intent(*targets, if_any=False, actions=("segment", "measure")):
    return {"targets": [{"class_index": c, "laterality": side, "subregion": sub} for c, side, sub in
                        (t if isinstance(t, tuple) else (t, "", "") for t in targets)],
            "actions": list(actions), "if_any": if_any}


def paragraph(report, heading):
    return next(p["text"] for p in report.data["findings"] if p["heading"] == heading)


# ---- one sentence per lesion class ------------------------------------------------------------------

def test_pancreatic_mass_sentence_and_impression():
    r = generate(findings(structure(V.PANCREAS, vol=80.0), structure(V.PANCREAS_TUMOR, [lesion()])),
                 intent(V.PANCREAS_TUMOR), now=NOW)
    assert paragraph(r, "Pancreas") == (
        "Volume 80.0 mL. A 23 × 17 mm hypoattenuating mass in the pancreatic tail (image 45), volume 4.2 mL, "
        "mean attenuation 45 HU versus 110 HU in the pancreas.")
    assert r.data["impression"][0] == "23 × 17 mm hypoattenuating mass in the pancreatic tail (image 45)."
    assert "Pancreas: Volume 80.0 mL. A 23 × 17 mm" in r.text
    les = r.data["structures"][1]["lesions"][0]
    assert les["image_number"] == 45 and les["slice_index"] == 44 and les["matches_request"] is True


def test_kidney_tumour_cyst_and_sides_and_poles():
    tumour = lesion(long=30.2, short=27.6, slice_=19, vol=11.04, hu=90.4, host=V.RIGHT_KIDNEY, host_hu=160.0,
                    sub="lower pole", side="right", location="right kidney, lower pole")
    cyst = lesion(long=18.0, short=15.0, slice_=32, vol=2.1, hu=8.0, host=V.LEFT_KIDNEY, host_hu=160.0,
                  sub="mid", side="left", location="left kidney, mid")
    r = generate(findings(structure(V.RIGHT_KIDNEY, vol=160.4), structure(V.LEFT_KIDNEY, vol=170.0),
                          structure(V.KIDNEY_TUMOR, [tumour]), structure(V.KIDNEY_CYST, [cyst])),
                 intent(V.KIDNEY_TUMOR), now=NOW)
    assert paragraph(r, "Kidneys") == (
        "Right kidney volume 160 mL; left kidney volume 170 mL. "
        "A 30 × 28 mm hypoattenuating mass in the lower pole of the right kidney (image 20), volume 11.0 mL, "
        "mean attenuation 90 HU versus 160 HU in the right kidney. "
        "An 18 × 15 mm hypoattenuating cyst in the interpolar region of the left kidney (image 33), volume 2.1 mL, "
        "mean attenuation 8 HU versus 160 HU in the left kidney.")
    assert r.data["impression"] == [
        "30 × 28 mm hypoattenuating mass in the lower pole of the right kidney (image 20).",
        "18 × 15 mm hypoattenuating cyst in the interpolar region of the left kidney (image 33)."]
    (rec,) = r.recommendations
    assert rec.rule == "bosniak_renal_cyst" and rec.lesion_id == 1 and "Bosniak I or II" in rec.text


def test_liver_lesions_are_counted_with_the_largest_in_full():
    ls = [lesion(1, 31.0, 24.0, 39, 12.1, 40.0, V.LIVER, 100.0, "hypoattenuating", "right lobe", "", "liver"),
          lesion(2, 12.0, 9.0, 51, 0.5, 70.0, V.LIVER, 100.0, "hypoattenuating", "left lobe", "", "liver"),
          lesion(3, 8.2, 6.0, 59, 0.2, 95.0, V.LIVER, 100.0, "isoattenuating", "right lobe", "", "liver")]
    r = generate(findings(structure(V.LIVER, vol=1520.4), structure(V.LIVER_TUMOR, ls)),
                 intent(V.LIVER_TUMOR, actions=("count",)), now=NOW)
    assert paragraph(r, "Liver") == (
        "Volume 1520 mL. Three liver lesions, the largest a 31 × 24 mm hypoattenuating lesion in the right "
        "hepatic lobe (image 40), volume 12.1 mL, mean attenuation 40 HU versus 100 HU in the liver; the others "
        "measure 12 × 9 mm in the left hepatic lobe (image 52, 0.50 mL, hypoattenuating) and 8 × 6 mm in the "
        "right hepatic lobe (image 60, 0.20 mL, isoattenuating).")
    assert r.data["impression"][0] == \
        "Three liver lesions, the largest 31 × 24 mm in the right hepatic lobe (image 40)."
    entry = r.data["structures"][1]
    assert entry["count"] == 3 and [x["id"] for x in entry["lesions"]] == [1, 2, 3]


def test_many_lesions_list_four_and_count_the_rest():
    ls = [lesion(n, 20.0 - n, 10.0, n, 1.0, 40.0, V.LIVER, 100.0, "hypoattenuating", "right lobe", "", "")
          for n in range(1, 8)]
    text = paragraph(generate(findings(structure(V.LIVER_TUMOR, ls)), intent(), now=NOW), "Liver")
    assert text.startswith("Seven liver lesions, the largest a 19 × 10 mm")
    assert text.endswith("and two smaller.")
    assert text.count("(image ") == 5


def test_two_lesions_read_the_other_measures():
    ls = [lesion(1), lesion(2, 11.0, 8.0, 10, 0.4, 50.0, sub="head", location="pancreatic head")]
    text = paragraph(generate(findings(structure(V.PANCREAS_TUMOR, ls)), intent(V.PANCREAS_TUMOR), now=NOW),
                     "Pancreas")
    assert text.startswith("Two pancreatic masses, the largest a 23 × 17 mm")
    assert "; the other measures 11 × 8 mm in the pancreatic head (image 11, 0.40 mL, hypoattenuating)." in text


def test_lung_nodule_and_mass_wording_without_lung_comparison():
    nod = lesion(1, 7.3, 5.9, 11, 0.15, 20.0, V.RIGHT_LUNG, -850.0, "hyperattenuating", "right", "right", "right lung")
    r = generate(findings(structure(V.LUNG_TUMOR, [nod])), intent(V.LUNG_TUMOR), now=NOW)
    assert paragraph(r, "Lungs") == \
        "A 7 × 6 mm nodule in the right lung (image 12), volume 0.15 mL, mean attenuation 20 HU."
    mass = lesion(1, 35.0, 30.0, 11, 18.0, 30.0, V.LEFT_LUNG, -850.0, "hyperattenuating", "left", "left", "left lung")
    r = generate(findings(structure(V.LUNG_TUMOR, [mass])), intent(), now=NOW)
    assert paragraph(r, "Lungs").startswith("A 35 × 30 mm mass in the left lung (image 12)")
    assert r.recommendations == ()  # the nodule guideline does not cover masses


def test_attenuation_comparison_is_omitted_without_a_host_organ():
    orphan = lesion(1, 10.0, 8.0, 4, 0.4, 50.0, host=0, host_hu=0.0, att="", sub="right lobe", location="liver")
    r = generate(findings(structure(V.LIVER_TUMOR, [orphan])), intent(V.LIVER_TUMOR), now=NOW)
    assert paragraph(r, "Liver") == ("A 10 × 8 mm lesion in the right hepatic lobe (image 5), volume 0.40 mL, "
                                     "mean attenuation 50 HU.")
    les = r.data["structures"][0]["lesions"][0]
    assert les["attenuation"] is None and les["host_hu_mean"] is None and "versus" not in r.text


# ---- absences -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("if_any", [True, False])
def test_requested_lesion_not_found_is_stated(if_any):
    f = findings(structure(V.PANCREAS, vol=75.0), structure(V.PANCREAS_TUMOR, [], voxels=0, vol=0.0))
    r = generate(f, intent(V.PANCREAS_TUMOR, if_any=if_any), now=NOW)
    assert r.data["impression"] == ["No pancreatic tumor identified."]
    assert paragraph(r, "Pancreas") == "Volume 75.0 mL. No pancreatic tumor identified."
    assert r.data["structures"][1]["found"] is False and r.data["request"]["if_any"] is if_any
    assert ("if any" in r.text.splitlines()[2]) is if_any


def test_request_narrowed_to_a_subregion_reports_what_is_elsewhere():
    head = lesion(sub="head", location="pancreatic head")
    r = generate(findings(structure(V.PANCREAS_TUMOR, [head])), intent((V.PANCREAS_TUMOR, "", "tail"), if_any=True),
                 now=NOW)
    assert r.data["impression"] == ["No pancreatic tumor identified in the pancreatic tail.",
                                    "23 × 17 mm hypoattenuating mass in the pancreatic head (image 45)."]
    assert paragraph(r, "Pancreas").endswith("No pancreatic tumor identified in the pancreatic tail.")
    assert r.data["structures"][0]["lesions"][0]["matches_request"] is False


def test_voxels_below_the_size_threshold_are_not_a_lesion():
    r = generate(findings(structure(V.KIDNEY_CYST, [], voxels=3, vol=0.004)), intent(V.KIDNEY_CYST), now=NOW)
    assert paragraph(r, "Kidneys") == ("No renal cyst identified (labelled voxels of Kidney Cyst form no component "
                                       "of 10 mm³ or more).")


def test_requested_organ_absent_and_nothing_found():
    r = generate(findings(structure(V.SPLEEN, voxels=0, vol=0.0)), intent(V.SPLEEN), now=NOW)
    assert r.data["impression"] == ["Spleen not identified in the label map."]
    r = generate(findings(structure(V.LIVER, vol=1400.0)), intent(), now=NOW)
    assert r.data["impression"] == ["No lesion identified in the segmented structures."]
    assert "REQUEST: all segmented structures" in r.text


# ---- normal ranges --------------------------------------------------------------------------------------

@pytest.mark.parametrize("volume, state", [(107.1, "below"), (107.2, "within"), (314.5, "within"), (314.6, "above")])
def test_spleen_against_its_published_range(volume, state):
    assert assess(V.SPLEEN, volume).state == state
    r = generate(findings(structure(V.SPLEEN, vol=volume)), intent(V.SPLEEN), now=NOW)
    entry = r.data["structures"][0]
    assert entry["volume_assessment"] == state
    assert entry["normal_range"]["high_ml"] == 314.5 and "Eur Radiol 1997;7:246-248" in entry["normal_range"]["source"]
    assert f"{state} the normal range (107.2–314.5 mL, Prassopoulos et al. 1997)" in paragraph(r, "Spleen")
    assert [x.rule for x in r.recommendations] == (["splenomegaly"] if state == "above" else [])


@pytest.mark.parametrize("volume, state", [(200.0, None), (400.0, "above")])
def test_structures_the_scan_cuts_are_lower_bounds(volume, state):
    """A spleen and a lesion reaching the scan's edges: both said to continue outside it; the spleen's volume
    is compared with the normal range only where even the lower bound lies above it."""
    cut = dict(lesion(), scan_edges=["inferior"])
    spleen = dict(structure(V.SPLEEN, vol=volume), scan_edges=["superior", "field of view"])
    r = generate(findings(spleen, structure(V.PANCREAS, vol=80.0), structure(V.PANCREAS_TUMOR, [cut])),
                 intent(V.PANCREAS_TUMOR, V.SPLEEN), now=NOW)
    entry = next(e for e in r.data["structures"] if e["class_index"] == V.SPLEEN)
    assert entry["volume_assessment"] == state and entry["scan_edges"] == ["superior", "field of view"]
    text = paragraph(r, "Spleen")
    assert ("the spleen reaches the superior edge of the scan and the edge of the field of view and continues "
            "outside it, so this volume is a lower bound") in text
    assert ("above the normal range" in text) == (state == "above") and "within" not in text
    assert paragraph(r, "Pancreas").endswith(
        "It reaches the inferior edge of the scan and continues outside it: its size and volume are lower bounds.")
    les = next(e for e in r.data["structures"] if e["class_index"] == V.PANCREAS_TUMOR)["lesions"][0]
    assert les["scan_edges"] == ["inferior"]
    whole = generate(findings(structure(V.PANCREAS, vol=80.0), structure(V.PANCREAS_TUMOR, [lesion()])),
                     intent(V.PANCREAS_TUMOR), now=NOW)
    assert "continues outside" not in whole.text


def test_no_range_is_claimed_where_none_is_published():
    assert set(NORMAL_VOLUMES) == {V.SPLEEN}
    r = generate(findings(structure(V.LIVER, vol=2900.0), structure(V.RIGHT_KIDNEY, vol=400.0)), intent(), now=NOW)
    for entry in r.data["structures"]:
        assert entry["normal_range"] is None and entry["volume_assessment"] is None
    assert "normal range" not in r.text


# ---- rules on both sides of every boundary -----------------------------------------------------------------

@pytest.mark.parametrize("d, expect", [
    (25.4, None), (25.5, "rescreening after 10 years"), (29.4, "rescreening after 10 years"),
    (29.5, "3-year intervals"), (39.4, "3-year intervals"), (39.5, "12-month intervals"),
    (49.4, "12-month intervals"), (49.5, "6-month intervals"), (54.4, "6-month intervals"),
    (54.5, "refer to vascular surgery")])
def test_aortic_thresholds(d, expect):
    r = rules.abdominal_aortic_aneurysm(d)
    if expect is None:
        assert r is None
        return
    assert expect in r.text and r.source == rules.SVS_AAA_2018 and "J Vasc Surg 2018;67:2-77" in r.source
    assert r.class_index == V.AORTA
    assert r.impression.startswith("Abdominal aortic aneurysm" if rules.whole(d) >= 30 else "Ectatic abdominal aorta")


@pytest.mark.parametrize("long, short, band, advice", [
    (5.6, 5.2, "< 6 mm", "no routine follow-up"), (6.0, 5.0, "6–8 mm", "CT at 6–12 months"),
    (8.6, 8.2, "6–8 mm", "CT at 6–12 months"),
    (9.0, 8.0, "> 8 mm", "consider CT at 3 months, PET/CT or tissue sampling")])
def test_fleischner_single_solid_nodule(long, short, band, advice):
    r = rules.fleischner_solid_nodules([rules.Nodule(1, long, short)], 60)
    assert band in r.text and advice in r.text and "aged 35 years or older without known cancer" in r.text
    assert r.source == rules.FLEISCHNER_2017 and "Radiology 2017;284:228-243" in r.source


@pytest.mark.parametrize("largest, advice", [((5.6, 5.39), "no routine follow-up"), ((5.6, 5.4), "CT at 3–6 months")])
def test_fleischner_multiple_nodules_follow_the_largest(largest, advice):
    r = rules.fleischner_solid_nodules([rules.Nodule(1, 4.0, 3.0), rules.Nodule(2, *largest)], None)
    assert r.text.startswith("Multiple solid nodules (2)") and advice in r.text and r.lesion_id == 2


def test_fleischner_age_and_masses():
    assert "does not apply under 35 years" in rules.fleischner_solid_nodules([rules.Nodule(1, 7, 6)], 34).text
    assert "Patient aged 35 years." in rules.fleischner_solid_nodules([rules.Nodule(1, 7, 6)], 35).text
    assert rules.fleischner_solid_nodules([rules.Nodule(1, 30.0, 20.0)], 50) is not None
    assert rules.fleischner_solid_nodules([rules.Nodule(1, 30.1, 20.0)], 50) is None


@pytest.mark.parametrize("hu, expect", [(-9.6, "outside"), (-9.5, "simple-fluid"), (20.4, "simple-fluid"),
                                        (20.5, "Bosniak II if this is a portal venous"), (30.4, "Bosniak II if"),
                                        (30.5, "outside")])
def test_bosniak_attenuation_bands(hu, expect):
    r = rules.bosniak_renal_cyst(3, hu)
    assert expect in r.text and r.lesion_id == 3 and r.source == rules.BOSNIAK_2019
    assert "Radiology 2019;292:475-488" in r.source


def test_splenomegaly_threshold():
    assert rules.splenomegaly(314.5) is None
    r = rules.splenomegaly(314.6)
    assert "splenomegaly" in r.text and "Prassopoulos" in r.source and r.impression.startswith("Splenomegaly")


def test_rules_run_only_on_inputs_the_findings_hold():
    # an aorta without a label map: no diameter, so no aortic rule — and the report says why
    r = generate(findings(structure(V.AORTA, vol=80.0)), intent(), now=NOW)
    assert r.data["aorta"]["measured"] is False and r.recommendations == ()
    assert "Aorta: Diameter not measured: no label map was sent" in r.text
    # no lung lesion, no spleen, no cyst: no rule
    r = generate(findings(structure(V.LIVER, vol=1500.0)), intent(), now=NOW)
    assert r.recommendations == () and r.data["aorta"] is None


def test_patient_age_from_study_gates_fleischner():
    nod = lesion(1, 7.0, 6.0, 11, 0.15, 20.0, V.RIGHT_LUNG, -850.0, "hyperattenuating", "right", "right", "right lung")
    f = findings(structure(V.LUNG_TUMOR, [nod]))
    young = generate(f, intent(), {"patient_birth_date": "19950302", "study_date": "20250301"}, now=NOW)
    assert young.data["study"]["patient_age_years"] == 29 and "does not apply under 35" in young.recommendations[0].text
    older = generate(f, intent(), {"patient_birth_date": "19600301", "study_date": "20250301"}, now=NOW)
    assert "Patient aged 65 years." in older.recommendations[0].text
    assert "age 65 years" in older.text


# ---- provenance -------------------------------------------------------------------------------------------

def test_provenance_names_model_classes_software_time_and_draft():
    model = {"model_id": "radmesh-unet-phantom", "model_version": "radmesh-unet-phantom-1",
             "embedding_backend": "minilm", "class_table_sha256": "ab" * 32}
    f = findings(structure(V.LIVER, vol=1500.0), structure(V.LIVER_TUMOR, [lesion(host=V.LIVER, sub="right lobe")]))
    local = datetime(2025, 3, 1, 13, 30, 5, tzinfo=timezone(timedelta(hours=1)))
    r = generate(f, intent(V.LIVER_TUMOR), model=model, validated_classes=[V.LIVER, V.SPLEEN], now=local)
    p = r.data["provenance"]
    assert p["generated_at"] == "2025-03-01T12:30:05Z"
    assert p["model_id"] == "radmesh-unet-phantom" and p["model_version"] == "radmesh-unet-phantom-1"
    assert p["embedding_backend"] == "minilm" and p["software_version"] == __version__
    assert p["validated_classes"] == ["Liver", "Spleen"] and p["reported_classes_not_validated"] == ["Liver Tumor"]
    assert r.provenance == (
        "Model radmesh-unet-phantom version radmesh-unet-phantom-1; embedding backend minilm; classes validated: "
        "Liver, Spleen; reported but not validated for this model: Liver Tumor. "
        f"Software radmesh {__version__}. Generated 2025-03-01T12:30:05Z. {DRAFT_NOTICE}")
    assert r.text.startswith(f"RADMESH STRUCTURED REPORT — {DRAFT_NOTICE}")
    assert r.text.rstrip().endswith(r.provenance)
    assert "not for diagnostic use until validated on real CT" in DRAFT_NOTICE


def test_provenance_without_model_information():
    r = generate(findings(structure(V.LIVER, vol=1500.0)), intent(), now=NOW)
    assert r.provenance.startswith("Model not stated") and "classes validated: not stated" in r.provenance
    assert r.data["provenance"]["validated_classes"] is None


# ---- bad input ---------------------------------------------------------------------------------------------

def test_bad_inputs_are_named():
    f = findings(structure(V.LIVER, vol=1500.0))
    with pytest.raises(InvalidInputError, match="Pancreas Tumor.*do not cover"):
        generate(f, intent(V.PANCREAS_TUMOR))
    unsupported = {"targets": [], "actions": [], "if_any": False, "unsupported": True,
                   "unsupported_phrase": "brain tumor", "suggestions": [{"class_index": 27, "name": "Liver Tumor"}]}
    with pytest.raises(InvalidInputError, match="'brain tumor' is not in the vocabulary .nearest: Liver Tumor"):
        generate(f, unsupported)
    with pytest.raises(InvalidInputError, match="unknown fields"):
        generate(f, intent(), {"patient_weight": "80"})
    with pytest.raises(InvalidInputError, match="YYYYMMDD"):
        generate(f, intent(), {"study_date": "2025-03-01"})
    with pytest.raises(InvalidInputError, match="MeasureResponse"):
        generate({"structures": [], "grids": {}}, intent())
    with pytest.raises(InvalidInputError, match="class index 40"):
        generate(findings({"class_index": 40, "voxel_count": 1, "volume_ml": 1.0}), intent())
    with pytest.raises(InvalidInputError, match="outside the grid"):
        generate(findings(structure(V.LIVER_TUMOR, [lesion(slice_=80, host=V.LIVER)])), intent())


def test_findings_must_match_the_label_map():
    g = Geometry((20, 32, 32), (1.0, 1.0, 2.0))
    lab = np.zeros(g.shape_zyx, np.uint8)
    lab[5:10, 10:20, 10:20] = V.LIVER
    ct = Volume(np.full(g.shape_zyx, 60, np.int16), g)
    f = measure(ct, Volume(lab, g)).to_dict()
    assert generate(f, intent(), labels=Volume(lab, g), now=NOW).data["structures"][0]["voxel_count"] == 500
    other = lab.copy()
    other[5, 10, 10] = 0
    with pytest.raises(InvalidInputError, match="Liver has 500 voxels in the findings but 499"):
        generate(f, intent(), labels=Volume(other, g))
    with pytest.raises(InvalidInputError, match="do not match the label map"):
        generate(f, intent(), labels=Volume(lab[:, :, :30].copy(), Geometry((20, 32, 30), (1.0, 1.0, 2.0))))


# ---- image numbers from the source DICOM headers -----------------------------------------------------------

def _header(z_mm: float, instance: int) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, "CT"
    ds.ImagePositionPatient = [0.0, 0.0, z_mm]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.InstanceNumber = instance
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_image_numbers_follow_the_source_instance_numbers():
    nz = GRID["shape_zyx"][0]
    # the scanner numbered the slices head to feet (instance 1 = most superior), stored here in any order
    headers = [_header(2.5 * k, nz - k) for k in reversed(range(nz))]
    f = findings(structure(V.PANCREAS_TUMOR, [lesion(slice_=44)]))
    r = generate(f, intent(V.PANCREAS_TUMOR), {"source_dicom_headers": headers}, now=NOW)
    assert r.data["structures"][0]["lesions"][0]["image_number"] == nz - 44
    assert r.data["technique"]["image_numbering"]["scheme"] == "instance_number"
    assert "Instance Number (0020,0013)" in r.text and f"(image {nz - 44})" in r.text
    with pytest.raises(InvalidInputError, match="headers"):
        generate(f, intent(), {"source_dicom_headers": headers[:-1]})
    shifted = [_header(2.5 * k + 7.0, k + 1) for k in range(nz)]
    with pytest.raises(InvalidInputError, match="do not lie on the findings' grid"):
        generate(f, intent(), {"source_dicom_headers": shifted})


# ---- the aortic diameter against analytic tubes --------------------------------------------------------------

def _tube(radius_mm, tilt_deg, spacing=(0.7, 0.9, 2.5), shape=(30, 110, 110)):
    g = Geometry(shape, spacing, (-38.0, -49.0, -80.0))
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    p = g.to_lps(idx)
    t = math.radians(tilt_deg)
    axis = np.array([math.sin(t), 0.0, math.cos(t)])
    d = p - np.array([0.0, 0.0, -45.0])
    perp = d - (d @ axis)[:, None] * axis
    lab = np.where(np.linalg.norm(perp, axis=1) <= radius_mm, V.AORTA, 0).astype(np.uint8).reshape(shape)
    return lab, g


@pytest.mark.parametrize("radius_mm, tilt_deg", [(10.0, 0.0), (14.6, 0.0), (14.6, 30.0), (21.0, 25.0)])
def test_aortic_diameter_is_the_perpendicular_diameter_of_a_tilted_tube(radius_mm, tilt_deg):
    lab, g = _tube(radius_mm, tilt_deg)
    d = max_axial_diameter(lab, g)
    # the caliper closes on voxel edges: within one in-plane voxel of the true diameter, whatever the tilt
    # (the longest in-plane diameter would read 2R / cos(tilt): 15 % long at 30°)
    assert abs(d.diameter_mm - 2 * radius_mm) <= max(g.spacing_xyz_mm[:2])
    assert d.sections == g.shape_zyx[0]


def test_min_feret_width_is_exact_on_polygons():
    assert min_feret_width(np.array([[0, 0], [10, 0], [10, 4], [0, 4], [5, 2]])) == pytest.approx(4.0)
    tri = np.array([[0, 0], [6, 0], [3, 3 * math.sqrt(3)]])  # equilateral, side 6: width = its height
    assert min_feret_width(tri) == pytest.approx(3 * math.sqrt(3))
    assert min_feret_width(np.array([[0, 0], [1, 1], [2, 2]])) == 0.0


def test_abdominal_part_is_below_the_lung_bases():
    lab, g = _tube(12.0, 0.0, shape=(30, 110, 110))
    # a wide "thoracic" aorta in the upper slices beside a lung whose lowest voxel is at slice 20
    wide, _ = _tube(20.0, 0.0, shape=(30, 110, 110))
    lab[21:][wide[21:] == V.AORTA] = V.AORTA
    lab[20:, 0:20, 0:20] = V.RIGHT_LUNG
    d = abdominal_aortic_diameter(lab, g)
    assert d.region == "below the lung bases" and d.slice_index < 20 and d.sections == 20
    assert abs(d.diameter_mm - 24.0) <= 0.9
    whole_label = max_axial_diameter(lab, g)
    assert abs(whole_label.diameter_mm - 40.0) <= 0.9


# ---- reports of measured phantoms --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_phantom():
    from radmesh.phantom.generator import PhantomConfig, generate as make

    ph = make(3, PhantomConfig(in_plane_size=96, spacing_xyz_mm=(3.5, 3.5, 4.0), slices=50, oblique=False,
                               lesions=(V.KIDNEY_TUMOR, V.LIVER_TUMOR, V.LIVER_TUMOR, V.PANCREAS_TUMOR,
                                        V.LUNG_TUMOR, V.KIDNEY_CYST)))
    return ph, measure(ph.ct, ph.labels).to_dict()


def test_phantom_report_describes_every_measured_lesion(small_phantom):
    ph, f = small_phantom
    r = generate(f, parse("segment the pancreatic tumor and measure it").to_dict(), labels=ph.labels, now=NOW)
    by_class = {s["class_index"]: s for s in f["structures"]}
    for c in (V.KIDNEY_TUMOR, V.LIVER_TUMOR, V.PANCREAS_TUMOR, V.LUNG_TUMOR, V.KIDNEY_CYST):
        lesions = by_class[c]["lesions"]
        assert lesions, f"phantom lost its {V.get(c).name}"
        entry = next(e for e in r.data["structures"] if e["class_index"] == c)
        assert entry["count"] == len(lesions)
        for got, meas in zip(entry["lesions"], lesions):
            assert got["image_number"] == meas["long_axis_slice"] + 1
            assert got["sentence"] in r.text or len(lesions) > 1
            assert f"(image {meas['long_axis_slice'] + 1}" in r.text
    pancreas = by_class[V.PANCREAS_TUMOR]["lesions"][0]
    where = f"in the pancreatic {pancreas['subregion']} (image {pancreas['long_axis_slice'] + 1})"
    assert where in r.data["impression"][0]
    liver = by_class[V.LIVER_TUMOR]["lesions"]
    count = "A " if len(liver) == 1 else f"{number_word(len(liver)).capitalize()} liver lesions, the largest a "
    assert f"mL. {count}" in paragraph(r, "Liver")
    assert r.data["aorta"]["measured"] and r.data["aorta"]["region"] == "below the lung bases"
    assert 15.0 < r.data["aorta"]["max_diameter_mm"] < 32.0  # the phantom's aorta: 2 × (10.5–13 mm) × body scale
    assert {x.rule for x in r.recommendations} >= {"bosniak_renal_cyst", "fleischner_solid_nodules"}


def test_impression_states_the_aortic_calibre_not_its_volume(small_phantom):
    ph, f = small_phantom
    r = generate(f, parse("measure the aorta").to_dict(), labels=ph.labels, now=NOW)
    d_mm = r.data["aorta"]["max_diameter_mm"]
    assert d_mm < 25.5  # the phantom's aorta is not dilated
    assert r.data["impression"][0] == f"Abdominal aorta not aneurysmal (maximal diameter {d_mm:.0f} mm)."
    assert not any("Aorta volume" in item for item in r.data["impression"])
