"""`radmesh serve report` as a real process on loopback, and `radmesh report` in-process and through it."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from conftest import free_port, start_service
from radmesh.cli import main
from radmesh.common import vocabulary as V
from radmesh.common.errors import InvalidInputError, RadmeshError
from radmesh.common.imageio import read_volume, write_volume
from radmesh.common.volume import Geometry, Volume
from radmesh.measurement.core import DEFAULT_MIN_LESION_MM3, measure
from radmesh.report import artifacts
from radmesh.report import command
from radmesh.report.client import generate_requests, read_responses
from radmesh.report.convert import options_to_proto
from radmesh.report.server import artifact_messages
from radmesh.v1 import report_pb2, report_pb2_grpc

SERVICE = "radmesh.v1.ReportService"
PROMPT = "segment the pancreatic tumor and measure it"
STUDY = {"patient_name": "Phantom^Three", "patient_id": "PH-0003", "patient_sex": "F",
         "patient_birth_date": "19600101", "study_date": "20250301", "accession_number": "ACC0003",
         "study_description": "CT ABDOMEN PHANTOM"}
INTENT = {"targets": [{"class_index": V.PANCREAS_TUMOR, "laterality": "", "subregion": ""}],
          "actions": ["segment", "measure"], "if_any": False}


@pytest.fixture(scope="module")
def report_service(tmp_path_factory):
    svc = start_service("report", tmp_path_factory.mktemp("svc"), "--drain-s", "5")
    yield svc
    assert svc.stop() == 0


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A small phantom on disk with a lesion of every class the phantoms make."""
    from radmesh.phantom.generator import PhantomConfig, generate, write_phantom

    out = tmp_path_factory.mktemp("case")
    ph = generate(3, PhantomConfig(in_plane_size=96, spacing_xyz_mm=(3.5, 3.5, 4.0), slices=50, oblique=False,
                                   lesions=(V.KIDNEY_TUMOR, V.LIVER_TUMOR, V.LIVER_TUMOR, V.PANCREAS_TUMOR,
                                            V.LUNG_TUMOR, V.KIDNEY_CYST)))
    paths = write_phantom(ph, out)
    # the same CT as a DICOM series whose Instance Numbers run against z (file 1 = last slice)
    from radmesh.dicom.write_ct import write_ct_series

    write_ct_series(ph.ct, out / "dicom", STUDY, reverse_files=True)
    paths["dicom"] = out / "dicom"
    model = out / "model.json"
    model.write_text(json.dumps({"model_id": "radmesh-unet-phantom", "model_version": "radmesh-unet-phantom-1",
                                 "embedding_backend": "minilm", "validated_class_indices": [1, 2, 3, 6, 11, 28]}))
    return ph, paths, model


@pytest.fixture
def stub(report_service):
    with grpc.insecure_channel(report_service.target) as ch:
        yield report_pb2_grpc.ReportServiceStub(ch)


def _without_time(doc: dict) -> dict:
    doc = json.loads(json.dumps(doc))
    doc["provenance"].pop("generated_at")
    return doc


