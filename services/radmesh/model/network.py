"""The Universal Model network: a 3D backbone plus text-conditioned dynamic heads.

Liu et al., "CLIP-Driven Universal Model for Organ Segmentation and Tumor
Detection", ICCV 2023. For every requested class, the class's text embedding,
projected E → 256, is concatenated with the image's pooled bottleneck feature
(also projected to 256); a controller maps the 512 numbers to the 153 parameters
of a tiny dynamic head — three 1×1×1 convolutions 8→8→8→1 with ReLU between —
applied to the backbone's full-resolution decoder feature (reduced to 8
channels). One sigmoid per class: multi-label, classes may overlap.

Only the requested classes' heads run: the class embedding table (K, E) is an
input, K is free. Shapes:

- ``image``: (B, 1, D, H, W) float32, HU windowed to [0, 1]; D, H, W multiples of 16;
- ``class_embedding``: (K, E) float32;
- output logits: (B, K, D, H, W) float32.

The dynamic heads are written as batched matrix products (not grouped
convolutions as in the published code) so the exported ONNX graph keeps B and K
dynamic; the arithmetic and the parameter layout are the published ones, so
published controller weights load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from radmesh.model.frames import NATIVE, check_frame, from_model_frame, to_model_frame

HEAD_CHANNELS = 8
TEXT_FEATURES = 256
# Dynamic head parameter layout of the published code: weights of the three layers, then biases.
WEIGHT_NUMS = (HEAD_CHANNELS * HEAD_CHANNELS, HEAD_CHANNELS * HEAD_CHANNELS, HEAD_CHANNELS * 1)
BIAS_NUMS = (HEAD_CHANNELS, HEAD_CHANNELS, 1)
NUM_HEAD_PARAMS = sum(WEIGHT_NUMS) + sum(BIAS_NUMS)  # 153


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class _ConvBlock(nn.Module):
    """Two 3×3×3 convolutions with GroupNorm and ReLU, the first with ``stride``."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False), _norm(cout), nn.ReLU(inplace=True),
            nn.Conv3d(cout, cout, 3, padding=1, bias=False), _norm(cout), nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class CompactUNet(nn.Module):
    """A 3D U-Net sized for CPU serving (≈0.8 M parameters at width 16).

    The stem works at full resolution with only ``width // 2`` channels and the
    first real stage at half resolution, so most convolutions run on 1/8 of the
    voxels; the decoder returns to full resolution through the stem's skip.
    ``forward(x)`` → (bottleneck (B, 8w, D/16, H/16, W/16), decoder feature (B, w/2, D, H, W)).
    """

    def __init__(self, width: int = 16):
        super().__init__()
        w = width
        s = w // 2
        self.stem = nn.Sequential(nn.Conv3d(1, s, 3, padding=1, bias=False), _norm(s), nn.ReLU(inplace=True))
        self.enc1 = _ConvBlock(s, w, stride=2)          # 1/2
        self.enc2 = _ConvBlock(w, 2 * w, stride=2)      # 1/4
        self.enc3 = _ConvBlock(2 * w, 4 * w, stride=2)  # 1/8
        self.enc4 = _ConvBlock(4 * w, 8 * w, stride=2)  # 1/16
        self.up3 = nn.ConvTranspose3d(8 * w, 4 * w, 2, stride=2)
        self.dec3 = _ConvBlock(8 * w, 4 * w)
        self.up2 = nn.ConvTranspose3d(4 * w, 2 * w, 2, stride=2)
        self.dec2 = _ConvBlock(4 * w, 2 * w)
        self.up1 = nn.ConvTranspose3d(2 * w, w, 2, stride=2)
        self.dec1 = _ConvBlock(2 * w, w)
        self.up0 = nn.ConvTranspose3d(w, s, 2, stride=2)
        self.dec0 = nn.Sequential(nn.Conv3d(2 * s, s, 3, padding=1, bias=False), _norm(s), nn.ReLU(inplace=True))
        self.bottleneck_channels = 8 * w
        self.decoder_channels = s

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e0 = self.stem(x)
        e1 = self.enc1(e0)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        e4 = self.enc4(e3)
        d3 = self.dec3(torch.cat([self.up3(e4), e3], 1))
        d2 = self.dec2(torch.cat([self.up2(d3), e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        d0 = self.dec0(torch.cat([self.up0(d1), e0], 1))
        return e4, d0


class UniversalModel(nn.Module):
    """Backbone + pooled-feature projection + text projection + controller + dynamic heads.

    ``backbone`` must return (bottleneck, decoder feature) and expose
    ``bottleneck_channels`` and ``decoder_channels``. ``embed_dim`` is E of the class
    embedding table (384 for MiniLM, 512 for CLIP). ``frame``: the voxel frame the
    weights were trained in (:mod:`radmesh.model.frames`); the model takes and returns
    radmesh's frame whatever it is.
    """

    def __init__(self, backbone: nn.Module, embed_dim: int, frame: str = NATIVE):
        super().__init__()
        self.backbone = backbone
        self.frame = check_frame(frame)
        cb, cd = backbone.bottleneck_channels, backbone.decoder_channels
        self.embed_dim = embed_dim
        # Names follow the published model (GAP, precls_conv, text_to_vision, controller).
        self.precls_conv = nn.Sequential(nn.GroupNorm(min(16, cd), cd), nn.ReLU(inplace=True),
                                         nn.Conv3d(cd, HEAD_CHANNELS, kernel_size=1))
        self.GAP = nn.Sequential(nn.GroupNorm(min(16, cb), cb), nn.ReLU(inplace=True),
                                 nn.AdaptiveAvgPool3d(1), nn.Conv3d(cb, TEXT_FEATURES, kernel_size=1))
        self.text_to_vision = nn.Linear(embed_dim, TEXT_FEATURES)
        self.controller = nn.Conv3d(2 * TEXT_FEATURES, NUM_HEAD_PARAMS, kernel_size=1)

    def forward(self, image: torch.Tensor, class_embedding: torch.Tensor,
                points: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, K, D, H, W); with ``points`` (B, M) flat voxel indices, only there: (B, K, M).

        The heads are pointwise, so logits at sampled points equal the full map's at
        those voxels: training evaluates its loss on sampled points, which makes the
        per-class heads (the memory-bound part on CPU) several times cheaper.
        """
        bottleneck, decoder = self.backbone(to_model_frame(image, self.frame))
        b = image.shape[0]
        k = class_embedding.shape[0]
        pooled = self.GAP(bottleneck).flatten(1)                              # (B, 256)
        task = F.relu(self.text_to_vision(class_embedding))                   # (K, 256)
        cond = torch.cat([pooled[:, None, :].expand(b, k, TEXT_FEATURES),
                          task[None, :, :].expand(b, k, TEXT_FEATURES)], dim=2)  # (B, K, 512)
        w = self.controller.weight.flatten(1)                                 # (153, 512)
        params = cond @ w.t() + self.controller.bias                          # (B, K, 153)
        feat = from_model_frame(self.precls_conv(decoder), self.frame)        # (B, 8, D, H, W)
        spatial = feat.shape[2:]
        x = feat.flatten(2)                                                   # (B, 8, N)
        if points is not None:
            x = torch.gather(x, 2, points[:, None, :].expand(b, HEAD_CHANNELS, points.shape[1]))
        ws, bs = _split_params(params)
        h = torch.relu(torch.einsum("bkoi,bin->bkon", ws[0], x) + bs[0][..., None])
        h = torch.relu(torch.einsum("bkoi,bkin->bkon", ws[1], h) + bs[1][..., None])
        out = torch.einsum("bkoi,bkin->bkon", ws[2], h) + bs[2][..., None]    # (B, K, 1, N)
        if points is not None:
            return out[:, :, 0, :]
        return out.reshape(b, k, *spatial)


def _split_params(params: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(B, K, 153) → weights [(B,K,8,8), (B,K,8,8), (B,K,1,8)], biases [(B,K,8), (B,K,8), (B,K,1)]."""
    b, k, _ = params.shape
    chunks = torch.split(params, [*WEIGHT_NUMS, *BIAS_NUMS], dim=2)
    outs = (HEAD_CHANNELS, HEAD_CHANNELS, 1)
    weights = [c.reshape(b, k, o, HEAD_CHANNELS) for c, o in zip(chunks[:3], outs)]
    biases = [c.reshape(b, k, o) for c, o in zip(chunks[3:], outs)]
    return weights, biases


def build_model(backbone: str = "unet_compact", embed_dim: int = 384, frame: str = NATIVE,
                **kwargs) -> UniversalModel:
    """A UniversalModel with a named backbone: ``unet_compact`` (default, CPU) or others
    registered in ``BACKBONES``; ``kwargs`` go to the backbone."""
    if backbone not in BACKBONES:
        from radmesh.common.errors import InvalidInputError

        raise InvalidInputError(f"unknown backbone {backbone!r} (known: {', '.join(BACKBONES)})")
    return UniversalModel(BACKBONES[backbone](**kwargs), embed_dim, frame)


from radmesh.model.backbones import PUBLISHED_BACKBONES  # noqa: E402 - they subclass nothing here

# unet_compact: ours, for CPU serving; unet_universal and swinunetr: the published layouts.
BACKBONES = {"unet_compact": CompactUNet, **PUBLISHED_BACKBONES}
