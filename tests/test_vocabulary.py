import pytest

from radmesh.common import vocabulary as V


def test_universal_model_order():
    assert V.NUM_CLASSES == 32
    assert [c.index for c in V.CLASSES] == list(range(1, 33))
    assert V.get(1).name == "Spleen" and V.get(11).name == "Pancreas"
    assert V.get(28).name == "Pancreas Tumor" and V.get(32).name == "Kidney Cyst"
    assert V.get(9).name == "Postcava"


def test_hosts_pairs_synonyms_subregions():
    assert V.get(V.PANCREAS_TUMOR).host == (V.PANCREAS,)
    assert set(V.get(V.KIDNEY_TUMOR).host) == {V.RIGHT_KIDNEY, V.LEFT_KIDNEY}
    assert all(V.get(i).is_lesion for i in V.LESION_INDICES) and len(V.LESION_INDICES) == 7
    for lesion in V.LESION_INDICES:
        assert V.get(lesion).host, lesion
    assert V.counterpart(V.LEFT_LUNG) == V.RIGHT_LUNG and V.counterpart(V.LIVER) is None
    assert V.by_name("IVC").index == V.POSTCAVA
    assert V.by_name("pdac").index == V.PANCREAS_TUMOR
    assert V.by_name("gallbladder").index == V.by_name("Gall Bladder").index == 4
    assert V.get(V.PANCREAS).subregions == ("head", "body", "tail")


def test_synonyms_are_unambiguous():
    seen = {}
    for c in V.CLASSES:
        for s in (c.name.lower(), *c.synonyms):
            assert s == s.lower()
            assert seen.setdefault(s, c.index) == c.index, s


@pytest.mark.parametrize("bad", [0, 33, -1, "x", None])
def test_unknown_index_is_a_clear_error(bad):
    with pytest.raises(V.UnknownClassError, match="not in the vocabulary"):
        V.get(bad)
