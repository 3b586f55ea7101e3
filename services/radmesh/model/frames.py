"""The voxel frame a model was trained in, and the turn between it and the pipeline's.

The pipeline hands every model its windows in radmesh's frame, ``lps_zyx``: arrays
(B, C, z, y, x) on an axis-aligned LPS grid (x toward the patient's left, y toward
posterior, z toward superior; :mod:`radmesh.model.preprocess`). Our own weights are
trained in it. The published Universal Model was trained on MONAI's layout instead,
``ras_xyz``: ``LoadImaged`` keeps NIfTI's (i, j, k) axis order and
``Orientationd(axcodes="RAS")`` makes them run toward right, anterior and superior
(``dataset/dataloader.py`` of github.com/ljwztc/CLIP-Driven-Universal-Model). A
convolution is not mirror- or transpose-invariant, so such a model must see its windows
turned into its frame, and its output turned back.

Windows are cubes, so the turn is exact per window: transpose (z, y, x) → (x, y, z),
then reverse x (L → R) and y (P → A). The heads are pointwise, so turning the 8-channel
feature map back before them equals turning the logits back. The model does both
(:class:`radmesh.model.network.UniversalModel`), which puts the turn inside every
exported graph: ONNX Runtime, Triton and TensorRT all keep the pipeline's frame.
"""

from __future__ import annotations

import torch

from radmesh.common.errors import InvalidInputError

NATIVE = "lps_zyx"
MONAI_RAS = "ras_xyz"
FRAMES = (NATIVE, MONAI_RAS)


def check_frame(frame: str) -> str:
    if frame not in FRAMES:
        raise InvalidInputError(f"unknown model frame {frame!r} (known: {', '.join(FRAMES)})")
    return frame


def to_model_frame(x: torch.Tensor, frame: str) -> torch.Tensor:
    """(B, C, z, y, x) in radmesh's LPS frame → the same voxels in ``frame``."""
    if frame == NATIVE:
        return x
    return x.permute(0, 1, 4, 3, 2).flip(2, 3)


def from_model_frame(x: torch.Tensor, frame: str) -> torch.Tensor:
    """The inverse of :func:`to_model_frame`: a map in ``frame`` → (B, C, z, y, x) LPS."""
    if frame == NATIVE:
        return x
    return x.flip(2, 3).permute(0, 1, 4, 3, 2)
