"""The published CLIP-Driven Universal Model checkpoints import one-to-one and strictly.

No published file can be downloaded here, so each test writes a checkpoint in the
published layout itself: ``{'net': state_dict}`` with the key names of the
published ``Universal_model`` (github.com/ljwztc/CLIP-Driven-Universal-Model,
``model/Universal_model.py``, ``model/Unet.py``, ``model/SwinUNETR.py``) behind
``module.``, the Swin UNETR parts at the top level as in the released file, and
the ``organ_embedding`` buffer. The renaming is written independently
of the importer (tests/published_layout.py), and the literal key names and shapes checked in
``test_published_layout`` are those of the published code.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from radmesh.common.errors import FailedPreconditionError, InvalidInputError
from radmesh.model import backbones, network
from radmesh.model.importer import import_universal_checkpoint
from published_layout import reference_state as _reference, to_published, write_checkpoint as _write

@pytest.fixture(scope="module")
def unet_reference():
    return _reference("unet", seed=1)


@pytest.fixture(scope="module")
def swin_reference():
    return _reference("swinunetr", seed=2)


def test_published_layout(unet_reference, swin_reference):
    """Our modules give the published key names and shapes (read off the published code)."""
    unet = {to_published(n, "unet"): v.shape for n, v in unet_reference[0].items()}
    for key, shape in {
        "module.backbone.down_tr64.ops.0.conv1.weight": (32, 1, 3, 3, 3),
        "module.backbone.down_tr64.ops.0.conv1.bias": (32,),
        "module.backbone.down_tr64.ops.1.bn1.running_mean": (64,),
        "module.backbone.down_tr128.ops.1.bn1.num_batches_tracked": (),
        "module.backbone.down_tr512.ops.1.conv1.weight": (512, 256, 3, 3, 3),
        "module.backbone.up_tr256.up_conv.weight": (512, 512, 2, 2, 2),
        "module.backbone.up_tr256.ops.0.conv1.weight": (256, 768, 3, 3, 3),
        "module.backbone.up_tr64.ops.0.conv1.weight": (64, 192, 3, 3, 3),
        "module.backbone.up_tr64.ops.1.bn1.weight": (64,),
        "module.precls_conv.0.weight": (64,),
        "module.precls_conv.2.weight": (8, 64, 1, 1, 1),
        "module.GAP.0.weight": (512,),
        "module.GAP.3.weight": (256, 512, 1, 1, 1),
        "module.text_to_vision.weight": (256, 512),
        "module.controller.weight": (153, 512, 1, 1, 1),
        "module.controller.bias": (153,),
    }.items():
        assert tuple(unet[key]) == shape, key
    assert len(unet) == 116

    swin = {to_published(n, "swinunetr"): v.shape for n, v in swin_reference[0].items()}
    for key, shape in {
        "module.swinViT.patch_embed.proj.weight": (48, 1, 2, 2, 2),
        "module.swinViT.layers1.0.blocks.0.norm1.weight": (48,),
        "module.swinViT.layers1.0.blocks.0.attn.relative_position_bias_table": (13 ** 3, 3),
        "module.swinViT.layers1.0.blocks.0.attn.relative_position_index": (343, 343),
        "module.swinViT.layers1.0.blocks.1.attn.qkv.weight": (144, 48),
        "module.swinViT.layers1.0.blocks.1.mlp.linear1.weight": (192, 48),
        "module.swinViT.layers1.0.blocks.1.mlp.linear2.bias": (48,),
        "module.swinViT.layers1.0.downsample.norm.weight": (384,),
        "module.swinViT.layers4.0.blocks.1.attn.proj.weight": (384, 384),
        "module.swinViT.layers4.0.downsample.reduction.weight": (768, 3072),
        "module.encoder1.layer.conv1.conv.weight": (48, 1, 3, 3, 3),
        "module.encoder1.layer.conv3.conv.weight": (48, 1, 1, 1, 1),
        "module.encoder2.layer.conv2.conv.weight": (48, 48, 3, 3, 3),
        "module.encoder10.layer.conv1.conv.weight": (768, 768, 3, 3, 3),
        "module.decoder5.transp_conv.conv.weight": (768, 384, 2, 2, 2),
        "module.decoder5.conv_block.conv1.conv.weight": (384, 768, 3, 3, 3),
        "module.decoder5.conv_block.conv3.conv.weight": (384, 768, 1, 1, 1),
        "module.decoder1.conv_block.conv2.conv.weight": (48, 48, 3, 3, 3),
        "module.precls_conv.0.weight": (48,),
        "module.precls_conv.2.weight": (8, 48, 1, 1, 1),
        "module.GAP.0.weight": (768,),
        "module.GAP.3.weight": (256, 768, 1, 1, 1),
        "module.controller.weight": (153, 512, 1, 1, 1),
    }.items():
        assert tuple(swin[key]) == shape, key
    assert not [k for k in swin if ".out." in k or k.startswith("module.out")]


def test_parameter_counts():
    """The published README gives 19.08 M (U-Net) and 62.19 M (Swin UNETR) backbone parameters."""
    unet = network.build_model("unet_universal", embed_dim=512)
    swin = network.build_model("swinunetr", embed_dim=512)
    assert sum(p.numel() for p in unet.backbone.parameters()) == 19_073_600
    assert sum(p.numel() for p in unet.parameters()) == 19_416_417
    assert sum(p.numel() for p in swin.backbone.parameters()) == 62_186_610
    assert (unet.backbone.bottleneck_channels, unet.backbone.decoder_channels) == (512, 64)
    assert (swin.backbone.bottleneck_channels, swin.backbone.decoder_channels) == (768, 48)


@pytest.mark.parametrize("backbone, swin_top_level", [("unet", True), ("swinunetr", True), ("swinunetr", False)])
def test_import_roundtrip(tmp_path, unet_reference, swin_reference, backbone, swin_top_level):
    state, embedding = unet_reference if backbone == "unet" else swin_reference
    path = _write(tmp_path / "ckpt.pth", state, embedding, backbone, swin_top_level)

    model, table = import_universal_checkpoint(path, backbone)

    loaded = model.state_dict()
    assert loaded.keys() == state.keys()
    for name, value in state.items():
        assert torch.equal(loaded[name], value), name
    assert table.dtype == torch.float32 and table.shape == (32, 512)
    assert torch.equal(table, embedding)
    assert not model.training

    if not swin_top_level:
        return  # the same weights under other names: loading is what differs
    # Sizes: multiples of 8 for the U-Net (bottleneck 1/8); multiples of 32 for Swin UNETR
    # (bottleneck 1/32), with more than one bottleneck voxel for its instance norm.
    spatial = (32, 32, 32) if backbone == "unet" else (64, 32, 32)
    image = torch.rand(1, 1, *spatial)
    features = []
    model.backbone.register_forward_hook(lambda module, args, out: features.append(out))
    with torch.no_grad():
        logits = model(image, table[[0, 5, 10]])  # spleen, liver, pancreas
    (bottleneck, decoder), = features
    cb, cd, scale = (512, 64, 8) if backbone == "unet" else (768, 48, 32)
    native = spatial[::-1]  # the backbone sees MONAI's (x, y, z) order of radmesh's (z, y, x) window
    assert model.frame == "ras_xyz"
    assert bottleneck.shape == (1, cb, *(n // scale for n in native))
    assert decoder.shape == (1, cd, *native)
    assert logits.shape == (1, 3, *spatial)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("edit, named", [
    ({"module.backbone.up_tr64.ops.1.bn1.running_var": None}, "module.backbone.up_tr64.ops.1.bn1.running_var"),
    ({"module.controller.bias": None}, "module.controller.bias"),
    ({"module.backbone.out_tr.final_conv.weight": torch.zeros(32, 64, 1, 1, 1)},
     "module.backbone.out_tr.final_conv.weight"),
    ({"module.controller.weight": torch.zeros(153, 256, 1, 1, 1)}, "module.controller.weight"),
    ({"module.organ_embedding": None}, "module.organ_embedding"),
    ({"module.organ_embedding": torch.zeros(31, 512)}, "module.organ_embedding"),
])
def test_strict_mismatch_names_the_key(tmp_path, unet_reference, edit, named):
    state, embedding = unet_reference
    path = _write(tmp_path / "bad.pth", state, embedding, "unet", **edit)
    with pytest.raises(FailedPreconditionError) as err:
        import_universal_checkpoint(path, "unet")
    assert named in str(err.value)


def test_mismatch_message_counts_and_hints(tmp_path, unet_reference):
    state, embedding = unet_reference
    path = _write(tmp_path / "unet.pth", state, embedding, "unet")
    with pytest.raises(FailedPreconditionError) as err:
        import_universal_checkpoint(path, "swinunetr")
    message = str(err.value)
    assert "missing (157)" in message and "unexpected (104)" in message and "… 152 more" in message
    assert "U-Net checkpoint" in message


def test_not_a_universal_checkpoint(tmp_path):
    path = tmp_path / "pretrain.pt"
    torch.save({"epoch": 1, "state_dict": {"module.patch_embed.proj.weight": torch.zeros(1)}}, path)
    with pytest.raises(InvalidInputError, match="no 'net'"):
        import_universal_checkpoint(path, "swinunetr")
    with pytest.raises(InvalidInputError, match="does not exist"):
        import_universal_checkpoint(tmp_path / "absent.pth", "unet")
    with pytest.raises(InvalidInputError, match="unknown published backbone"):
        import_universal_checkpoint(path, "dints")


def test_registry():
    assert network.BACKBONES["unet_universal"] is backbones.UniversalUNet3D
    assert network.BACKBONES["swinunetr"] is backbones.SwinUNETRBackbone
    assert "unet_compact" in network.BACKBONES


def test_batch_statistics_norm_matches_published_arithmetic():
    """The published ContBatchNorm3d normalizes with batch statistics even in eval mode."""
    torch.manual_seed(0)
    norm = backbones.BatchStatNorm3d(4)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-1, 1)
        norm.running_mean.fill_(3.0)
    x = torch.randn(2, 4, 5, 6, 7) * 3 + 1
    expected = F.batch_norm(x, None, None, norm.weight, norm.bias, True, 0.1, norm.eps)
    norm.eval()
    with torch.no_grad():
        assert torch.allclose(norm(x), expected, atol=1e-5)
    assert torch.all(norm.running_mean == 3.0)  # eval leaves the stored statistics alone
    norm.train()
    with torch.no_grad():
        assert torch.allclose(norm(x), expected, atol=1e-5)
    assert not torch.all(norm.running_mean == 3.0)


def test_patch_merging_uses_published_order():
    """The published Swin UNETR concatenates sub-grids (d,h,w) 000,100,010,001,101,010,001,111."""
    merge = backbones.PublishedPatchMerging(dim=1)
    merge.norm, merge.reduction = nn.Identity(), nn.Identity()
    d, h, w = torch.meshgrid(torch.arange(2), torch.arange(2), torch.arange(2), indexing="ij")
    x = (4 * d + 2 * h + w).float().reshape(1, 2, 2, 2, 1)
    assert merge(x).flatten().tolist() == [0, 4, 2, 1, 5, 2, 1, 7]
