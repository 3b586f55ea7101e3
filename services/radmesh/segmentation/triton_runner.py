"""The Universal Model served by Triton, as a pipeline runner.

``TritonRunner(url, model="universal_seg", shared_memory=..., timeout_s=...)`` is a
:class:`radmesh.model.pipeline.Runner`:

- ``windows``: (B, 1, 96, 96, 96) float32 in [0, 1];
- ``class_embedding``: (K, E) float32, the same table for every window;
- returns (B, K, 96, 96, 96) float32 logits.

Triton's ``universal_seg`` takes ``image`` (B, 1, 96, 96, 96) FP32 and
``class_embedding`` (B, K, E) FP32 (the K×E table repeated per window, because every
input of a batched Triton model carries the batch dimension) and returns ``logits``
(B, K, 96, 96, 96) FP32. E and the largest batch come from Triton's model config
(``embed_dim``, ``max_batch_size``), so the pipeline refuses a class table of another
width before any window runs, and never sends more windows per call than Triton takes.

Tensors travel one of two ways:

- ``shared_memory=False``: as bytes inside the gRPC messages (any network);
- ``shared_memory=True``: through Triton *system* shared memory (POSIX ``/dev/shm``),
  valid only when this process and Triton share a host or pod. Each concurrent call
  borrows a *slot* — three regions (image, class_embedding, logits) created and
  registered with Triton once and reused by later calls; a slot grows (re-created and
  re-registered) when a call needs more windows or classes than it holds. ``close()``
  unregisters and destroys every region.

Failures are :class:`~radmesh.common.errors.UnavailableError` naming Triton's own
message (unreachable, model not ready, inference error), or
:class:`DeadlineExceededError` when the request's deadline runs out first; every
Triton call carries a client timeout so none outlives the deadline. After a failure
the runner drops its connection, model config and region registrations: the next call
reconnects and registers again, so a restarted Triton is picked up without restarting
this process.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from radmesh.common.errors import (DeadlineExceededError, FailedPreconditionError, InvalidInputError,  # noqa: F401 - DeadlineExceededError: re-exported
                                   RadmeshError, UnavailableError)

log = logging.getLogger(__name__)

WINDOW = 96
INPUT_IMAGE, INPUT_EMBEDDING, OUTPUT_LOGITS = "image", "class_embedding", "logits"
DEFAULT_MODEL = "universal_seg"
DEFAULT_TIMEOUT_S = 120.0
_FLOAT_BYTES = 4
_WINDOW_BYTES = WINDOW ** 3 * _FLOAT_BYTES  # one 96³ float32 channel, 3.375 MiB
_LOOPBACK = {"localhost", "127.0.0.1", "::1", "ip6-localhost"}


class _SharedMemoryUnusable(Exception):
    """Triton is reachable but cannot open this process's regions (no shared /dev/shm)."""


def is_loopback(url: str) -> bool:
    """Whether ``url`` ("host:port", "[::1]:8001" or "grpc://host:port") names this host's loopback."""
    host = urlsplit(url if "//" in url else f"//{url}").hostname or ""
    return host.lower() in _LOOPBACK or host.startswith("127.")


@dataclass(frozen=True)
class TritonModelConfig:
    """What the runner needs from Triton's config of the model."""

    name: str
    max_batch_size: int  # windows per request at most (Triton's max_batch_size)
    embed_dim: int  # E of class_embedding (B, K, E)
    platform: str  # "python", "tensorrt_plan", ... (for messages and model info)


def parse_model_config(config: Any, model: str) -> TritonModelConfig:
    """A ``tritonclient.grpc.model_config_pb2.ModelConfig`` → :class:`TritonModelConfig`.

    Refuses (FailedPreconditionError) a model whose tensors are not those of the
    Universal Model contract, naming what differs.
    """
    inputs = {i.name: list(i.dims) for i in config.input}
    outputs = {o.name: list(o.dims) for o in config.output}
    if set(inputs) != {INPUT_IMAGE, INPUT_EMBEDDING} or OUTPUT_LOGITS not in outputs:
        raise FailedPreconditionError(
            f"Triton model {model} has inputs {sorted(inputs)} and outputs {sorted(outputs)}; expected inputs "
            f"{INPUT_IMAGE}, {INPUT_EMBEDDING} and output {OUTPUT_LOGITS}")
    if int(config.max_batch_size) < 1:
        raise FailedPreconditionError(f"Triton model {model} is not batched (max_batch_size "
                                      f"{config.max_batch_size}); the runner sends (B, ...) tensors")
    # with max_batch_size > 0, dims exclude the batch dimension: image [1, 96, 96, 96], class_embedding [K, E]
    if inputs[INPUT_IMAGE] != [1, WINDOW, WINDOW, WINDOW]:
        raise FailedPreconditionError(f"Triton model {model} takes image dims {inputs[INPUT_IMAGE]}, expected "
                                      f"[1, {WINDOW}, {WINDOW}, {WINDOW}]")
    emb = inputs[INPUT_EMBEDDING]
    if len(emb) != 2 or emb[1] < 1:
        raise FailedPreconditionError(f"Triton model {model} takes class_embedding dims {emb}, expected [K, E] "
                                      f"with a fixed E")
    return TritonModelConfig(model, int(config.max_batch_size), int(emb[1]), config.platform or config.backend)