def _text_without_time(text: str) -> str:
    return re.sub(r"Generated \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "Generated <time>", text)


def test_health_and_reflection(report_service):
    with grpc.insecure_channel(report_service.target) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for name in ("", SERVICE):
            assert health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status == \
                health_pb2.HealthCheckResponse.SERVING
        assert SERVICE in ProtoReflectionDescriptorDatabase(ch).get_services()


def test_cli_in_process_and_through_the_service_agree(report_service, case, tmp_path, capsys):
    ph, paths, model = case
    base = ["report", "--ct", str(paths["dicom"]), "--mask", str(paths["labels"]), "--prompt", PROMPT,
            "--model-info", str(model)]
    assert main([*base, "--out", str(tmp_path / "local")]) == 0
    local_out = capsys.readouterr().out
    assert main([*base, "--out", str(tmp_path / "remote"), "--server", report_service.target]) == 0
    remote_out = capsys.readouterr().out
    local, remote = tmp_path / "local", tmp_path / "remote"
    names = {"report.json", "report.txt", "seg.dcm", "sr.dcm", "labels.nii.gz"}
    assert {p.name for p in local.iterdir()} == names == {p.name for p in remote.iterdir()}

    doc_l, doc_r = (json.loads((d / "report.json").read_text()) for d in (local, remote))
    assert _without_time(doc_l) == _without_time(doc_r)
    txt_l, txt_r = ((d / "report.txt").read_text() for d in (local, remote))
    assert _text_without_time(txt_l) == _text_without_time(txt_r)
    assert _text_without_time(local_out).split("wrote ")[0] == _text_without_time(remote_out).split("wrote ")[0]
    assert (local / "labels.nii.gz").read_bytes() == (remote / "labels.nii.gz").read_bytes()
    np.testing.assert_array_equal(read_volume(local / "labels.nii.gz").array, ph.labels.array)
    source_uids = _source_uids(paths["dicom"])
    for name in ("seg.dcm", "sr.dcm"):
        _assert_same_dicom(local / name, remote / name, source_uids)

    # the report itself: study facts from the DICOM headers, image numbers = their Instance Numbers
    nz = ph.ct.geometry.shape_zyx[0]
    assert doc_l["study"]["patient_id"] == "PH-0003" and doc_l["study"]["patient_age_years"] == 65
    assert doc_l["technique"]["image_numbering"]["scheme"] == "instance_number"
    tumour = next(s for s in doc_l["structures"] if s["class_index"] == V.PANCREAS_TUMOR)["lesions"][0]
    assert tumour["image_number"] == nz - tumour["slice_index"]
    assert doc_l["impression"][0].endswith(f"in the {tumour['place']} (image {tumour['image_number']}).")
    assert doc_l["provenance"]["model_id"] == "radmesh-unet-phantom"
    assert doc_l["provenance"]["validated_classes"][-1] == "Pancreas Tumor"
    assert "PATIENT: Phantom^Three, ID PH-0003, sex F, age 65 years" in txt_l
    assert "not for diagnostic use until validated on real CT" in txt_l
    assert "FINDINGS:" in txt_l and "IMPRESSION:" in txt_l


def _source_uids(folder: Path) -> set[str]:
    import pydicom

    uids = set()
    for f in folder.iterdir():
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        uids |= {str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.FrameOfReferenceUID),
                 str(ds.SOPInstanceUID)}
    return uids


def _assert_same_dicom(a: Path, b: Path, source_uids: set[str]) -> None:
    """Same content, and the same references to the source CT; only what the writer mints per call
    (UIDs of the new objects, creation times) may differ."""
    import pydicom

    minted_times = {"ContentDate", "ContentTime", "InstanceCreationDate", "InstanceCreationTime",
                    "ContributionDateTime", "SeriesDate", "SeriesTime"}

    def plain(ds):
        out = []
        for el in ds.iterall():
            if el.keyword in minted_times:
                continue
            value = None if el.VR == "SQ" else el.value
            if el.VR == "UI" and el.keyword not in ("SOPClassUID", "ReferencedSOPClassUID") \
                    and str(value) not in source_uids and not str(value).startswith("1.2.840.10008."):
                value = "<minted>"
            out.append((el.tag, el.VR, value))
        return out

    da, db = pydicom.dcmread(a), pydicom.dcmread(b)
    pa, pb = plain(da), plain(db)
    assert pa == pb
    referenced = {v for _, vr, v in pa if vr == "UI" and v in source_uids}
    assert str(da.StudyInstanceUID) in referenced  # the source CT's study, not a new one
    assert len(referenced) > 3  # and its series, frame of reference and slices


def _findings(case):
    ph, _, _ = case
    return ph, measure(ph.ct, ph.labels).to_dict()


def _call(stub, requests):
    with pytest.raises(grpc.RpcError) as e:
        list(stub.Generate(iter(list(requests)), timeout=60))
    return e.value.code(), e.value.details()


