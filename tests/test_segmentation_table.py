"""The segmentation service's class-table check: same encoder, same table (within float rounding)."""

import numpy as np
import pytest

from radmesh.common.errors import FailedPreconditionError
from radmesh.model.runtime import load
from radmesh.segmentation.core import TABLE_TOLERANCE, Segmenter


class _Text:
    """A text service whose Encode returns ``table`` (the Segmenter's TextService interface)."""

    def __init__(self, table, encoder_id):
        self.table, self.encoder_id, self.calls = table, encoder_id, 0

    def encode_classes(self, classes, backend, timeout_s):
        self.calls += 1
        return self.table, backend, self.encoder_id


@pytest.fixture(scope="module")
def meta():
    return load(None)[1]


def test_rows_a_few_ulps_apart_are_the_same_table(meta):
    table = np.asarray(meta["class_embedding"], np.float32)
    text = _Text(table + np.float32(2e-7), meta["encoder_id"])   # MiniLM batched differently
    seg = Segmenter(runner=None, text=text)
    rows = seg.class_table(10.0)
    assert sorted(rows) == sorted(int(c) for c in meta["classes"])
    seg.class_table(10.0)
    assert text.calls == 1  # verified once, then cached


def test_another_table_from_the_same_encoder_is_refused(meta):
    table = np.asarray(meta["class_embedding"], np.float32).copy()
    table[3] += 10 * TABLE_TOLERANCE
    with pytest.raises(FailedPreconditionError, match="is not the one model .* max difference"):
        Segmenter(runner=None, text=_Text(table, meta["encoder_id"])).class_table(10.0)


def test_another_encoder_is_refused(meta):
    table = np.asarray(meta["class_embedding"], np.float32)
    with pytest.raises(FailedPreconditionError, match="encodes with clip:"):
        Segmenter(runner=None, text=_Text(table, "clip:ViT-B-32:0000")).class_table(10.0)