def _triton_message(ex: BaseException) -> str:
    """Triton's own words for a failure, on one line."""
    msg = ex.message() if hasattr(ex, "message") and callable(ex.message) else str(ex)
    msg = " ".join(str(msg or type(ex).__name__).split())
    return msg[:500]


def _is_timeout(ex: BaseException) -> bool:
    status = ex.status() if hasattr(ex, "status") and callable(ex.status) else None
    return status is not None and "DEADLINE_EXCEEDED" in str(status)


def _is_unreachable(ex: BaseException) -> bool:
    status = ex.status() if hasattr(ex, "status") and callable(ex.status) else None
    return status is not None and "UNAVAILABLE" in str(status)


@dataclass
class _Region:
    """One system shared-memory region, created here and registered with Triton."""

    name: str  # Triton's name of the region
    key: str  # POSIX shm key ("/radmesh_...")
    byte_size: int
    handle: Any = None


@dataclass
class _Slot:
    """Shared-memory regions one in-flight call owns: image, class_embedding, logits.

    Capacity is in windows (``windows``) and classes (``classes``); ``generation`` is the
    runner's connection generation the regions were registered under (a newer one means
    Triton may have restarted and forgotten them).
    """

    prefix: str
    windows: int = 0
    classes: int = 0
    embed_dim: int = 0
    generation: int = -1
    regions: dict[str, _Region] = field(default_factory=dict)