def test_status_codes(stub, case):
    ph, f = _findings(case)
    # DICOM or NIfTI output without the label map
    options = options_to_proto(f, INTENT, None, None, None, ["seg", "nifti"])
    code, details = _call(stub, generate_requests(options))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "without a label map" in details
    # findings that do not match the label map
    tampered = json.loads(json.dumps(f))
    tampered["structures"][0]["voxel_count"] += 1
    code, details = _call(stub, generate_requests(options_to_proto(tampered, INTENT, None, None, None, []), ph.labels))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "do not match the label map" in details
    other = Volume(ph.labels.array[:-1].copy(), Geometry((49, 96, 96), ph.labels.geometry.spacing_xyz_mm,
                                                         ph.labels.geometry.origin_lps_mm))
    code, details = _call(stub, generate_requests(options_to_proto(f, INTENT, None, None, None, []), other))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "grid" in details
    # a request outside the vocabulary, a class the findings lack, a bad study field
    unsupported = {"targets": [], "unsupported": True, "unsupported_phrase": "brain tumor"}
    code, details = _call(stub, generate_requests(options_to_proto(f, unsupported, None, None, None, [])))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "brain tumor" in details
    lacking = {"structures": [s for s in f["structures"] if s["class_index"] != V.PANCREAS_TUMOR],
               "grid": f["grid"], "min_lesion_mm3": 10.0}
    code, details = _call(stub, generate_requests(options_to_proto(lacking, INTENT, None, None, None, [])))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "Pancreas Tumor" in details
    bad_date = options_to_proto(f, INTENT, {"study_date": "yesterday"}, None, None, [])
    code, details = _call(stub, generate_requests(bad_date))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "YYYYMMDD" in details
    # stream order
    reqs = list(generate_requests(options_to_proto(f, INTENT, None, None, None, ["nifti"]), ph.labels))
    code, details = _call(stub, [reqs[1], reqs[0], *reqs[2:]])
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "before GenerateOptions" in details
    code, details = _call(stub, reqs[1:])
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_report_only_without_a_label_map(stub, case, report_service):
    _, f = _findings(case)
    study = {"patient_name": "Doe^Jane", "patient_id": "PID-424242", "study_date": "20250301"}
    report, files = read_responses(stub.Generate(generate_requests(
        options_to_proto(f, INTENT, study, None, None, [])), timeout=60))
    doc = json.loads(report.json)
    assert files == {} and doc["aorta"]["measured"] is False
    assert "Diameter not measured: no label map was sent" in report.text
    assert [r.source for r in report.recommendations] == [r["source"] for r in doc["recommendations"]]
    assert report.provenance in report.text
    assert "PATIENT: Doe^Jane, ID PID-424242" in report.text and doc["study"]["study_date"] == "20250301"
    with urllib.request.urlopen(f"http://127.0.0.1:{report_service.metrics_port}/metrics", timeout=5) as r:
        metrics = r.read().decode()
    assert 'radmesh_grpc_requests_total{code="OK",method="Generate",service="radmesh.v1.ReportService"}' in metrics
    assert "PID-424242" not in report_service.log() and "Doe^Jane" not in report_service.log()


def test_large_artifacts_travel_in_chunks_and_are_verified():
    blob = bytes(range(256)) * 40  # 10,240 bytes
    msgs = list(artifact_messages("labels.nii.gz", blob, chunk_bytes=4096))
    assert [m.WhichOneof("item") for m in msgs] == ["artifact"] + ["artifact_chunk"] * 3
    head = report_pb2.GenerateResponse(report=report_pb2.Report(text="t", json="{}"))
    _, files = read_responses([head, *msgs])
    assert files == {"labels.nii.gz": blob}
    small = list(artifact_messages("seg.dcm", b"abc"))
    assert len(small) == 1 and small[0].artifact.data == b"abc"
    msgs[2].artifact_chunk.data = b"x" + msgs[2].artifact_chunk.data[1:]
    with pytest.raises(RadmeshError, match="corrupted"):
        read_responses([head, *msgs])
    with pytest.raises(RadmeshError, match="out of order"):
        read_responses([head, msgs[0], msgs[2]])
    with pytest.raises(RadmeshError, match="without a Report"):
        read_responses(small)


