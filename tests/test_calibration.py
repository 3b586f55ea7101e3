"""Post-processing calibration files: bound to their weights, validated, applied by the pipeline."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from radmesh.common import vocabulary as V
from radmesh.common.errors import FailedPreconditionError
from radmesh.model import pipeline, train
from radmesh.model.calibration import (FORMAT, FORMAT_VERSION, UNCALIBRATED, calibration_path, file_sha256,
                                       load_calibration, write_calibration)
from radmesh.model.evaluate import default_weights_path
from radmesh.model.postprocess import postprocess

SHIPPED = default_weights_path()
# docs/model_card.md's values for the shipped weights (lesion elongations chosen on validation seeds 100-131)
SHIPPED_ELONGATION = {V.KIDNEY_TUMOR: 3.5, V.LIVER_TUMOR: 2.75, V.PANCREAS_TUMOR: 2.5}
needs_weights = pytest.mark.skipif(not SHIPPED.is_file(), reason="reference weights are not in this checkout")


def write(weights, **fields) -> None:
    doc = dict(format=FORMAT, format_version=FORMAT_VERSION, weights_sha256=file_sha256(weights),
               class_threshold={"Liver": 0.8}, organ_opening_mm={"Stomach": 9.0}, lesion_peak=0.99)
    doc.update(fields)
    calibration_path(weights).write_text(json.dumps(doc))


@pytest.fixture
def weights(tmp_path):
    """A file that stands for a weights file: the binding is by content, whatever the content."""
    path = tmp_path / "mine.pt"
    path.write_bytes(b"weights of my own")
    return path


def test_the_shipped_weights_carry_their_calibration():
    if not SHIPPED.is_file():
        pytest.skip("reference weights are not in this checkout")
    cal = load_calibration(SHIPPED)
    assert cal.source == str(calibration_path(SHIPPED))
    # the values docs/model_card.md gives for the shipped weights (chosen on validation seeds 100-115)
    assert cal.class_threshold == {V.GALL_BLADDER: 0.6, V.POSTCAVA: 0.7, V.KIDNEY_TUMOR: 0.97, V.LIVER_TUMOR: 0.97,
                                   V.PANCREAS_TUMOR: 0.97, V.LUNG_TUMOR: 0.97, V.KIDNEY_CYST: 0.97}
    assert cal.organ_opening_mm == {V.SPLEEN: 3.0, V.RIGHT_KIDNEY: 3.0, V.LEFT_KIDNEY: 3.0, V.GALL_BLADDER: 6.0,
                                    V.LIVER: 3.0, V.PANCREAS: 4.5, V.STOMACH: 9.0}
    assert cal.lesion_peak == 0.99
    assert cal.lesion_max_elongation == SHIPPED_ELONGATION


def test_weights_without_a_calibration_file_get_none(weights):
    cal = load_calibration(weights)
    assert cal is UNCALIBRATED and cal.source is None
    assert cal.postprocess_kwargs() == dict(class_threshold={}, organ_opening_mm={}, lesion_peak=0.5,
                                            lesion_max_elongation={})


def test_a_calibration_file_is_read_by_class_name(weights):
    write(weights)
    cal = load_calibration(weights)
    assert dict(cal.class_threshold) == {V.LIVER: 0.8} and dict(cal.organ_opening_mm) == {V.STOMACH: 9.0}
    assert cal.name == "mine.calibration.json" and UNCALIBRATED.name == ""


def test_a_calibration_made_for_other_weights_is_refused(weights):
    write(weights)
    weights.write_bytes(b"retrained weights")              # the weights changed, the calibration did not
    with pytest.raises(FailedPreconditionError, match=f"made for weights with sha256 .* has sha256 "
                                                      f"{file_sha256(weights)}"):
        load_calibration(weights)


@pytest.mark.parametrize("fields, message", [
    (dict(format="something else"), "not a radmesh calibration file"),
    (dict(class_threshold={"Spleen": 1.0}), r"class_threshold\['Spleen'\] must be a probability in \[0, 1\)"),
    (dict(class_threshold={"Spleeen": 0.3}), "names 'Spleeen', not a class"),
    (dict(organ_opening_mm={"Aorta": 3.0}), "Aorta, which are not organs"),
    (dict(organ_opening_mm={"Liver": -1}), "must be millimetres ≥ 0"),
    (dict(lesion_peak=True), "lesion_peak must be a probability"),
    (dict(lesion_max_elongation={"Liver Tumor": 0.5}), r"lesion_max_elongation\['Liver Tumor'\] must be a finite "
                                                         r"ratio ≥ 1 \(0: no rule\), got 0.5"),
    (dict(lesion_max_elongation={"Liver": 3.0}), "lesion_max_elongation lists Liver, which are not lesions"),
    (dict(lesion_max_elongation=2.5), "lesion_max_elongation must map class names to numbers"),
    (dict(class_threshold=[0.3]), "must map class names to numbers"),
])
def test_an_invalid_calibration_file_names_its_problem(weights, fields, message):
    write(weights, **fields)
    with pytest.raises(FailedPreconditionError, match=message):
        load_calibration(weights)


def test_a_calibration_file_that_is_not_json_is_refused(weights):
    calibration_path(weights).write_text("{not json")
    with pytest.raises(FailedPreconditionError, match="not readable JSON"):
        load_calibration(weights)


def test_calibrated_values_move_the_post_processing():
    p = np.zeros((1, 10, 10, 10), np.float32)
    p[0, 2:8, 2:8, 2:8] = 0.45                              # an organ the model draws just under 0.5
    assert not postprocess(p, [V.SPLEEN], 1.0, **UNCALIBRATED.postprocess_kwargs()).any()
    cal = UNCALIBRATED.__class__(class_threshold={V.SPLEEN: 0.4})
    assert np.count_nonzero(postprocess(p, [V.SPLEEN], 1.0, **cal.postprocess_kwargs())) == 6 ** 3


@needs_weights
def test_load_weights_and_the_pipeline_use_the_file_beside_the_weights(tmp_path, monkeypatch):
    copy = tmp_path / "copy.pt"
    shutil.copyfile(SHIPPED, copy)
    _, meta = train.load_weights(copy)
    assert meta["calibration"] is UNCALIBRATED                # the shipped calibration stays with the shipped file
    write(copy, class_threshold={"Spleen": 0.3})
    _, meta = train.load_weights(copy)
    assert dict(meta["calibration"].class_threshold) == {V.SPLEEN: 0.3}

    seen = {}

    def fake_segment(ct, classes, runner, table, **kwargs):
        seen.update(kwargs)
        raise StopIteration

    monkeypatch.setattr(pipeline, "segment", fake_segment)
    with pytest.raises(StopIteration):
        pipeline.segment_volume(None, runner=object(), meta=meta)
    assert seen["calibration"] is meta["calibration"]
    from radmesh.segmentation.core import model_info_from_meta

    assert model_info_from_meta(meta, "onnxruntime").calibration is meta["calibration"]   # the service's path
    write(copy, weights_sha256="0" * 64)                     # a file made for other weights
    with pytest.raises(FailedPreconditionError, match="made for weights with sha256"):
        train.load_weights(copy)


def test_a_written_calibration_reads_back_bound_to_its_weights(weights):
    cal = UNCALIBRATED.__class__(class_threshold={V.AORTA: 0.9, V.SPLEEN: 0.2}, organ_opening_mm={V.LIVER: 4.5},
                                 lesion_peak=0.98, lesion_max_elongation={V.LIVER_TUMOR: 3.0})
    path = write_calibration(weights, cal, "mine-1", "validation cases 1-8")
    assert path == calibration_path(weights)
    assert set(weights.parent.iterdir()) == {weights, path}              # no temporary file left beside it
    back = load_calibration(weights)
    assert (dict(back.class_threshold), dict(back.organ_opening_mm), back.lesion_peak, back.lesion_max_elongation) == \
        ({V.AORTA: 0.9, V.SPLEEN: 0.2}, {V.LIVER: 4.5}, 0.98, {V.LIVER_TUMOR: 3.0})
    doc = json.loads(path.read_text())
    assert doc["class_threshold"] == {"Spleen": 0.2, "Aorta": 0.9} and doc["chosen_on"] == "validation cases 1-8"