class TritonRunner:
    """Runs windows on Triton's ``model`` at ``url`` (gRPC, "host:port").

    ``shared_memory``: pass tensors through Triton system shared memory (same host or
    pod only) instead of inside the gRPC messages; ``shared_memory_required=False`` (the
    service's ``auto``) turns it off, with a warning, when Triton is reachable but cannot
    open the regions (e.g. a sidecar without a shared ``/dev/shm``), where True makes
    that an UnavailableError saying so. ``timeout_s``: the longest any one
    Triton call may take (seconds); :meth:`with_deadline` tightens it to a request's
    deadline. Thread-safe: concurrent calls use separate shared-memory slots, and
    Triton's dynamic batcher may merge their windows.
    """

    def __init__(self, url: str, model: str = DEFAULT_MODEL, *, shared_memory: bool,
                 timeout_s: float = DEFAULT_TIMEOUT_S, shared_memory_required: bool = True):
        if not url or ":" not in url:
            raise InvalidInputError(f"Triton URL must be HOST:PORT, got {url!r}")
        if not timeout_s > 0:
            raise InvalidInputError(f"timeout_s must be positive, got {timeout_s}")
        self.url = url.split("://", 1)[-1]
        self.model = model
        self.shared_memory = bool(shared_memory)
        self.shared_memory_required = bool(shared_memory_required)
        self.timeout_s = float(timeout_s)
        self._lock = threading.Lock()
        self._client: Any = None
        self._config: TritonModelConfig | None = None
        self._generation = 0
        self._slots: list[_Slot] = []
        self._free: queue.SimpleQueue[_Slot] = queue.SimpleQueue()
        # region names must be unique per Triton: two services (or runners) may share one
        self._prefix = f"radmesh_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self._closed = False

    # ---- connection and model config -------------------------------------------------
    def _connect(self) -> tuple[Any, int]:
        import tritonclient.grpc as tgrpc

        with self._lock:
            if self._closed:
                raise UnavailableError("the Triton runner is closed")
            if self._client is None:
                from radmesh.common.security import client_security

                # Triton's gRPC port with --grpc-use-ssl[-mutual] takes the same CA and client certificate
                self._client = tgrpc.InferenceServerClient(self.url, **client_security().triton_options())
            return self._client, self._generation

    def _reset(self, generation: int, why: str) -> None:
        """Forget the connection, the model config and the registrations made under ``generation``."""
        with self._lock:
            if generation != self._generation:
                return  # another call already reset after the same failure
            self._generation += 1
            client, self._client, self._config = self._client, None, None
        log.warning("triton connection reset after: %s", why[:300])
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - the old channel is being dropped either way
                pass

    def config(self, timeout_s: float | None = None) -> TritonModelConfig:
        """Triton's config of the model (cached until a failure); raises UnavailableError if not ready."""
        from tritonclient.utils import InferenceServerException

        cfg = self._config
        if cfg is not None:
            return cfg
        t = self.timeout_s if timeout_s is None else timeout_s
        client, generation = self._connect()
        try:
            if not client.is_model_ready(self.model, client_timeout=t):
                raise UnavailableError(f"Triton at {self.url} is up but model {self.model} is not ready")
            response = client.get_model_config(self.model, client_timeout=t)
        except InferenceServerException as ex:
            self._reset(generation, _triton_message(ex))
            if _is_timeout(ex):
                raise DeadlineExceededError(f"Triton at {self.url} did not answer within {t:.1f} s") from None
            what = "is unreachable" if _is_unreachable(ex) else "refused the model config request"
            raise UnavailableError(f"Triton at {self.url} {what}: {_triton_message(ex)}") from None
        cfg = parse_model_config(response.config, self.model)
        with self._lock:
            if generation == self._generation:
                self._config = cfg
        return cfg

    def check_ready(self, timeout_s: float | None = None) -> TritonModelConfig:
        """Fail fast (UnavailableError) when Triton or the model is not serving."""
        return self.config(timeout_s)

    @property
    def embed_dim(self) -> int:
        """E of the class table Triton's model takes (read from its config)."""
        return self.config().embed_dim

    @property
    def max_batch_size(self) -> int:
        """Windows per Triton request at most (Triton's max_batch_size)."""
        return self.config().max_batch_size

    # ---- inference -----------------------------------------------------------------------
    def __call__(self, windows: np.ndarray, class_embedding: np.ndarray) -> np.ndarray:
        return self.run(windows, class_embedding, end_monotonic=None)

    def with_deadline(self, end_monotonic: float) -> _BoundRunner:
        """This runner with every call bounded by ``end_monotonic`` (``time.monotonic()`` seconds)."""
        return _BoundRunner(self, end_monotonic)

    def _timeout(self, end_monotonic: float | None) -> float:
        if end_monotonic is None:
            return self.timeout_s
        left = end_monotonic - time.monotonic()
        if left <= 0:
            raise DeadlineExceededError("the request's deadline passed before inference finished")
        return min(self.timeout_s, left)

    def run(self, windows: np.ndarray, class_embedding: np.ndarray, end_monotonic: float | None) -> np.ndarray:
        """(B, 1, 96, 96, 96), (K, E) → (B, K, 96, 96, 96) logits, each Triton call bounded by the deadline."""
        x = np.ascontiguousarray(windows, dtype=np.float32)
        e = np.ascontiguousarray(class_embedding, dtype=np.float32)
        if x.ndim != 5 or x.shape[1:] != (1, WINDOW, WINDOW, WINDOW) or x.shape[0] < 1:
            raise InvalidInputError(f"windows must be (B, 1, {WINDOW}, {WINDOW}, {WINDOW}), got {x.shape}")
        cfg = self.config(self._timeout(end_monotonic))
        if e.ndim != 2 or e.shape[0] < 1:
            raise InvalidInputError(f"class_embedding must be (K, E) with K ≥ 1, got {e.shape}")
        if e.shape[1] != cfg.embed_dim:
            raise FailedPreconditionError(
                f"the class table has {e.shape[1]}-dimensional embeddings but Triton model {self.model} takes "
                f"{cfg.embed_dim} (a table from another text encoder?)")
        out = np.empty((x.shape[0], e.shape[0], WINDOW, WINDOW, WINDOW), dtype=np.float32)
        for start in range(0, x.shape[0], cfg.max_batch_size):
            part = x[start:start + cfg.max_batch_size]
            out[start:start + part.shape[0]] = self._infer(part, e, cfg, end_monotonic)
        return out

    def _infer(self, x: np.ndarray, e: np.ndarray, cfg: TritonModelConfig, end_monotonic: float | None,
               retry: bool = True) -> np.ndarray:
        from tritonclient.utils import InferenceServerException

        t = self._timeout(end_monotonic)
        client, generation = self._connect()
        slot = None
        try:
            if self.shared_memory:
                try:
                    slot = self._take_slot(client, generation, x.shape[0], e.shape[0], cfg.embed_dim, t)
                except _SharedMemoryUnusable as ex:
                    self._shared_memory_unusable(client, str(ex), t)
                else:
                    return self._infer_shm(client, slot, x, e, t)
            return self._infer_plain(client, x, e, t)
        except InferenceServerException as ex:
            message = _triton_message(ex)
            self._reset(generation, message)
            if _is_timeout(ex):
                raise DeadlineExceededError(f"Triton at {self.url} did not answer within {t:.1f} s") from None
            # a Triton restarted since the regions were registered does not know them: register again, once
            if retry and self.shared_memory and "shared memory" in message.lower():
                if slot is not None:
                    self._free.put(slot)
                    slot = None
                return self._infer(x, e, cfg, end_monotonic, retry=False)
            if _is_unreachable(ex):
                raise UnavailableError(f"Triton at {self.url} is unreachable: {message}") from None
            raise UnavailableError(f"Triton model {self.model} at {self.url} failed: {message}") from None
        finally:
            if slot is not None:
                self._free.put(slot)

    def _inputs(self, x: np.ndarray, e: np.ndarray) -> tuple[Any, Any, Any]:
        import tritonclient.grpc as tgrpc

        b, k = x.shape[0], e.shape[0]
        image = tgrpc.InferInput(INPUT_IMAGE, list(x.shape), "FP32")
        emb = tgrpc.InferInput(INPUT_EMBEDDING, [b, k, e.shape[1]], "FP32")
        logits = tgrpc.InferRequestedOutput(OUTPUT_LOGITS)
        return image, emb, logits

    def _infer_plain(self, client: Any, x: np.ndarray, e: np.ndarray, timeout_s: float) -> np.ndarray:
        image, emb, logits = self._inputs(x, e)
        image.set_data_from_numpy(x)
        emb.set_data_from_numpy(np.ascontiguousarray(np.broadcast_to(e, (x.shape[0], *e.shape))))
        result = client.infer(self.model, [image, emb], outputs=[logits], client_timeout=timeout_s)
        out = result.as_numpy(OUTPUT_LOGITS)
        return self._check_out(out, x.shape[0], e.shape[0])

    def _infer_shm(self, client: Any, slot: _Slot, x: np.ndarray, e: np.ndarray, timeout_s: float) -> np.ndarray:
        import tritonclient.utils.shared_memory as shm

        b, k = x.shape[0], e.shape[0]
        image, emb, logits = self._inputs(x, e)
        r_img, r_emb, r_out = slot.regions[INPUT_IMAGE], slot.regions[INPUT_EMBEDDING], slot.regions[OUTPUT_LOGITS]
        shm.set_shared_memory_region(r_img.handle, [x])
        shm.set_shared_memory_region(r_emb.handle, [np.ascontiguousarray(np.broadcast_to(e, (b, *e.shape)))])
        image.set_shared_memory(r_img.name, x.nbytes)
        emb.set_shared_memory(r_emb.name, b * e.nbytes)
        out_bytes = b * k * _WINDOW_BYTES
        logits.set_shared_memory(r_out.name, out_bytes)
        client.infer(self.model, [image, emb], outputs=[logits], client_timeout=timeout_s)
        view = shm.get_contents_as_numpy(r_out.handle, np.float32, [b, k, WINDOW, WINDOW, WINDOW])
        return np.array(view, copy=True)  # the slot is reused by the next call: copy out before releasing it

    @staticmethod
    def _check_out(out: np.ndarray | None, b: int, k: int) -> np.ndarray:
        if out is None or out.shape != (b, k, WINDOW, WINDOW, WINDOW):
            shape = None if out is None else tuple(out.shape)
            raise UnavailableError(f"Triton returned logits of shape {shape} for {b} windows and {k} classes")
        # a writable float32 copy: the gRPC buffer is read-only and the pipeline hands it to torch
        return np.array(out, dtype=np.float32, copy=True)

    def _shared_memory_unusable(self, client: Any, message: str, timeout_s: float) -> None:
        """Triton cannot open our regions: an error when shared memory was asked for, else gRPC from now on."""
        if self.shared_memory_required:
            raise UnavailableError(f"Triton at {self.url} cannot open this process's shared memory ({message}): "
                                   f"it does not share /dev/shm with this process; use --shared-memory off") from None
        log.warning("Triton at %s cannot open this process's shared memory (%s); sending tensors inside gRPC "
                    "messages from now on", self.url, message)
        with self._lock:
            self.shared_memory = False
            slots, self._slots = self._slots, []
        for slot in slots:
            self._destroy_slot(client, slot, timeout_s)

    # ---- shared-memory slots ----------------------------------------------------------------
    def _take_slot(self, client: Any, generation: int, windows: int, classes: int, embed_dim: int,
                   timeout_s: float) -> _Slot:
        try:
            slot = self._free.get_nowait()
        except queue.Empty:
            with self._lock:
                slot = _Slot(prefix=f"{self._prefix}_{len(self._slots)}")
                self._slots.append(slot)
        try:
            self._fit_slot(client, generation, slot, windows, classes, embed_dim, timeout_s)
        except BaseException:
            self._free.put(slot)
            raise
        return slot

    def _fit_slot(self, client: Any, generation: int, slot: _Slot, windows: int, classes: int, embed_dim: int,
                  timeout_s: float) -> None:
        """Make ``slot`` hold ``windows`` × ``classes`` and be registered with the current Triton."""
        import tritonclient.utils.shared_memory as shm

        grow = windows > slot.windows or classes > slot.classes or embed_dim != slot.embed_dim
        if not grow and slot.generation == generation:
            return
        if grow:
            self._destroy_slot(client, slot, timeout_s)
            slot.windows, slot.classes = max(windows, slot.windows), max(classes, slot.classes)
            slot.embed_dim = embed_dim
            sizes = {INPUT_IMAGE: slot.windows * _WINDOW_BYTES,
                     INPUT_EMBEDDING: slot.windows * slot.classes * embed_dim * _FLOAT_BYTES,
                     OUTPUT_LOGITS: slot.windows * slot.classes * _WINDOW_BYTES}
            for which, size in sizes.items():
                name = f"{slot.prefix}_{which}"
                region = _Region(name=name, key=f"/{name}", byte_size=size)
                try:
                    region.handle = shm.create_shared_memory_region(name, region.key, size, create_only=True)
                except shm.SharedMemoryException as ex:
                    self._destroy_slot(client, slot, timeout_s)
                    raise UnavailableError(f"cannot create {size >> 20} MiB of system shared memory for Triton "
                                           f"({ex.__cause__ or ex}); use --shared-memory off") from None
                slot.regions[which] = region
        for region in slot.regions.values():
            # a region of the same name may survive from before a transient error: drop it first
            try:
                client.unregister_system_shared_memory(region.name, client_timeout=timeout_s)
            except Exception:  # noqa: BLE001 - not registered (e.g. a restarted Triton): nothing to drop
                pass
            try:
                client.register_system_shared_memory(region.name, region.key, region.byte_size,
                                                     client_timeout=timeout_s)
            except Exception as ex:  # noqa: BLE001 - InferenceServerException; others propagate below
                if "unable to open shared memory region" in _triton_message(ex).lower():
                    raise _SharedMemoryUnusable(_triton_message(ex)) from None
                raise
        slot.generation = generation

    def _destroy_slot(self, client: Any, slot: _Slot, timeout_s: float) -> None:
        import tritonclient.utils.shared_memory as shm

        for region in slot.regions.values():
            if client is not None:
                try:
                    client.unregister_system_shared_memory(region.name, client_timeout=timeout_s)
                except Exception:  # noqa: BLE001 - Triton gone or region unknown: nothing more to undo there
                    pass
            if region.handle is not None:
                try:
                    shm.destroy_shared_memory_region(region.handle)
                except Exception as ex:  # noqa: BLE001 - keep tearing the others down
                    log.warning("shared memory region %s not destroyed: %s", region.name, str(ex)[:200])
        slot.regions.clear()
        slot.windows = slot.classes = 0
        slot.generation = -1

    def close(self) -> None:
        """Unregister and destroy every shared-memory region; close the connection."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            client, self._client = self._client, None
            slots, self._slots = self._slots, []
        for slot in slots:
            self._destroy_slot(client, slot, min(self.timeout_s, 5.0))
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001
                pass

    def __enter__(self) -> TritonRunner:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"TritonRunner({self.url!r}, {self.model!r}, shared_memory={self.shared_memory}, "
                f"timeout_s={self.timeout_s})")


class _BoundRunner:
    """A :class:`TritonRunner` whose calls are bounded by one request's deadline."""

    def __init__(self, runner: TritonRunner, end_monotonic: float):
        self.runner, self.end_monotonic = runner, end_monotonic

    @property
    def embed_dim(self) -> int:
        return self.runner.config(self.runner._timeout(self.end_monotonic)).embed_dim

    @property
    def max_batch_size(self) -> int:
        return self.runner.config(self.runner._timeout(self.end_monotonic)).max_batch_size

    def check_ready(self) -> TritonModelConfig:
        return self.runner.config(self.runner._timeout(self.end_monotonic))

    def __call__(self, windows: np.ndarray, class_embedding: np.ndarray) -> np.ndarray:
        return self.runner.run(windows, class_embedding, self.end_monotonic)