def test_cli_error_lines_and_no_partial_output(case, tmp_path, capsys):
    ph, paths, _ = case
    base = ["report", "--ct", str(paths["ct"]), "--mask", str(paths["labels"])]

    def run(*extra):
        rc = main([*base, *extra])
        err = capsys.readouterr().err.strip().splitlines()
        return rc, err

    rc, err = run("--prompt", PROMPT, "--out", str(tmp_path / "a"), "--formats", "seg,pdf")
    assert rc == 2 and err == ["radmesh: error: unknown output format(s) pdf; choose from seg, sr, nifti"]
    bad = tmp_path / "bad_labels.nii.gz"
    write_volume(Volume(ph.labels.array[:-1].copy(), Geometry((49, 96, 96), (3.5, 3.5, 4.0))), bad)
    rc = main(["report", "--ct", str(paths["ct"]), "--mask", str(bad), "--prompt", PROMPT, "--out",
               str(tmp_path / "b")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("radmesh: error: label map grid")
    rc, err = run("--prompt", PROMPT, "--out", str(tmp_path / "c"), "--server", f"127.0.0.1:{free_port()}",
                  "--timeout-s", "5")
    assert rc == 5 and len(err) == 1 and "report service at 127.0.0.1:" in err[0]
    rc, err = run("--prompt", PROMPT, "--out", str(tmp_path / "d"), "--model-info", str(tmp_path / "none.json"))
    assert rc == 2 and err == [f"radmesh: error: {tmp_path / 'none.json'}: no such model information file"]
    rc, err = run("--prompt", "segment the brain tumor", "--out", str(tmp_path / "e"))
    assert rc == 2 and len(err) == 1 and "'brain tumor' is not in the vocabulary" in err[0]
    assert not any(p.name[0] in "abcde" for p in tmp_path.iterdir() if p.is_dir())


def test_report_folder_is_all_or_nothing(tmp_path, monkeypatch):
    files = {"report.json": b"{}", "report.txt": b"text", "labels.nii.gz": b"\x1f\x8b"}
    calls = {"n": 0}
    real = Path.write_bytes

    def failing(self, data):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", failing)
    with pytest.raises(OSError):
        artifacts.write_report_folder(tmp_path / "new", files)
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its temporary twin
    monkeypatch.setattr(Path, "write_bytes", real)
    written = artifacts.write_report_folder(tmp_path / "new", files)
    assert sorted(p.name for p in written) == sorted(files)
    # in an existing folder, old files are replaced only once every new one is on disk
    (tmp_path / "new" / "keep.txt").write_text("mine")
    artifacts.write_report_folder(tmp_path / "new", {"report.txt": b"second"})
    assert (tmp_path / "new" / "report.txt").read_bytes() == b"second"
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == sorted([*files, "keep.txt"])


def test_cli_constants_match_the_measurement_core():
    assert command.DEFAULT_MIN_LESION_MM3 == DEFAULT_MIN_LESION_MM3


def test_model_information_from_segmentation_json(tmp_path):
    from radmesh.model.evaluate import default_weights_path
    from radmesh.model.runtime import load

    mask = tmp_path / "labels.nii.gz"
    assert command.load_model_info(None, mask) == ({}, None)  # nothing beside the mask: not stated
    # what `radmesh segment` writes in-process: the weights file states id, table and validated classes
    (tmp_path / "segmentation.json").write_text(json.dumps({"model": {
        "model_version": "radmesh-unet-phantom-1", "encoder_id": "minilm:all-MiniLM-L6-v2:0123456789abcdef",
        "weights": str(default_weights_path()), "runtime": "onnxruntime"}}))
    info, validated = command.load_model_info(None, mask)
    meta = load(default_weights_path())[1]
    assert info == {"model_id": "radmesh-unet-phantom", "model_version": "radmesh-unet-phantom-1",
                    "embedding_backend": "minilm", "class_table_sha256": meta["table_sha256"]}
    assert validated == [int(c) for c in meta["classes"]]
    # ModelInfo fields as the segmentation service reports them
    other = tmp_path / "model.json"
    other.write_text(json.dumps({"model_id": "m", "model_version": "2", "embedding_backend": "clip",
                                 "validated_class_indices": [28, 11]}))
    assert command.load_model_info(other, mask) == (
        {"model_id": "m", "model_version": "2", "embedding_backend": "clip", "class_table_sha256": ""}, [28, 11])
    other.write_text("{not json")
    with pytest.raises(InvalidInputError, match="not a JSON model description"):
        command.load_model_info(other, mask)
    other.write_text(json.dumps({"validated_class_indices": [99]}))
    with pytest.raises(InvalidInputError, match="99"):
        command.load_model_info(other, mask)
