"""Training the reference model on synthetic phantoms: the core of ``radmesh train``.

``train(out_dir, steps, seed)`` trains a :class:`~radmesh.model.network.UniversalModel`
(``unet_compact`` backbone, E = 384) on patches from
:class:`~radmesh.model.data.PhantomPatchSampler`, for the 16 phantom classes (the
validated classes). The class embedding table is MiniLM's ``encode_classes`` of those
classes, fixed (an input of the model, not a parameter).

Loss, on the sampled points of each patch (the heads are pointwise, so logits at the
points equal the full map's there): binary cross-entropy over every class and point,
plus soft Dice per (patch, class) over the points, averaged over the pairs whose
target is present among the points. AdamW; linear warm-up then cosine decay to 1 % of
``lr`` at ``steps``; gradient norm clipped to 1.

``out_dir`` holds ``checkpoint.pt`` (written atomically every ``checkpoint_every``
steps and at the end: model, optimizer, scheduler, step, torch and sampler RNG states,
the run's settings), ``train_log.jsonl`` (one line per logged step) and, at the end,
the weights file :data:`WEIGHTS_NAME`. With ``resume=True`` a run continues from the
checkpoint if one exists (its settings must match) and reproduces the uninterrupted
run exactly: the sampler regenerates its pool from the phantom seeds it recorded.

``phantom_version=2`` trains on v2 phantoms (intensity-remapped; :mod:`radmesh.model.data`),
by default for all 32 classes; the run's settings then record ``phantom_version``.

``init_weights`` fine-tunes: a fresh run (no checkpoint yet) starts from the parameters of
that weights file instead of a random initialisation, with a new optimizer and schedule.
The file must have the run's backbone, backbone settings, classes and class table (else
FailedPreconditionError naming the difference), except that a run may add classes to the
file's (the heads are generated from the class embedding, so nothing in the network depends
on the class list): the file's rows then replace the run's rows for its classes; its model_version and sha256 are recorded
in the run's settings and so in the new weights' ``training.init_weights``. A later
training run at another patch size (the reference model's ``-7`` went from 64³ to 96³
patches) is a fine-tune of the previous weights, not a resume of its checkpoint.

The weights file (``torch.save`` of plain types and tensors; loads with
``weights_only=True``) holds ``state_dict``, ``backbone``, ``backbone_kwargs``,
``embed_dim``, ``classes`` (validated class indices) and ``class_names``,
``class_embedding`` (K×E float32), ``encoder_id``, ``table_sha256``, ``spacing_mm``,
``hu_window``, ``patch_size``, ``frame`` (:mod:`radmesh.model.frames`; absent in older files:
radmesh's), ``organ_targets_include_lesions``, ``model_version``
and ``training`` (steps, seed, phantom seeds, batch size, lr, final loss, wall time).
:func:`load_weights` checks all of it and raises FailedPreconditionError naming what
is wrong.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from radmesh.common import vocabulary as vocab
from radmesh.common.errors import FailedPreconditionError, InvalidInputError
from radmesh.common.fileio import atomic_output
from radmesh.model.data import FIRST_TRAINING_SEED, PATCH, PHANTOM_CLASSES, V2_CLASSES, PhantomPatchSampler
from radmesh.model.frames import FRAMES, NATIVE
from radmesh.model.network import build_model
from radmesh.model.preprocess import HU_WINDOW, MODEL_SPACING_MM

WEIGHTS_FORMAT = "radmesh-universal-model-weights"
WEIGHTS_FORMAT_VERSION = 1
WEIGHTS_NAME = "radmesh_unet_phantom.pt"
CHECKPOINT_NAME = "checkpoint.pt"
MODEL_VERSION = "radmesh-unet-phantom-7"
MODEL_VERSION_V2 = "radmesh-unet-phantom-v2-1"  # what a run on v2 phantoms writes
DEFAULT_BACKBONE = "unet_compact"
EMBED_DIM = 384
MAX_WEIGHTS_BYTES = 25 * 1024 * 1024  # what the shipped (trained here) weights must fit in the repository
# What load_weights reads at all: the imported published Swin UNETR is 62 M float32 parameters (≈ 250 MB).
MAX_LOADABLE_WEIGHTS_BYTES = 1024 * 1024 * 1024
# Largest difference between a fine-tune source's class table and this run's encoding of the same prompts
# that still counts as the same table (float noise between machines; another encoder differs by ~0.1).
TABLE_TOLERANCE = 1e-4
_META_KEYS = ("format", "format_version", "model_version", "backbone", "backbone_kwargs", "embed_dim", "classes",
              "class_names", "class_embedding", "encoder_id", "table_sha256", "spacing_mm", "state_dict")


# ---- class table --------------------------------------------------------------------

def class_table(classes: tuple[int, ...] = PHANTOM_CLASSES, backend: str = "minilm") -> tuple[np.ndarray, str, str]:
    """(K×E float32 table, encoder_id, table_sha256) of ``classes`` with the text encoder."""
    from radmesh.text.encoders import get_encoder, table_sha256

    enc = get_encoder(backend)
    table = np.ascontiguousarray(enc.encode_classes(list(classes)), dtype=np.float32)
    return table, enc.encoder_id, table_sha256(table)


# ---- loss ---------------------------------------------------------------------------

def point_loss(logits: torch.Tensor, targets: torch.Tensor, eps: float = 1.0) -> tuple[torch.Tensor, dict]:
    """BCE + soft Dice on sampled points. logits, targets: (B, K, M). → (loss, parts)."""
    bce = F.binary_cross_entropy_with_logits(logits, targets)
    prob = torch.sigmoid(logits)
    inter = (prob * targets).sum(-1)
    denom = prob.sum(-1) + targets.sum(-1)
    dice = (2 * inter + eps) / (denom + eps)                       # (B, K)
    present = targets.sum(-1) > 0
    if bool(present.any()):
        dice_loss = 1 - dice[present].mean()
    else:
        dice_loss = logits.sum() * 0
    return bce + dice_loss, {"bce": float(bce.detach()), "dice": float(dice_loss.detach())}


def lr_factor(step: int, total: int, warmup: int, floor: float = 0.01) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from 1 to ``floor`` at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))


# ---- checkpoints --------------------------------------------------------------------

def _atomic_save(obj: Any, path: Path) -> None:
    # a file object, not the temporary name: torch derives the archive's record name from a path, and
    # refuses one that starts with a dot
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


@contextlib.contextmanager
def _deterministic():
    prev = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=prev_warn)


def _settings(**kw: Any) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in kw.items()}


def weights_dict(model: torch.nn.Module, settings: dict, table: np.ndarray, encoder_id: str, sha: str,
                 training: dict) -> dict:
    classes = [int(c) for c in settings["classes"]]
    return dict(
        format=WEIGHTS_FORMAT, format_version=WEIGHTS_FORMAT_VERSION,
        model_version=MODEL_VERSION_V2 if settings.get("phantom_version") == 2 else MODEL_VERSION,
        backbone=settings["backbone"], backbone_kwargs=dict(settings["backbone_kwargs"]), embed_dim=EMBED_DIM,
        classes=classes, class_names=[vocab.get(c).name for c in classes],
        class_embedding=torch.from_numpy(np.ascontiguousarray(table, dtype=np.float32)).clone(),
        encoder_id=encoder_id, table_sha256=sha, spacing_mm=float(MODEL_SPACING_MM), frame=NATIVE,
        hu_window=[float(v) for v in HU_WINDOW], patch_size=int(settings["patch"]),
        organ_targets_include_lesions=True,
        state_dict={k: v.detach().clone().contiguous() for k, v in model.state_dict().items()},
        training=json.loads(json.dumps(training, default=str)),  # plain types only (weights_only loading)
    )


def export_weights(checkpoint: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Write the weights file from a training checkpoint (e.g. of a run stopped early)."""
    ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
    s = ck["settings"]
    model = build_model(s["backbone"], EMBED_DIM, **s["backbone_kwargs"])
    model.load_state_dict(ck["model"])
    table = ck["class_embedding"].numpy()
    from radmesh.text.encoders import table_sha256

    training = dict(ck["training_summary"], steps_done=int(ck["step"]))
    out = Path(out_path)
    _atomic_save(weights_dict(model, s, table, ck["encoder_id"], table_sha256(table), training), out)
    return out


