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

:func:`write_published_weights` (``radmesh weights import --published``) turns a checkpoint
into a radmesh weights file that works wherever the shipped weights do, plus the class
table beside it (``W.class_table.pt``) for the text service's ``table`` backend, which the
segmentation service asks for the class embeddings. The preprocessing it records is what
the published code does, each value from its repository (commit 43c1239):

| value | published | where |
| --- | --- | --- |
| spacing | 1.5 × 1.5 × 1.5 mm, bilinear | ``test.py`` ``--space_x/y/z``; ``Spacingd`` in ``dataset/dataloader.py`` |
| intensity | HU −175 … 250 → 0 … 1, clipped | ``test.py`` ``--a_min/--a_max/--b_min/--b_max``; ``ScaleIntensityRanged`` |
| orientation | RAS, MONAI's (i, j, k) axis order | ``Orientationd(axcodes="RAS")`` after ``LoadImaged`` |
| window | 96³ | ``test.py`` ``--roi_x/y/z`` |
| sliding window | overlap 0.5, Gaussian blending, one window per call | ``sliding_window_inference(..., 1, model, overlap=0.5, mode='gaussian')`` in ``test.py`` |
| threshold | sigmoid > 0.5 for every class | ``THRESHOLD_DIC`` in ``utils/utils.py`` |
| classes | the 32 of ``ORGAN_NAME`` (``utils/utils.py``), in radmesh's order | the vocabulary |

All but the orientation equal radmesh's own pipeline; the orientation is the weights'
``frame`` (:mod:`radmesh.model.frames`), turned inside the model. The validated classes
are the 32 the publication trained and evaluated (its ``ORGAN_NAME``); ``classes``
narrows them.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from radmesh.common import vocabulary as vocab
from radmesh.common.errors import FailedPreconditionError, InvalidInputError
from radmesh.common.fileio import file_sha256
from radmesh.model.frames import MONAI_RAS
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


PUBLISHED_SOURCE = "github.com/ljwztc/CLIP-Driven-Universal-Model (commit 43c1239)"
PUBLISHED_PREPROCESSING = {
    "spacing_mm": "1.5 (test.py --space_x/--space_y/--space_z; Spacingd, bilinear)",
    "hu_window": "[-175, 250] -> [0, 1], clipped (test.py --a_min/--a_max/--b_min/--b_max; ScaleIntensityRanged)",
    "frame": "ras_xyz (dataset/dataloader.py: LoadImaged then Orientationd(axcodes='RAS'))",
    "window": "96 (test.py --roi_x/--roi_y/--roi_z)",
    "sliding_window": "overlap 0.5, gaussian, 1 window per call (test.py sliding_window_inference)",
    "threshold": "sigmoid > 0.5 for every class (utils/utils.py THRESHOLD_DIC)",
}
TABLE_SUFFIX = ".class_table.pt"


def detect_backbone(path: str | Path) -> str:
    """``"unet"`` or ``"swinunetr"``, from the checkpoint's key names (InvalidInputError when neither)."""
    parts = {_strip(_strip(k, PREFIX), "backbone.").split(".", 1)[0] for k in _read_state_dict(Path(path))}
    if "swinViT" in parts:
        return "swinunetr"
    if "down_tr64" in parts:
        return "unet"
    raise InvalidInputError(f"checkpoint {path} holds neither a published U-Net (down_tr64.*) nor a Swin UNETR "
                            f"(swinViT.*); name the backbone with --backbone")


def table_path_for(weights: str | Path) -> Path:
    """Where :func:`write_published_weights` puts the class table of ``weights``: ``W.class_table.pt``."""
    w = Path(weights)
    return w.with_name(w.stem + TABLE_SUFFIX)


