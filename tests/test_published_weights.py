"""The published Universal Model weights as a user runs them: ``radmesh weights import``, then
everywhere the shipped weights go (in-process segment, ONNX export, Triton, the services).

The checkpoints are randomly initialised models saved in the published key layout
(tests/published_layout.py): no real weights reach this machine. Random weights make random
masks, so the end-to-end checks compare paths with each other (served against in-process on
the same graph) and check what a user sees (files, classes, model identity, errors), not Dice.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import free_port, start_service
from published_layout import reference_state, write_checkpoint
from radmesh.cli import main
from radmesh.common import vocabulary as vocab
from radmesh.model.frames import MONAI_RAS, from_model_frame, to_model_frame
from radmesh.model.importer import table_path_for
from radmesh.model.train import load_weights


def test_frame_turn_puts_each_voxel_where_monai_has_it():
    """LPS (z, y, x) → MONAI RAS (i, j, k): i = X-1-x (left → right), j = Y-1-y (posterior → anterior), k = z."""
    z, y, x = 4, 5, 6
    window = torch.zeros(1, 1, z, y, x)
    window[0, 0, 1, 2, 3] = 1.0
    ras = to_model_frame(window, MONAI_RAS)
    assert ras.shape == (1, 1, x, y, z)
    assert ras[0, 0, x - 1 - 3, y - 1 - 2, 1] == 1.0 and ras.sum() == 1.0
    assert torch.equal(from_model_frame(ras, MONAI_RAS), window)


@pytest.fixture(scope="module")
def imported_unet(tmp_path_factory):
    """A random published U-Net checkpoint and the weights `radmesh weights import` made of it."""
    tmp = tmp_path_factory.mktemp("published")
    state, embedding = reference_state("unet", seed=1)
    checkpoint = write_checkpoint(tmp / "clip_driven_universal_unet.pth", state, embedding, "unet")
    out = tmp / "unet_published.pt"
    assert main(["weights", "import", "--published", str(checkpoint), "--out", str(out)]) == 0
    return checkpoint, out, embedding


def test_import_writes_weights_the_pipeline_loads(imported_unet, capsys):
    _, weights, embedding = imported_unet
    model, meta = load_weights(weights)
    assert meta["backbone"] == "unet_universal" and meta["embed_dim"] == 512
    assert meta["frame"] == MONAI_RAS and model.frame == MONAI_RAS
    assert meta["classes"] == list(range(1, 33))
    assert meta["class_names"][27] == vocab.get(28).name == "Pancreas Tumor"
    assert meta["spacing_mm"] == 1.5 and meta["hu_window"] == [-175.0, 250.0] and meta["patch_size"] == 96
    np.testing.assert_array_equal(meta["class_embedding"], embedding.numpy())
    assert meta["training"]["source"] == "published checkpoint"
    assert "Orientationd" in meta["training"]["preprocessing"]["frame"]

    # the text service's table backend serves exactly the table the weights name
    from radmesh.text.encoders import TableEncoder

    table = TableEncoder(table_path_for(weights))
    assert table.encoder_id == meta["encoder_id"]
    np.testing.assert_array_equal(table.encode_classes([1, 28]), embedding.numpy()[[0, 27]])


def test_import_chooses_classes_and_refuses_plainly(imported_unet, tmp_path, capsys):
    checkpoint, _, embedding = imported_unet
    out = tmp_path / "narrow.pt"
    assert main(["weights", "import", "--published", str(checkpoint), "--out", str(out),
                 "--classes", "liver,pancreas,pancreas tumor"]) == 0
    _, meta = load_weights(out)
    assert meta["classes"] == [6, 11, 28]
    np.testing.assert_array_equal(meta["class_embedding"], embedding.numpy()[[5, 10, 27]])

    for argv, words in (
            (["--published", str(tmp_path / "absent.pth"), "--out", str(tmp_path / "a.pt")], "does not exist"),
            (["--published", str(checkpoint), "--backbone", "swinunetr", "--out", str(tmp_path / "b.pt")],
             "looks like a U-Net checkpoint"),
            (["--published", str(checkpoint), "--out", str(tmp_path / "c.onnx")], "must name a .pt file")):
        capsys.readouterr()
        assert main(["weights", "import", *argv]) != 0
        err = capsys.readouterr().err.strip()
        assert err.startswith("radmesh: error:") and words in err and "\n" not in err, err
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(("a.", "b.", "c."))]  # nothing half-written


def _phantom(tmp_path):
    """A CT whose model-space extent is one 96³ window (141 × 141 × 140 mm): one window per run."""
    from radmesh.phantom.generator import PhantomConfig, generate

    return generate(5, PhantomConfig(in_plane_size=64, spacing_xyz_mm=(2.2, 2.2, 5.0), slices=28, oblique=False,
                                     lesions=())).ct


@pytest.mark.parametrize("backbone", ["unet", "swinunetr"])
def test_imported_weights_in_process_and_through_triton_and_the_services(backbone, imported_unet, tmp_path,
                                                                       tmp_path_factory):
    """`radmesh segment --weights W` in-process, and Triton serving W's graph behind the segmentation
    service (the text service serving W's class table), give the same label map."""
    from radmesh.common.imageio import read_volume, write_volume
    from radmesh.segmentation.client import list_classes_remote, segment_remote
    from radmesh.triton.launcher import TritonProcess

    if backbone == "unet":
        weights = imported_unet[1]
    else:
        state, embedding = reference_state("swinunetr", seed=2)
        checkpoint = write_checkpoint(tmp_path / "clip_driven_universal_swin_unetr.pth", state, embedding,
                                      "swinunetr")
        weights = tmp_path / "swin_published.pt"
        assert main(["weights", "import", "--published", str(checkpoint), "--out", str(weights)]) == 0
        checkpoint.unlink()
    _, meta = load_weights(weights)
    ct = _phantom(tmp_path)
    write_volume(ct, tmp_path / "ct.nii.gz")
    # in-process: exports and verifies the ONNX graph (cached), which Triton then serves as well
    assert main(["segment", "--weights", str(weights), "--ct", str(tmp_path / "ct.nii.gz"), "--classes",
                 "liver,spleen", "--out", str(tmp_path / "local"), "--quiet"]) == 0
    local = json.loads((tmp_path / "local" / "segmentation.json").read_text())
    assert local["model"]["model_version"] == meta["model_version"]
    assert local["model"]["model_version"].startswith(f"universal-{backbone}-published-")
    assert local["windows"] == 1

    ports = set()
    while len(ports) < 3:
        ports.add(free_port())
    grpc_port, http_port, metrics_port = sorted(ports)
    triton = TritonProcess(grpc_port=grpc_port, http_port=http_port, metrics_port=metrics_port,
                           log_path=tmp_path / "triton.log", weights=str(weights))
    triton.start(timeout_s=300)
    svc_dir = tmp_path_factory.mktemp("svc")
    text = seg = None
    try:
        text = start_service("text", svc_dir, "--class-table", str(table_path_for(weights)))
        seg = start_service("segmentation", svc_dir, "--triton-url", f"127.0.0.1:{grpc_port}", "--text-url",
                            text.target, "--weights", str(weights))
        listed = list_classes_remote(seg.target)
        assert listed["model"]["model_version"] == meta["model_version"]
        assert sorted(c["class_index"] for c in listed["classes"]) == list(range(1, 33))
        labels, summary = segment_remote(seg.target, ct, classes=[vocab.LIVER, vocab.SPLEEN], timeout_s=600)
        assert summary["model"]["embedding_backend"] == "table"
        assert summary["model"]["class_table_sha256"] == meta["table_sha256"]
        np.testing.assert_array_equal(np.asarray(labels.array),
                                      np.asarray(read_volume(tmp_path / "local" / "labels.nii.gz").array))
    finally:
        for svc in (seg, text):
            if svc is not None:
                svc.stop()
        triton.stop()


def test_up_serves_the_imported_weights_table(imported_unet):
    """`radmesh up --weights W` starts the text service on W's class table and the others on W."""
    from radmesh.up import Ports, _service_cmd

    _, weights, _ = imported_unet
    ports = Ports(offset=0)
    text = _service_cmd("text", ports, weights)
    assert text[text.index("--class-table") + 1] == str(table_path_for(weights))
    seg = _service_cmd("segmentation", ports, weights)
    assert seg[seg.index("--weights") + 1] == str(weights)
    assert "--class-table" not in _service_cmd("text", ports, None)


def test_up_refuses_imported_weights_without_their_table(imported_unet, tmp_path):
    import shutil

    from radmesh.common.errors import FailedPreconditionError
    from radmesh.up import class_table_of

    _, weights, _ = imported_unet
    lonely = tmp_path / weights.name
    shutil.copy(weights, lonely)
    with pytest.raises(FailedPreconditionError, match="class_table.pt is missing"):
        class_table_of(lonely)