# ---- training -----------------------------------------------------------------------

def train(out_dir: str | os.PathLike, steps: int, seed: int = 0, batch_size: int = 2, lr: float = 2e-3,
          weight_decay: float = 1e-5, warmup: int | None = None, checkpoint_every: int = 100,
          resume: bool = True, progress: bool = True, num_points: int = 65536, patch: int = PATCH,
          pool_size: int = 12, refresh_every: int = 50, refresh_count: int = 3,
          classes: tuple[int, ...] | None = None, backbone: str = DEFAULT_BACKBONE,
          backbone_kwargs: dict | None = None, first_phantom_seed: int = FIRST_TRAINING_SEED,
          weights_path: str | os.PathLike | None = None, log_every: int = 10,
          stop_after: int | None = None, sampler: PhantomPatchSampler | None = None,
          reschedule: bool = False, init_weights: str | os.PathLike | None = None,
          phantom_version: int = 1) -> dict:
    """Train for ``steps`` steps (resuming from ``out_dir/checkpoint.pt`` when present).

    ``stop_after`` ends the run early after that many total steps (schedule unchanged; a
    checkpoint is written) — a later call with the same settings resumes. Returns a
    summary dict: steps, final_loss (mean of the last ≤ 20 steps), wall_s, paths.
    ``sampler`` replaces the phantom sampler (tests use a fixed-batch one). ``reschedule``
    lets a resumed run change ``steps`` (and so the remaining LR schedule: the cosine
    continues from the same step on the new length); all other settings must match.
    ``init_weights``: a weights file to start from (fine-tuning; see the module docstring).
    """
    if steps < 1 or batch_size < 1:
        raise InvalidInputError("steps and batch_size must be ≥ 1")
    if phantom_version not in (1, 2):
        raise InvalidInputError(f"phantom_version must be 1 or 2, got {phantom_version!r}")
    if classes is None:
        classes = V2_CLASSES if phantom_version == 2 else PHANTOM_CLASSES
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ck_path = out / CHECKPOINT_NAME
    weights_out = Path(weights_path) if weights_path else out / WEIGHTS_NAME
    warmup = min(100, max(1, steps // 20)) if warmup is None else int(warmup)
    settings = _settings(steps=int(steps), seed=int(seed), batch_size=int(batch_size), lr=float(lr),
                         weight_decay=float(weight_decay), warmup=warmup, num_points=int(num_points),
                         patch=int(patch), pool_size=int(pool_size), refresh_every=int(refresh_every),
                         refresh_count=int(refresh_count), classes=tuple(int(c) for c in classes),
                         backbone=backbone, backbone_kwargs=dict(backbone_kwargs or {}),
                         first_phantom_seed=int(first_phantom_seed))
    if phantom_version != 1:  # absent for v1, so v1 checkpoints written before it existed still resume
        settings["phantom_version"] = int(phantom_version)

    table, encoder_id, sha = class_table(tuple(classes))
    emb = torch.from_numpy(table)
    torch.manual_seed(seed)
    model = build_model(backbone, EMBED_DIM, **settings["backbone_kwargs"])
    if init_weights is not None:
        settings["init_weights"], table = _initialise_from(model, Path(init_weights), settings, encoder_id, table)
        emb, sha = torch.from_numpy(table), settings["init_weights"]["table_sha256"]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps, warmup))
    if sampler is None:
        sampler = PhantomPatchSampler(seed, tuple(classes), pool_size=pool_size, refresh_every=refresh_every,
                                      refresh_count=refresh_count, num_points=num_points, patch=patch,
                                      first_phantom_seed=first_phantom_seed, phantom_version=phantom_version)
    step, history, wall_before = 0, [], 0.0
    rescheduled: list[dict] = []
    if resume and ck_path.exists():
        ck = _load_checkpoint(ck_path)
        table, sha = _resumed_table(ck, settings, table, sha)
        emb = torch.from_numpy(table)
        diff = sorted(k for k in settings if ck["settings"].get(k) != settings[k])
        if reschedule and set(diff) <= {"steps", "warmup"} and int(ck["step"]) <= steps:
            rescheduled.append(dict(at_step=int(ck["step"]), from_steps=int(ck["settings"]["steps"]), to_steps=int(steps)))
            settings["warmup"] = ck["settings"]["warmup"]
            warmup = int(settings["warmup"])
            ck["settings"] = dict(ck["settings"], steps=settings["steps"])
            diff = []
        if diff:
            raise FailedPreconditionError(f"checkpoint {ck_path} was written with other settings ({', '.join(diff)}); "
                                          "use another out_dir or resume=False")
        if ck["encoder_id"] != encoder_id or not torch.equal(ck["class_embedding"], emb):
            raise FailedPreconditionError(f"checkpoint {ck_path} used another class embedding table "
                                          f"({ck['encoder_id']} vs {encoder_id})")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        torch.set_rng_state(ck["torch_rng"])
        sampler.load_state_dict(ck["sampler"])
        step, history = int(ck["step"]), list(ck["history"])
        wall_before = float(ck["training_summary"].get("wall_s", 0.0))
        rescheduled = list(ck["training_summary"].get("rescheduled", [])) + rescheduled

    def summary(wall: float) -> dict:
        tail = history[-20:]
        return dict(steps=int(steps), steps_done=int(step), seed=int(seed), batch_size=int(batch_size),
                    lr=float(lr), weight_decay=float(weight_decay), warmup=int(warmup), num_points=int(num_points),
                    patch=int(patch), phantom_seeds=[int(s) for s in sampler.state_dict().get("used_seeds", [])],
                    final_loss=float(np.mean(tail)) if tail else float("nan"), wall_s=float(wall),
                    torch=str(torch.__version__), threads=int(torch.get_num_threads()),
                    machine=f"{platform.machine()} {os.cpu_count()} CPU", device="cpu", rescheduled=rescheduled,
                    init_weights=settings.get("init_weights"))

    def save_checkpoint(wall: float) -> None:
        _atomic_save(dict(settings=settings, step=step, model=model.state_dict(), optimizer=opt.state_dict(),
                          scheduler=sched.state_dict(), torch_rng=torch.get_rng_state(), sampler=sampler.state_dict(),
                          history=history, class_embedding=emb, encoder_id=encoder_id,
                          training_summary=summary(wall)), ck_path)

    end = steps if stop_after is None else min(steps, int(stop_after))
    t0 = time.perf_counter()
    log_file = open(out / "train_log.jsonl", "a", encoding="utf-8")
    bar = tqdm(total=end, initial=step, desc="train", disable=not progress, unit="step", dynamic_ncols=True)
    model.train()
    try:
        with _deterministic():
            while step < end:
                batch = sampler.next_batch(batch_size)
                image = torch.from_numpy(batch["image"])
                points = torch.from_numpy(batch["points"])
                target = torch.from_numpy(batch["point_targets"])
                logits = model(image, emb, points=points)
                loss, parts = point_loss(logits, target)
                if not torch.isfinite(loss):
                    raise FailedPreconditionError(f"training diverged at step {step}: loss {float(loss)}")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                step += 1
                history.append(float(loss.detach()))
                wall = wall_before + time.perf_counter() - t0
                if step % log_every == 0 or step == end:
                    rec = dict(step=step, loss=history[-1], lr=opt.param_groups[0]["lr"], grad_norm=float(gnorm),
                               wall_s=round(wall, 2), **parts)
                    log_file.write(json.dumps(rec) + "\n")
                    log_file.flush()
                bar.set_postfix(loss=f"{np.mean(history[-10:]):.4f}", lr=f"{opt.param_groups[0]['lr']:.2e}")
                bar.update(1)
                if step % checkpoint_every == 0 or step == end:
                    save_checkpoint(wall)
    finally:
        bar.close()
        log_file.close()
    wall = wall_before + time.perf_counter() - t0
    result = summary(wall)
    result.update(checkpoint=str(ck_path), weights=None)
    if step >= steps:
        model.eval()
        _atomic_save(weights_dict(model, settings, table, encoder_id, sha, summary(wall)), weights_out)
        result["weights"] = str(weights_out)
    return result