def write_published_weights(checkpoint: str | Path, out: str | Path, backbone: str | None = None,
                            classes: Sequence[int] | None = None) -> dict[str, Any]:
    """Write ``out`` (a radmesh weights file) and its class table from a published checkpoint.

    ``backbone``: ``"unet"`` / ``"swinunetr"`` (default: detected from the keys); ``classes``:
    the validated classes (default all 32). The table file holds the checkpoint's own
    ``organ_embedding`` (32 × 512 float32) and the weights' ``encoder_id`` names it
    (``table:32x512:<sha256[:16] of the file>``), so the segmentation service accepts
    embeddings only from a text service serving that table. Both files are written
    atomically and the weights are read back with :func:`radmesh.model.train.load_weights`
    before this returns. Returns a summary (paths, backbone, model_version, classes, sizes).
    """
    from radmesh.model.train import WEIGHTS_FORMAT, WEIGHTS_FORMAT_VERSION, _atomic_save, load_weights
    from radmesh.text.encoders import table_sha256

    src = Path(checkpoint)
    backbone = backbone or detect_backbone(src)
    chosen = sorted({vocab.get(c).index for c in classes}) if classes else list(range(1, NUM_CLASSES + 1))
    model, table = import_universal_checkpoint(src, backbone)
    out = Path(out)
    if out.suffix != ".pt":
        raise InvalidInputError(f"--out must name a .pt file, got {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    table_file = table_path_for(out)
    _atomic_save(table, table_file)
    encoder_id = f"table:{NUM_CLASSES}x{CLIP_DIM}:{file_sha256(table_file)[:16]}"
    rows = table[[c - 1 for c in chosen]].contiguous()
    source_sha = file_sha256(src)
    model_version = f"universal-{backbone}-published-{source_sha[:8]}"
    _atomic_save(dict(
        format=WEIGHTS_FORMAT, format_version=WEIGHTS_FORMAT_VERSION, model_version=model_version,
        backbone=BACKBONE_NAMES[backbone], backbone_kwargs={}, embed_dim=CLIP_DIM, frame=MONAI_RAS,
        classes=chosen, class_names=[vocab.get(c).name for c in chosen], class_embedding=rows,
        encoder_id=encoder_id, table_sha256=table_sha256(rows.numpy()), spacing_mm=1.5,
        hu_window=[-175.0, 250.0], patch_size=96,
        state_dict={k: v.detach().clone().contiguous() for k, v in model.state_dict().items()},
        training={"source": "published checkpoint", "repository": PUBLISHED_SOURCE,
                  "checkpoint": src.name, "checkpoint_sha256": source_sha,
                  "preprocessing": dict(PUBLISHED_PREPROCESSING)},
    ), out)
    _, meta = load_weights(out)  # the file must load exactly as every consumer will load it
    return {"weights": str(out), "class_table": str(table_file), "backbone": backbone,
            "model_version": model_version, "classes": chosen, "encoder_id": encoder_id,
            "weights_bytes": out.stat().st_size, "file_sha256": meta["file_sha256"],
            "parameters": int(sum(p.numel() for p in model.parameters()))}


def import_universal_checkpoint(path: str | Path, backbone: str) -> tuple[UniversalModel, torch.Tensor]:
    """Load a published Universal Model checkpoint.

    ``backbone``: ``"unet"`` or ``"swinunetr"``. Returns the model (eval mode, CPU,
    embed_dim 512) and the class table (32, 512) float32 — the CLIP ViT-B/32
    embeddings of "A computerized tomography of a {name}", row i = class i + 1.
    The model's frame is ``ras_xyz``: it takes and returns radmesh's LPS (z, y, x) windows.
    Raises :class:`InvalidInputError` for an unknown backbone or a file that is not
    a readable ``{'net': state_dict}`` checkpoint, :class:`FailedPreconditionError`
    when its keys or shapes do not match the published layout.
    """
    if backbone not in BACKBONE_NAMES:
        raise InvalidInputError(f"unknown published backbone {backbone!r} (known: {', '.join(BACKBONE_NAMES)})")
    state = _read_state_dict(Path(path))

    # the published models were trained in MONAI's RAS (i, j, k) layout (see the table above)
    model = build_model(BACKBONE_NAMES[backbone], embed_dim=CLIP_DIM, frame=MONAI_RAS)
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
