"""What a radmesh label map is: one definition, shared by every service that takes one.

A label map holds vocabulary class indices 0..32 (0 = background) in any integer dtype,
or in floats whose values are whole numbers (NIfTI files are often written as float).
Measurement, the report service and the DICOM SEG writer all accept and refuse the
same arrays, with the same messages, because they all call :func:`label_array`.
"""

from __future__ import annotations

import math

import numpy as np

from radmesh.common import vocabulary as vocab
from radmesh.common.errors import InvalidInputError

MAX_LABEL = vocab.NUM_CLASSES
_SLAB = 8  # slices per chunk when converting floating-point label maps (bounds the temporary copy)


def label_array(arr: np.ndarray) -> np.ndarray:
    """Validate a label array (vocabulary class indices 0..32, any integer dtype or integral
    floats) and return it as uint8 (no copy when it already is); InvalidInputError naming the
    problem otherwise."""
    dt = arr.dtype
    if dt == np.bool_:
        raise InvalidInputError(
            "label map is boolean (a binary mask); radmesh label maps hold vocabulary class "
            f"indices 0..{MAX_LABEL} — write the mask with its class index (e.g. mask * 28 for a pancreas tumour)")
    if np.issubdtype(dt, np.integer):
        if dt == np.uint8:
            hi = int(arr.max())
            if hi > MAX_LABEL:
                raise InvalidInputError(
                    f"label map holds value {hi}, outside the vocabulary's class indices 0..{MAX_LABEL}")
            return arr
        lo, hi = int(arr.min()), int(arr.max())
        bad = lo if lo < 0 else hi
        if lo < 0 or hi > MAX_LABEL:
            raise InvalidInputError(
                f"label map holds value {bad}, outside the vocabulary's class indices 0..{MAX_LABEL}")
        return arr.astype(np.uint8)
    if np.issubdtype(dt, np.floating):
        lo, hi = float(np.min(arr)), float(np.max(arr))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise InvalidInputError(f"label map ({dt}) holds NaN or infinite values; labels must be class indices")
        if lo < 0 or hi > MAX_LABEL:
            bad = lo if lo < 0 else hi
            raise InvalidInputError(
                f"label map holds value {bad:g}, outside the vocabulary's class indices 0..{MAX_LABEL}")
        out = np.empty(arr.shape, dtype=np.uint8)
        for z in range(0, arr.shape[0], _SLAB):
            slab = arr[z:z + _SLAB]
            u = slab.astype(np.uint8)
            if not np.array_equal(u, slab):
                frac = slab[u != slab].flat[0]
                raise InvalidInputError(
                    f"label map ({dt}) holds non-integer value {float(frac):g}; labels must be whole "
                    f"class indices 0..{MAX_LABEL}")
            out[z:z + _SLAB] = u
        return out
    raise InvalidInputError(
        f"label map has dtype {dt}; expected an integer array of class indices 0..{MAX_LABEL}")
