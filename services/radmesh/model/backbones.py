"""Backbones of the published CLIP-Driven Universal Model (Liu et al., ICCV 2023).

Two backbones whose parameter names and shapes reproduce the state_dict layout of
the published checkpoints (github.com/ljwztc/CLIP-Driven-Universal-Model,
``model/Unet.py`` and ``model/SwinUNETR.py``), so that
:mod:`radmesh.model.importer` maps their keys one-to-one, and whose arithmetic is
the published one, so that imported weights compute what they were trained to:

- :class:`UniversalUNet3D` — the published ``UNet3D`` (≈19.1 M parameters with the
  Universal Model heads). ``forward(x)`` → (bottleneck (B, 512, D/8, H/8, W/8),
  decoder feature (B, 64, D, H, W)); D, H, W multiples of 8.
- :class:`SwinUNETRBackbone` — Swin UNETR (feature size 48) assembled from MONAI's
  ``SwinTransformer``, ``UnetrBasicBlock`` and ``UnetrUpBlock`` (≈62.2 M parameters
  with the heads). ``forward(x)`` → (bottleneck (B, 768, D/32, H/32, W/32): the
  ``encoder10`` block applied to the last Swin stage, decoder feature (B, 48, D, H, W):
  the last decoder block's output, before any class convolution); D, H, W
  multiples of 32, not all 32 (the bottleneck's instance norm needs more than one
  voxel; the published model works on 96³ patches).

Neither carries a per-class output convolution: the Universal Model's output comes
from its dynamic heads, and the published checkpoints carry none either (``UNet3D``
has its ``out_tr`` commented out; the published ``SwinUNETR`` defines no ``out``).

Two published details that differ from the usual library behaviour are kept on
purpose, because the weights depend on them:

- the U-Net's batch norm (their ``ContBatchNorm3d``) always normalizes with the
  statistics of the batch it is given, in eval mode too; the running statistics
  are stored in the checkpoint but never used (:class:`BatchStatNorm3d`);
- the Swin patch merging concatenates the eight 2×2×2 sub-grids in the order of
  the published code, which repeats two sub-grids and omits two others; MONAI's
  own ``PatchMerging`` uses another order (:class:`PublishedPatchMerging`).

``register()`` adds both to :data:`radmesh.model.network.BACKBONES` as
``unet_universal`` and ``swinunetr``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# MONAI is imported where a Swin UNETR is built or run, so registering the backbones
# (done when radmesh.model.network is imported) costs no MONAI import.

# --------------------------------------------------------------------------- U-Net


class BatchStatNorm3d(nn.BatchNorm3d):
    """Batch norm over (B, C, D, H, W) that always uses the current batch's statistics.

    This is the published ``ContBatchNorm3d``: mean and (biased) variance per channel
    over batch and space, in training *and* in eval mode. In training the running
    statistics are updated (as the published code does), so the state_dict keeps the
    published layout (``weight``, ``bias``, ``running_mean``, ``running_var``,
    ``num_batches_tracked``); in eval they are left alone and the statistics are
    computed with plain reductions, which export to ONNX as such.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                True, self.momentum, self.eps)
        dims = (0, 2, 3, 4)
        mean = x.mean(dim=dims, keepdim=True)
        var = (x - mean).pow(2).mean(dim=dims, keepdim=True)
        scale = (self.weight.view(1, -1, 1, 1, 1) * torch.rsqrt(var + self.eps))
        return (x - mean) * scale + self.bias.view(1, -1, 1, 1, 1)


