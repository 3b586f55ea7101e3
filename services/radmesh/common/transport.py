"""Volumes on the wire: one header, then ≈1 MiB chunks, verified by SHA-256.

Every service that sends or receives a volume (CT in, label map out) uses these
helpers, so the rules live once: byte order (C-order [z][y][x], little-endian),
the checksum over the bytes as sent, size limits checked on the header before a
single chunk is buffered, chunks in order, and zlib output capped at the size the
header's geometry implies (no decompression bombs).
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable, Iterator

import numpy as np

from radmesh.common.errors import InvalidInputError, ResourceExhaustedError
from radmesh.common.volume import Geometry, GeometryError, Volume
from radmesh.v1 import common_pb2

CHUNK_BYTES = 1 << 20  # ≈1 MiB: well under gRPC's default 4 MiB message limit
DEFAULT_MAX_VOLUME_BYTES = 2 << 30  # 2 GiB: a 1024×1024×1000 int16 volume

_DTYPES: dict[int, np.dtype] = {
    common_pb2.DTYPE_UINT8: np.dtype("<u1"),
    common_pb2.DTYPE_INT16: np.dtype("<i2"),
    common_pb2.DTYPE_UINT16: np.dtype("<u2"),
    common_pb2.DTYPE_INT32: np.dtype("<i4"),
    common_pb2.DTYPE_FLOAT32: np.dtype("<f4"),
}
_WIRE_DTYPE = {v.newbyteorder("="): k for k, v in _DTYPES.items()}


def geometry_to_proto(g: Geometry) -> common_pb2.Geometry:
    return common_pb2.Geometry(
        shape_zyx=list(g.shape_zyx),
        spacing_xyz_mm=list(g.spacing_xyz_mm),
        origin_lps_mm=list(g.origin_lps_mm),
        direction=[float(v) for v in g.direction.ravel()],
    )


def geometry_from_proto(p: common_pb2.Geometry) -> Geometry:
    if len(p.shape_zyx) != 3:
        raise InvalidInputError(f"geometry.shape_zyx must have 3 values, got {len(p.shape_zyx)}")
    if len(p.spacing_xyz_mm) != 3 or len(p.origin_lps_mm) != 3:
        raise InvalidInputError("geometry.spacing_xyz_mm and geometry.origin_lps_mm must have 3 values each")
    if len(p.direction) not in (0, 9):
        raise InvalidInputError(f"geometry.direction must have 9 values (or none), got {len(p.direction)}")
    direction = np.asarray(p.direction, dtype=np.float64).reshape(3, 3) if p.direction else np.eye(3)
    return Geometry(tuple(p.shape_zyx), tuple(p.spacing_xyz_mm), tuple(p.origin_lps_mm), direction)


def wire_array(array: np.ndarray) -> np.ndarray:
    """The array in a wire dtype, converted only where no value changes."""
    a = np.asarray(array)
    if a.dtype == np.bool_:
        return a.astype(np.uint8)
    if a.dtype.newbyteorder("=") in _WIRE_DTYPE:
        return a
    if a.dtype == np.int8:
        return a.astype(np.int16)
    if np.issubdtype(a.dtype, np.integer):
        if a.size and (a.min() < np.iinfo(np.int32).min or a.max() > np.iinfo(np.int32).max):
            raise InvalidInputError(f"{a.dtype} values do not fit the int32 wire type")
        return a.astype(np.int32)
    if np.issubdtype(a.dtype, np.floating):
        return a.astype(np.float32)
    raise InvalidInputError(f"voxel type {a.dtype} cannot be sent")


def encode_volume(
    volume: Volume,
    compress: bool = False,
    **uids: str,
) -> tuple[common_pb2.VolumeHeader, bytes]:
    """Volume → (header, payload). ``uids``: study/series/frame_of_reference UIDs, modality."""
    a = wire_array(volume.array)
    raw = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
    payload = zlib.compress(raw, 1) if compress else raw
    header = common_pb2.VolumeHeader(
        geometry=geometry_to_proto(volume.geometry),
        dtype=_WIRE_DTYPE[a.dtype.newbyteorder("=")],
        compression=common_pb2.COMPRESSION_ZLIB if compress else common_pb2.COMPRESSION_NONE,
        total_bytes=len(payload),
        sha256=hashlib.sha256(payload).hexdigest(),
        **uids,
    )
    return header, payload


def iter_chunks(payload: bytes, chunk_bytes: int = CHUNK_BYTES) -> Iterator[common_pb2.VolumeChunk]:
    view = memoryview(payload)
    for offset in range(0, len(payload), chunk_bytes):
        yield common_pb2.VolumeChunk(offset_bytes=offset, data=bytes(view[offset : offset + chunk_bytes]))


def volume_parts(volume: Volume, compress: bool = False, **uids: str) -> Iterator[common_pb2.VolumePart]:
    """A volume as VolumePart messages: the header, then the chunks."""
    header, payload = encode_volume(volume, compress=compress, **uids)
    yield common_pb2.VolumePart(header=header)
    for chunk in iter_chunks(payload):
        yield common_pb2.VolumePart(chunk=chunk)


class VolumeAssembler:
    """Rebuilds a volume from a header and in-order chunks, enforcing every rule.

    ``what`` names the volume in error messages ("CT", "label map").
    """

    def __init__(self, what: str = "volume", max_bytes: int = DEFAULT_MAX_VOLUME_BYTES):
        self.what = what
        self.max_bytes = max_bytes
        self.header: common_pb2.VolumeHeader | None = None
        self._geometry: Geometry | None = None
        self._dtype: np.dtype | None = None
        # chunks as received (no copy per chunk; joined once in finish): uploads run at wire speed
        self._chunks: list[bytes] = []
        self._received = 0
        self._hash = hashlib.sha256()

    @property
    def started(self) -> bool:
        return self.header is not None

    @property
    def received_bytes(self) -> int:
        return self._received

    def start(self, header: common_pb2.VolumeHeader) -> None:
        if self.header is not None:
            raise InvalidInputError(f"{self.what}: a second header arrived in the same stream")
        if header.dtype not in _DTYPES:
            raise InvalidInputError(f"{self.what}: dtype is unset or unknown ({header.dtype})")
        try:
            geometry = geometry_from_proto(header.geometry)
        except GeometryError as e:
            raise InvalidInputError(f"{self.what}: {e}") from None
        dtype = _DTYPES[header.dtype]
        raw_bytes = int(np.prod(geometry.shape_zyx)) * dtype.itemsize
        limit_mb = self.max_bytes / (1 << 20)
        if raw_bytes > self.max_bytes or header.total_bytes > self.max_bytes:
            raise ResourceExhaustedError(
                f"{self.what}: {max(raw_bytes, header.total_bytes) / (1 << 20):.0f} MiB exceeds the "
                f"{limit_mb:.0f} MiB limit of this server"
            )
        if header.compression == common_pb2.COMPRESSION_NONE and header.total_bytes != raw_bytes:
            raise InvalidInputError(
                f"{self.what}: header announces {header.total_bytes} bytes but shape {geometry.shape_zyx} "
                f"of {dtype.name} needs {raw_bytes}"
            )
        if header.compression not in (common_pb2.COMPRESSION_NONE, common_pb2.COMPRESSION_ZLIB):
            raise InvalidInputError(f"{self.what}: unknown compression {header.compression}")
        if len(header.sha256) != 64 or any(c not in "0123456789abcdef" for c in header.sha256):
            raise InvalidInputError(f"{self.what}: sha256 must be 64 lower-case hex characters")
        self.header, self._geometry, self._dtype = header, geometry, dtype

    def add_part(self, part: common_pb2.VolumePart) -> None:
        """One element of a VolumePart stream: the header (:meth:`start`) or a chunk (:meth:`add`)."""
        which = part.WhichOneof("part")
        if which == "header":
            self.start(part.header)
        elif which == "chunk":
            self.add(part.chunk)
        else:
            raise InvalidInputError(f"{self.what}: an empty VolumePart arrived")

    def add(self, chunk: common_pb2.VolumeChunk) -> None:
        if self.header is None:
            raise InvalidInputError(f"{self.what}: a chunk arrived before the header")
        if chunk.offset_bytes != self._received:
            raise InvalidInputError(
                f"{self.what}: chunk at offset {chunk.offset_bytes} but {self._received} bytes received so far"
            )
        data = chunk.data  # each read of a bytes field copies it: read it once
        if self._received + len(data) > self.header.total_bytes:
            raise InvalidInputError(
                f"{self.what}: more bytes than the {self.header.total_bytes} the header announced"
            )
        self._chunks.append(data)
        self._received += len(data)
        self._hash.update(data)

    def finish(self) -> Volume:
        if self.header is None:
            raise InvalidInputError(f"{self.what}: the stream ended without a header")
        if self._received != self.header.total_bytes:
            raise InvalidInputError(
                f"{self.what}: stream ended after {self._received} of {self.header.total_bytes} bytes"
            )
        if self._hash.hexdigest() != self.header.sha256:
            raise InvalidInputError(f"{self.what}: SHA-256 mismatch, the payload was corrupted in transit")
        assert self._geometry is not None and self._dtype is not None
        raw_bytes = int(np.prod(self._geometry.shape_zyx)) * self._dtype.itemsize
        payload = b"".join(self._chunks)
        self._chunks = []  # release the wire copies before the caller works on the array
        if self.header.compression == common_pb2.COMPRESSION_ZLIB:
            d = zlib.decompressobj()
            try:
                raw = d.decompress(payload, raw_bytes)
                if d.unconsumed_tail or not d.eof:
                    raise InvalidInputError(
                        f"{self.what}: zlib payload does not decode to the {raw_bytes} bytes its shape implies"
                    )
            except zlib.error as e:
                raise InvalidInputError(f"{self.what}: zlib payload is corrupt ({e})") from None
        else:
            raw = payload
        del payload
        if len(raw) != raw_bytes:
            raise InvalidInputError(f"{self.what}: payload holds {len(raw)} bytes, shape needs {raw_bytes}")
        array = np.frombuffer(raw, dtype=self._dtype).reshape(self._geometry.shape_zyx)
        return Volume(array.astype(self._dtype.newbyteorder("="), copy=False), self._geometry)


def assemble(parts: Iterable[common_pb2.VolumePart], what: str = "volume",
             max_bytes: int = DEFAULT_MAX_VOLUME_BYTES) -> Volume:
    """A whole VolumePart stream → Volume (for clients and tests)."""
    asm = VolumeAssembler(what, max_bytes)
    for part in parts:
        asm.add_part(part)
    return asm.finish()


# ---- files (artifacts) on the wire ------------------------------------------------------

def artifact_pieces(name: str, data: bytes, media_type: str,
                    chunk_bytes: int = CHUNK_BYTES) -> Iterator[common_pb2.Artifact | common_pb2.ArtifactChunk]:
    """One file as an Artifact (inline when it fits one ≈1 MiB message) or an empty Artifact
    (name, media type, size, SHA-256) followed by its ArtifactChunks in order."""
    head = common_pb2.Artifact(name=name, media_type=media_type, size_bytes=len(data),
                               sha256=hashlib.sha256(data).hexdigest())
    if len(data) <= chunk_bytes:
        head.data = data
        yield head
        return
    yield head
    view = memoryview(data)
    for offset in range(0, len(data), chunk_bytes):
        yield common_pb2.ArtifactChunk(name=name, offset_bytes=offset, data=bytes(view[offset:offset + chunk_bytes]))


class ArtifactAssembler:
    """Rebuilds files from Artifact / ArtifactChunk messages; ``finish`` checks each size and SHA-256.

    ``sender`` names the peer in error messages ("report service")."""

    def __init__(self, sender: str):
        self.sender = sender
        self.heads: dict[str, common_pb2.Artifact] = {}
        self._data: dict[str, bytearray] = {}

    def add_artifact(self, a: common_pb2.Artifact) -> None:
        if a.name in self.heads:
            raise InvalidInputError(f"{self.sender} sent artifact {a.name} twice")
        self.heads[a.name] = a
        self._data[a.name] = bytearray(a.data)

    def add_chunk(self, c: common_pb2.ArtifactChunk) -> None:
        if c.name not in self._data or c.offset_bytes != len(self._data[c.name]):
            raise InvalidInputError(f"{self.sender} sent a chunk of {c.name} out of order")
        self._data[c.name] += c.data

    def finish(self) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for name, head in self.heads.items():
            blob = bytes(self._data[name])
            if len(blob) != head.size_bytes or hashlib.sha256(blob).hexdigest() != head.sha256:
                raise InvalidInputError(f"artifact {name} arrived incomplete or corrupted (size or SHA-256 mismatch)")
            out[name] = blob
        return out
