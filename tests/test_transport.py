import hashlib
import zlib

import numpy as np
import pytest

from radmesh.common.errors import InvalidInputError, ResourceExhaustedError
from radmesh.common.transport import (CHUNK_BYTES, VolumeAssembler, assemble, encode_volume, iter_chunks,
                                      volume_parts)
from radmesh.common.volume import Geometry, Volume
from radmesh.v1 import common_pb2


def _volume(dtype=np.int16, shape=(40, 64, 96), oblique=False):
    rng = np.random.default_rng(1)
    a = rng.integers(-1000, 1000, size=shape).astype(dtype)
    c, s = np.cos(0.3), np.sin(0.3)
    d = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) if oblique else np.eye(3)
    return Volume(a, Geometry(shape, (0.7, 0.8, 2.5), (-100.0, 20.5, 300.0), d))


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.int32, np.float32])
def test_roundtrip_keeps_values_and_geometry(compress, dtype):
    v = _volume(dtype, oblique=True)
    back = assemble(volume_parts(v, compress=compress))
    assert back.array.dtype == v.array.dtype
    np.testing.assert_array_equal(back.array, v.array)
    assert back.geometry.matches(v.geometry, tol_mm=1e-9)


def test_chunks_are_about_one_mebibyte_and_in_order():
    header, payload = encode_volume(_volume(shape=(100, 128, 128)))
    chunks = list(iter_chunks(payload))
    assert all(len(c.data) == CHUNK_BYTES for c in chunks[:-1])
    assert [c.offset_bytes for c in chunks] == [i * CHUNK_BYTES for i in range(len(chunks))]
    assert header.sha256 == hashlib.sha256(payload).hexdigest()


def test_checksum_mismatch_is_refused():
    parts = list(volume_parts(_volume()))
    data = bytearray(parts[1].chunk.data)
    data[10] ^= 0xFF
    parts[1].chunk.data = bytes(data)
    with pytest.raises(InvalidInputError, match="SHA-256 mismatch"):
        assemble(parts)


def test_out_of_order_missing_and_extra_chunks_are_refused():
    parts = list(volume_parts(_volume(shape=(100, 128, 128))))
    with pytest.raises(InvalidInputError, match="offset"):
        assemble([parts[0], parts[2], parts[1], *parts[3:]])
    with pytest.raises(InvalidInputError, match="stream ended after"):
        assemble(parts[:-1])
    with pytest.raises(InvalidInputError, match="before the header"):
        assemble(parts[1:])
    with pytest.raises(InvalidInputError, match="second header"):
        assemble([parts[0], parts[0]])
    with pytest.raises(InvalidInputError, match="an empty VolumePart"):
        assemble([parts[0], common_pb2.VolumePart(), *parts[1:]])


def test_size_limit_is_checked_on_the_header():
    header, _ = encode_volume(_volume(shape=(100, 128, 128)))
    asm = VolumeAssembler("CT", max_bytes=1 << 20)
    with pytest.raises(ResourceExhaustedError, match="exceeds the 1 MiB limit"):
        asm.start(header)


def test_decompression_bomb_is_refused():
    small = Volume(np.zeros((2, 2, 2), np.uint8), Geometry((2, 2, 2)))
    payload = zlib.compress(b"\0" * 10_000)
    header, _ = encode_volume(small, compress=True)
    header.total_bytes, header.sha256 = len(payload), hashlib.sha256(payload).hexdigest()
    asm = VolumeAssembler("label map")
    asm.start(header)
    asm.add(common_pb2.VolumeChunk(offset_bytes=0, data=payload))
    with pytest.raises(InvalidInputError, match="does not decode"):
        asm.finish()


def test_header_inconsistent_with_shape_is_refused():
    header, _ = encode_volume(_volume())
    header.total_bytes -= 2
    with pytest.raises(InvalidInputError, match="needs"):
        VolumeAssembler("CT").start(header)
    header, _ = encode_volume(_volume())
    header.dtype = common_pb2.DTYPE_UNSPECIFIED
    with pytest.raises(InvalidInputError, match="dtype"):
        VolumeAssembler("CT").start(header)
    header, _ = encode_volume(_volume())
    del header.geometry.shape_zyx[:]
    with pytest.raises(InvalidInputError, match="shape_zyx"):
        VolumeAssembler("CT").start(header)


def test_unsendable_values_are_refused_and_lossless_conversions_done():
    big = Volume(np.full((2, 2, 2), 2**40, np.int64), Geometry((2, 2, 2)))
    with pytest.raises(InvalidInputError, match="int32"):
        encode_volume(big)
    small = Volume(np.full((2, 2, 2), 7, np.int64), Geometry((2, 2, 2)))
    back = assemble(volume_parts(small))
    assert back.array.dtype == np.int32 and int(back.array[0, 0, 0]) == 7