class _ConvNormReLU(nn.Module):
    """3×3×3 convolution (with bias) → :class:`BatchStatNorm3d` → ReLU. Keys ``conv1.*``, ``bn1.*``."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, kernel_size=3, padding=1)
        self.bn1 = BatchStatNorm3d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn1(self.conv1(x)))


def _conv_pair(cin: int, mid: int, cout: int) -> nn.Sequential:
    return nn.Sequential(_ConvNormReLU(cin, mid), _ConvNormReLU(mid, cout))


class _DownStage(nn.Module):
    """Two conv units (``ops.0``, ``ops.1``), then a 2× max-pool unless ``pool`` is False.

    ``forward(x)`` → (output, feature before pooling).
    """

    def __init__(self, cin: int, mid: int, cout: int, pool: bool = True):
        super().__init__()
        self.ops = _conv_pair(cin, mid, cout)
        self.pool = pool

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = self.ops(x)
        return (F.max_pool3d(skip, 2) if self.pool else skip), skip


class _UpStage(nn.Module):
    """2× transposed convolution (``up_conv``, keeps the channels), concatenation with
    the skip (upsampled first), two conv units (``ops.0``, ``ops.1``)."""

    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.up_conv = nn.ConvTranspose3d(cin, cin, kernel_size=2, stride=2)
        self.ops = _conv_pair(cin + cskip, cout, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.ops(torch.cat([self.up_conv(x), skip], dim=1))


class UniversalUNet3D(nn.Module):
    """The published Universal Model U-Net: 3 poolings, widths 64-128-256-512.

    Encoder stage k (k = 0..3) has two conv units 2^k·32 → 2^k·32 → 2^k·64 (the
    first takes the previous stage's width; the input has 1 channel); the decoder
    mirrors it with transposed convolutions and the encoder's pre-pooling features.
    Module names are the published ones (``down_tr64`` … ``down_tr512``,
    ``up_tr256`` … ``up_tr64``), so its state_dict is the published ``UNet3D``'s.

    ``forward(x)`` with x (B, 1, D, H, W), D, H, W multiples of 8 →
    (bottleneck (B, 512, D/8, H/8, W/8), decoder feature (B, 64, D, H, W)).
    """

    bottleneck_channels = 512
    decoder_channels = 64

    def __init__(self, in_channels: int = 1):
        super().__init__()
        self.down_tr64 = _DownStage(in_channels, 32, 64)
        self.down_tr128 = _DownStage(64, 64, 128)
        self.down_tr256 = _DownStage(128, 128, 256)
        self.down_tr512 = _DownStage(256, 256, 512, pool=False)
        self.up_tr256 = _UpStage(512, 256, 256)
        self.up_tr128 = _UpStage(256, 128, 128)
        self.up_tr64 = _UpStage(128, 64, 64)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, skip64 = self.down_tr64(x)
        x, skip128 = self.down_tr128(x)
        x, skip256 = self.down_tr256(x)
        bottleneck, _ = self.down_tr512(x)
        x = self.up_tr256(bottleneck, skip256)
        x = self.up_tr128(x, skip128)
        x = self.up_tr64(x, skip64)
        return bottleneck, x


# ---------------------------------------------------------------------- Swin UNETR

# Offsets (d, h, w) of the 2×2×2 sub-grids, in the order the published Swin UNETR
# concatenates them before ``norm`` and ``reduction``; (0,1,0) and (0,0,1) appear
# twice, (1,1,0) and (0,1,1) never.
PUBLISHED_MERGE_OFFSETS = ((0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1),
                           (1, 0, 1), (0, 1, 0), (0, 0, 1), (1, 1, 1))


class PublishedPatchMerging(nn.Module):
    """Swin patch merging with the published sub-grid order (:data:`PUBLISHED_MERGE_OFFSETS`).

    The parameters of MONAI's patch merging (``reduction``: Linear(8C, 2C), no bias;
    ``norm``: LayerNorm(8C)), passed to MONAI's ``SwinTransformer`` as its
    ``downsample``. (B, D, H, W, C) → (B, D/2, H/2, W/2, 2C); D, H, W even (the
    backbone's inputs are multiples of 32, so every stage's are).
    """

    def __init__(self, dim: int, norm_layer: type[nn.Module] = nn.LayerNorm, spatial_dims: int = 3):
        super().__init__()
        if spatial_dims != 3:
            raise ValueError("PublishedPatchMerging is 3D only")
        self.reduction = nn.Linear(8 * dim, 2 * dim, bias=False)
        self.norm = norm_layer(8 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x[:, d::2, h::2, w::2, :] for d, h, w in PUBLISHED_MERGE_OFFSETS], dim=-1)
        return self.reduction(self.norm(x))


def _stage(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One Swin stage (a MONAI ``BasicLayer``): (B, C, D, H, W) → (B, 2C, D/2, H/2, W/2).

    The blocks alternate plain and shifted windows (7³, or the whole extent where
    that is smaller), with MONAI's attention mask for the shifted ones, then the
    patch merging. Written with ``permute`` rather than MONAI's ``einops`` calls, so
    einops is not needed.
    """
    from monai.networks.nets.swin_unetr import compute_mask, get_window_size

    # Python ints for the channel and spatial sizes (fixed per window): ONNX export then knows every
    # channel count after the reshapes below, which the instance norms of the encoders need.
    b = x.shape[0]
    c, d, h, w = (int(n) for n in x.shape[1:])
    window, shift = get_window_size((d, h, w), layer.window_size, layer.shift_size)
    padded = [-(-n // k) * k for n, k in zip((d, h, w), window)]
    mask = compute_mask(padded, window, shift, x.device)
    x = x.permute(0, 2, 3, 4, 1)
    for block in layer.blocks:
        x = block(x, mask)
    x = x.reshape(b, d, h, w, c)
    if layer.downsample is not None:
        x = layer.downsample(x)
    return x.permute(0, 4, 1, 2, 3)


def _channel_layer_norm(x: torch.Tensor) -> torch.Tensor:
    """Layer norm over the channels of (B, C, D, H, W), no affine: the stage-output normalization."""
    # int(): the channel count is fixed by the weights, and ONNX export needs it as a constant
    return F.layer_norm(x.permute(0, 2, 3, 4, 1), [int(x.shape[1])]).permute(0, 4, 1, 2, 3)


def swin_hidden_states(swin: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The five layer-normalized outputs of a MONAI ``SwinTransformer`` (patch embedding,
    then stages 1–4), at 1/2 … 1/32 resolution with C, 2C … 16C channels — what its own
    ``forward(x, normalize=True)`` returns, computed without einops."""
    y = swin.pos_drop(swin.patch_embed(x))
    out = [_channel_layer_norm(y)]
    for stages in (swin.layers1, swin.layers2, swin.layers3, swin.layers4):
        y = _stage(stages[0], y.contiguous())
        out.append(_channel_layer_norm(y))
    return out


class SwinUNETRBackbone(nn.Module):
    """Swin UNETR as the published Universal Model uses it, from MONAI building blocks.

    ``swinViT`` (patch size 2, window 7, depths 2-2-2-2, heads 3-6-12-24, stage
    outputs layer-normalized), residual ``encoder1..4`` and ``encoder10`` blocks
    and ``decoder5..1`` up-blocks, instance norm; module names are the published
    ones. ``forward(x)`` with x (B, 1, D, H, W), D, H, W multiples of 32 and
    D·H·W > 32³ →
    (bottleneck (B, 16f, D/32, H/32, W/32), decoder feature (B, f, D, H, W)), f = 48.
    """

    def __init__(self, in_channels: int = 1, feature_size: int = 48,
                 depths: Sequence[int] = (2, 2, 2, 2), num_heads: Sequence[int] = (3, 6, 12, 24),
                 norm_name: str = "instance", use_checkpoint: bool = False):
        from monai.networks.blocks import UnetrBasicBlock, UnetrUpBlock
        from monai.networks.nets.swin_unetr import SwinTransformer

        super().__init__()
        f = feature_size
        self.bottleneck_channels = 16 * f
        self.decoder_channels = f
        self.swinViT = SwinTransformer(
            in_chans=in_channels, embed_dim=f, window_size=(7, 7, 7), patch_size=(2, 2, 2),
            depths=depths, num_heads=num_heads, mlp_ratio=4.0, qkv_bias=True,
            drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.0, norm_layer=nn.LayerNorm,
            use_checkpoint=use_checkpoint, spatial_dims=3, downsample=PublishedPatchMerging,
        )

        def enc(cin: int, cout: int) -> nn.Module:
            return UnetrBasicBlock(spatial_dims=3, in_channels=cin, out_channels=cout, kernel_size=3,
                                   stride=1, norm_name=norm_name, res_block=True)

        def dec(cin: int, cout: int) -> nn.Module:
            return UnetrUpBlock(spatial_dims=3, in_channels=cin, out_channels=cout, kernel_size=3,
                                upsample_kernel_size=2, norm_name=norm_name, res_block=True)

        self.encoder1 = enc(in_channels, f)   # full resolution, from the image
        self.encoder2 = enc(f, f)             # 1/2, from the patch embedding
        self.encoder3 = enc(2 * f, 2 * f)     # 1/4
        self.encoder4 = enc(4 * f, 4 * f)     # 1/8
        self.encoder10 = enc(16 * f, 16 * f)  # 1/32, the bottleneck
        self.decoder5 = dec(16 * f, 8 * f)    # 1/16, skip: Swin stage 3 output
        self.decoder4 = dec(8 * f, 4 * f)
        self.decoder3 = dec(4 * f, 2 * f)
        self.decoder2 = dec(2 * f, f)
        self.decoder1 = dec(f, f)             # full resolution

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = swin_hidden_states(self.swinViT, x)  # 5 layer-normalized outputs, 1/2 … 1/32
        enc0 = self.encoder1(x)
        enc1 = self.encoder2(hidden[0])
        enc2 = self.encoder3(hidden[1])
        enc3 = self.encoder4(hidden[2])
        bottleneck = self.encoder10(hidden[4])
        y = self.decoder5(bottleneck, hidden[3])
        y = self.decoder4(y, enc3)
        y = self.decoder3(y, enc2)
        y = self.decoder2(y, enc1)
        y = self.decoder1(y, enc0)
        return bottleneck, y


PUBLISHED_BACKBONES: dict[str, type[nn.Module]] = {
    "unet_universal": UniversalUNet3D,
    "swinunetr": SwinUNETRBackbone,
}