def _resumed_table(ck: dict, settings: dict, table: np.ndarray, sha: str) -> tuple[np.ndarray, str]:
    """The class table a resumed run continues with: the checkpoint's, when it is this run's up to
    :data:`TABLE_TOLERANCE`.

    A run that adds classes to its ``init_weights`` encodes the new rows itself, and re-encoding
    differs in the last float bits on another machine or install (1.9e-7 measured), which would
    change the table's sha256 and refuse a resume across sessions for nothing. A table further
    off is another table, and the settings check that follows refuses it.
    """
    theirs = ck["class_embedding"].numpy()
    if theirs.shape != table.shape or float(np.abs(theirs - table).max()) > TABLE_TOLERANCE:
        return table, sha
    from radmesh.text.encoders import table_sha256

    theirs = np.ascontiguousarray(theirs, dtype=np.float32)
    init = settings.get("init_weights")
    theirs_init = ck["settings"].get("init_weights")
    if init and theirs_init and {**init, "table_sha256": None} == {**theirs_init, "table_sha256": None}:
        init["table_sha256"] = theirs_init["table_sha256"]
        return theirs, init["table_sha256"]
    if init:
        return table, sha  # another start: the settings check refuses it
    return theirs, table_sha256(theirs)


def _initialise_from(model: torch.nn.Module, path: Path, settings: dict, encoder_id: str,
                     table: np.ndarray) -> tuple[dict, np.ndarray]:
    """Load ``path``'s parameters into ``model`` (a fine-tune's start) after checking that the file was
    trained for the same architecture, classes and text encoder → (what the run records about it, the
    file's class table, which the run then trains with).

    The file's table, not a fresh encoding, is kept: re-encoding the same prompts differs in the last
    float bits between machines (1.8e-7 here), which would change the table's sha256 for nothing. A
    table further than :data:`TABLE_TOLERANCE` from this run's encoding is another table and refused.
    """
    from radmesh.text.encoders import table_sha256

    source, meta = load_weights(path)
    theirs = dict(backbone=meta["backbone"], backbone_kwargs=dict(meta["backbone_kwargs"]),
                  classes=[int(c) for c in meta["classes"]], encoder_id=meta["encoder_id"])
    ours = dict(backbone=settings["backbone"], backbone_kwargs=dict(settings["backbone_kwargs"]),
                classes=[int(c) for c in settings["classes"]], encoder_id=encoder_id)
    added = [c for c in ours["classes"] if c not in theirs["classes"]]
    superset = set(theirs["classes"]) <= set(ours["classes"])
    diff = [f"{k} {theirs[k]!r} (this run: {ours[k]!r})" for k in ours
            if theirs[k] != ours[k] and not (k == "classes" and superset)]
    if diff:
        raise FailedPreconditionError(f"cannot fine-tune from {path}: its {'; '.join(diff)}")
    rows = [ours["classes"].index(c) for c in theirs["classes"]]
    src_table = np.ascontiguousarray(meta["class_embedding"], dtype=np.float32)
    if float(np.abs(src_table - table[rows]).max()) > TABLE_TOLERANCE:
        diff = [f"class table differs from this run's encoding by more than {TABLE_TOLERANCE}"]
    if diff:
        raise FailedPreconditionError(f"cannot fine-tune from {path}: its {'; '.join(diff)}")
    model.load_state_dict(source.state_dict())
    merged = np.array(table, dtype=np.float32, copy=True)
    merged[rows] = src_table
    record = dict(path=path.name, sha256=meta["file_sha256"], model_version=str(meta["model_version"]),
                  steps_done=int(meta.get("training", {}).get("steps_done", 0)),
                  table_sha256=meta["table_sha256"] if not added else table_sha256(merged))
    if added:
        record["classes_added"] = added
    return record, merged


