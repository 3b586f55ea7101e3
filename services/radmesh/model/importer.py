"""Import the published CLIP-Driven Universal Model checkpoints (Liu et al., ICCV 2023).

The published checkpoints (github.com/ljwztc/CLIP-Driven-Universal-Model: U-Net,
Swin UNETR) are ``torch.save``'d dicts whose ``'net'`` entry is the state_dict of
their ``Universal_model`` wrapped in DistributedDataParallel, so every key starts
with ``module.``. Our :class:`~radmesh.model.network.UniversalModel` with the
backbones of :mod:`radmesh.model.backbones` has the same parameters under the same
names, so the mapping is one-to-one. Published key (after ``module.``) → radmesh name:

- U-Net (``backbone.down_tr64.ops.0.conv1.weight``, ``backbone.up_tr256.up_conv.weight``,
  ``backbone.down_tr512.ops.1.bn1.running_var`` …) → the same name;
- Swin UNETR ``swinViT.*``, ``encoder{1,2,3,4,10}.*``, ``decoder{1..5}.*`` → ``backbone.`` +
  key: the released checkpoint stores the backbone's parts at the top level (the
  published ``test.py`` adds ``backbone.`` to them); ``backbone.swinViT.*`` etc., as
  the current published code would save them, are accepted as well;
- ``precls_conv.*``, ``GAP.*``, ``text_to_vision.*``, ``controller.*`` (the Conv3d
  512 → 153, 1×1×1, our model reads as ``controller.weight.flatten(1)``) → the same name;
- ``organ_embedding`` (32, 512) → no parameter: the returned class table, row i = class i + 1.

The import is strict: every checkpoint key is used, every model parameter and
buffer (batch-norm running statistics, Swin ``relative_position_index``) is
filled, shapes are equal; otherwise :class:`FailedPreconditionError` names the
offending keys. The published model has no parameter that our model lacks (the
U-Net's per-class ``out_tr`` is commented out in ``Unet.py``, the published Swin
UNETR defines no ``out`` convolution), so nothing is dropped.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from radmesh.common.errors import FailedPreconditionError, InvalidInputError
from radmesh.model.network import UniversalModel, build_model

BACKBONE_NAMES = {"unet": "unet_universal", "swinunetr": "swinunetr"}
"""Published backbone name → radmesh backbone registry name."""

NUM_CLASSES = 32
CLIP_DIM = 512
PREFIX = "module."
EMBEDDING_KEY = "organ_embedding"
# Top-level modules of the published Swin UNETR, stored without ``backbone.`` in the released checkpoint.
SWIN_PARTS = frozenset({"swinViT", "encoder1", "encoder2", "encoder3", "encoder4", "encoder10",
                        "decoder1", "decoder2", "decoder3", "decoder4", "decoder5"})
_SHOW = 5  # keys named per kind of mismatch


def published_to_radmesh(key: str, backbone: str) -> str:
    """Our state_dict name for a published checkpoint key (``organ_embedding`` stays as is)."""
    k = key[len(PREFIX):] if key.startswith(PREFIX) else key
    if backbone == "swinunetr" and k.split(".", 1)[0] in SWIN_PARTS:
        return "backbone." + k
    return k


def radmesh_to_published(key: str, backbone: str) -> str:
    """The published checkpoint key of one of our state_dict names (the released layout)."""
    if backbone == "swinunetr" and key.startswith("backbone.") and key.split(".", 2)[1] in SWIN_PARTS:
        key = key[len("backbone."):]
    return PREFIX + key


def import_universal_checkpoint(path: str | Path, backbone: str) -> tuple[UniversalModel, torch.Tensor]:
    """Load a published Universal Model checkpoint.

    ``backbone``: ``"unet"`` or ``"swinunetr"``. Returns the model (eval mode, CPU,
    embed_dim 512) and the class table (32, 512) float32 — the CLIP ViT-B/32
    embeddings of "A computerized tomography of a {name}", row i = class i + 1.
    Raises :class:`InvalidInputError` for an unknown backbone or a file that is not
    a readable ``{'net': state_dict}`` checkpoint, :class:`FailedPreconditionError`
    when its keys or shapes do not match the published layout.
    """
    if backbone not in BACKBONE_NAMES:
        raise InvalidInputError(f"unknown published backbone {backbone!r} (known: {', '.join(BACKBONE_NAMES)})")
    state = _read_state_dict(Path(path))

    model = build_model(BACKBONE_NAMES[backbone], embed_dim=CLIP_DIM)
    expected = model.state_dict()

    mapped: dict[str, torch.Tensor] = {}
    source: dict[str, str] = {}  # our name → checkpoint key
    unexpected: list[str] = []
    duplicate: list[str] = []
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            unexpected.append(key)
            continue
        name = published_to_radmesh(key, backbone)
        if name in source:
            duplicate.append(f"{key} (and {source[name]})")
            continue
        source[name] = key
        mapped[name] = value

    table = mapped.pop(EMBEDDING_KEY, None)
    unexpected += [source[n] for n in mapped if n not in expected]
    missing = [radmesh_to_published(n, backbone) for n in expected if n not in mapped]
    if table is None:
        missing.append(PREFIX + EMBEDDING_KEY)
    shape = [f"{source[n]}: checkpoint {tuple(v.shape)} vs model {tuple(expected[n].shape)}"
             for n, v in mapped.items() if n in expected and v.shape != expected[n].shape]
    if table is not None and tuple(table.shape) != (NUM_CLASSES, CLIP_DIM):
        shape.append(f"{source[EMBEDDING_KEY]}: checkpoint {tuple(table.shape)} vs expected "
                     f"{(NUM_CLASSES, CLIP_DIM)}")
    if table is not None and not table.is_floating_point():
        shape.append(f"{source[EMBEDDING_KEY]}: dtype {table.dtype} is not floating point")

    problems = [_list("missing", missing), _list("unexpected", unexpected),
                _list("wrong shape or dtype", shape), _list("same parameter twice", duplicate)]
    problems = [p for p in problems if p]
    if problems:
        raise FailedPreconditionError(
            f"{path}: not a published Universal Model {backbone} checkpoint — " + "; ".join(problems)
            + _hint(state, backbone))

    model.load_state_dict({n: mapped[n] for n in expected}, strict=True)
    model.eval()
    return model, table.detach().to(torch.float32).contiguous().clone()


def _read_state_dict(path: Path) -> dict[str, object]:
    if not path.is_file():
        raise InvalidInputError(f"checkpoint {path} does not exist")
    try:
        # weights_only: the published files hold only tensors and plain containers.
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError) as e:
        raise InvalidInputError(f"checkpoint {path} cannot be read as a tensor-only torch file: "
                                f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("net"), dict):
        found = ", ".join(map(str, list(ckpt)[:8])) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise InvalidInputError(
            f"checkpoint {path} has no 'net' state_dict (found: {found}); the published Universal Model "
            "checkpoints are {'net': state_dict, ...} — a 'state_dict' file is a backbone pretraining "
            "checkpoint, not a Universal Model")
    return ckpt["net"]


def _list(kind: str, keys: list[str]) -> str:
    if not keys:
        return ""
    more = f", … {len(keys) - _SHOW} more" if len(keys) > _SHOW else ""
    return f"{kind} ({len(keys)}): " + ", ".join(keys[:_SHOW]) + more


def _strip(key: str, prefix: str) -> str:
    return key[len(prefix):] if key.startswith(prefix) else key


def _hint(state: dict[str, object], backbone: str) -> str:
    parts = {_strip(_strip(k, PREFIX), "backbone.").split(".", 1)[0] for k in state}
    if backbone == "unet" and "swinViT" in parts:
        return " (this looks like a Swin UNETR checkpoint: use backbone 'swinunetr')"
    if backbone == "swinunetr" and "down_tr64" in parts:
        return " (this looks like a U-Net checkpoint: use backbone 'unet')"
    if PREFIX + EMBEDDING_KEY + ".weight" in state or EMBEDDING_KEY + ".weight" in state:
        return (" (this checkpoint was trained with 'rand_embedding' — learned class vectors instead of "
                "CLIP text embeddings — which radmesh does not support)")
    return ""