def _load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a damaged file
        raise FailedPreconditionError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e})") from e


# ---- loading ------------------------------------------------------------------------

def load_weights(path: str | os.PathLike, expected_encoder_id: str | None = None) -> tuple[torch.nn.Module, dict]:
    """(model in eval mode, meta) from a weights file; meta is everything but the state_dict,
    with ``class_embedding`` as a (K, E) float32 numpy array.

    ``meta["file_sha256"]``: the hex SHA-256 of the bytes loaded (the file is read once).
    ``meta["calibration"]``: the weights' post-processing calibration
    (:func:`radmesh.model.calibration.load_calibration`; UNCALIBRATED when there is none).

    Raises FailedPreconditionError naming the problem: missing, unreadable/corrupt, too
    large, wrong format, missing keys, a class table whose shape or sha256 does not match,
    unknown classes, an encoder_id other than ``expected_encoder_id``, a state_dict
    that does not fit the recorded architecture, or a calibration file beside it that is
    invalid or made for other weights.
    """
    p = Path(path)
    if not p.is_file():
        raise FailedPreconditionError(f"model weights {p} not found")
    size = p.stat().st_size
    if size > MAX_LOADABLE_WEIGHTS_BYTES:
        raise FailedPreconditionError(f"model weights {p} are {size} bytes, too large for a radmesh weights file")
    # read once: the calibration is bound to the hash of exactly the bytes loaded here
    data = p.read_bytes()
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise FailedPreconditionError(f"model weights {p} are corrupt or not a torch file "
                                      f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
    if not isinstance(obj, dict) or obj.get("format") != WEIGHTS_FORMAT:
        raise FailedPreconditionError(f"{p} is not a radmesh weights file (format {obj.get('format') if isinstance(obj, dict) else type(obj).__name__!r})")
    if obj.get("format_version") != WEIGHTS_FORMAT_VERSION:
        raise FailedPreconditionError(f"{p}: weights format version {obj.get('format_version')!r} is not supported "
                                      f"(expected {WEIGHTS_FORMAT_VERSION})")
    missing = [k for k in _META_KEYS if k not in obj]
    if missing:
        raise FailedPreconditionError(f"{p}: weights file lacks {', '.join(missing)}")
    classes = [int(c) for c in obj["classes"]]
    bad = [c for c in classes if c not in vocab.BY_INDEX]
    if bad or not classes or len(set(classes)) != len(classes):
        raise FailedPreconditionError(f"{p}: class list {classes} is invalid (unknown or repeated classes)")
    table = obj["class_embedding"]
    e = int(obj["embed_dim"])
    if not isinstance(table, torch.Tensor) or table.dtype != torch.float32 or tuple(table.shape) != (len(classes), e):
        shape = tuple(table.shape) if isinstance(table, torch.Tensor) else type(table).__name__
        raise FailedPreconditionError(f"{p}: class_embedding has shape {shape}, expected ({len(classes)}, {e}) float32")
    from radmesh.text.encoders import table_sha256

    arr = table.numpy().copy()
    if table_sha256(arr) != obj["table_sha256"]:
        raise FailedPreconditionError(f"{p}: class_embedding does not match its table_sha256 (file altered or corrupt)")
    if not np.isfinite(arr).all():
        raise FailedPreconditionError(f"{p}: class_embedding holds non-finite values")
    if expected_encoder_id is not None and obj["encoder_id"] != expected_encoder_id:
        raise FailedPreconditionError(f"{p}: class table came from encoder {obj['encoder_id']!r}, "
                                      f"not {expected_encoder_id!r}")
    frame = obj.get("frame", NATIVE)  # files written before frames existed were all trained in radmesh's
    if frame not in FRAMES:
        raise FailedPreconditionError(f"{p}: model frame {frame!r} is unknown (known: {', '.join(FRAMES)})")
    window = [float(v) for v in obj.get("hu_window", HU_WINDOW)]
    if window != [float(v) for v in HU_WINDOW]:
        raise FailedPreconditionError(f"{p}: the weights expect CT mapped from HU {window} but the pipeline maps "
                                      f"{list(HU_WINDOW)}")
    try:
        model = build_model(obj["backbone"], e, frame=frame, **dict(obj["backbone_kwargs"]))
    except Exception as ex:  # noqa: BLE001
        raise FailedPreconditionError(f"{p}: cannot build backbone {obj['backbone']!r}: {ex}") from ex
    try:
        model.load_state_dict(obj["state_dict"], strict=True)
    except RuntimeError as ex:
        first = str(ex).splitlines()
        raise FailedPreconditionError(f"{p}: state_dict does not match backbone {obj['backbone']!r} "
                                      f"({' '.join(first[:3])[:400]})") from ex
    for k, v in obj["state_dict"].items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise FailedPreconditionError(f"{p}: parameter {k} holds non-finite values")
    model.eval()
    meta = {k: v for k, v in obj.items() if k != "state_dict"}
    meta["classes"] = classes
    meta["class_embedding"] = arr
    meta["path"] = str(p)
    meta["file_bytes"] = int(size)
    from radmesh.model.calibration import load_calibration

    # the post-processing values measured for exactly this file, if any (radmesh.model.calibration)
    meta["file_sha256"] = hashlib.sha256(data).hexdigest()
    meta["calibration"] = load_calibration(p, meta["file_sha256"])
    return model, meta


def parameter_count(model: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def main(argv: list[str] | None = None) -> int:
    """``python -m radmesh.model.train OUT_DIR STEPS [--seed N] [--lr X] ...`` (the CLI proper is ``radmesh train``)."""
    import argparse

    ap = argparse.ArgumentParser(prog="radmesh train")
    ap.add_argument("out_dir")
    ap.add_argument("steps", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--checkpoint-every", type=int, default=100)
    ap.add_argument("--num-points", type=int, default=65536)
    ap.add_argument("--pool-size", type=int, default=12)
    ap.add_argument("--patch", type=int, default=PATCH)
    ap.add_argument("--refresh-every", type=int, default=50)
    ap.add_argument("--refresh-count", type=int, default=3)
    ap.add_argument("--stop-after", type=int, default=None)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--init-weights", default=None, help="fine-tune: start from this weights file's parameters")
    ap.add_argument("--first-phantom-seed", type=int, default=FIRST_TRAINING_SEED,
                    help=f"first training phantom seed (≥ {FIRST_TRAINING_SEED})")
    ap.add_argument("--phantom-version", type=int, default=1, choices=(1, 2),
                    help="2: train on v2 phantoms (all 32 classes, phases, regions; intensity-remapped)")
    ap.add_argument("--no-resume", action="store_true")
    ap.add_argument("--reschedule", action="store_true", help="resume with a different number of steps")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    res = train(a.out_dir, a.steps, seed=a.seed, batch_size=a.batch_size, lr=a.lr,
                checkpoint_every=a.checkpoint_every, num_points=a.num_points, pool_size=a.pool_size, patch=a.patch,
                refresh_every=a.refresh_every, refresh_count=a.refresh_count,
                stop_after=a.stop_after, weights_path=a.weights, resume=not a.no_resume,
                progress=not a.no_progress, reschedule=a.reschedule, init_weights=a.init_weights,
                first_phantom_seed=a.first_phantom_seed, phantom_version=a.phantom_version)
    print(json.dumps({k: v for k, v in res.items() if k != "phantom_seeds"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
