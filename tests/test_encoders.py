"""Text encoders: MiniLM against sentence-transformers, CLIP through real weight files, tables."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from radmesh.common import vocabulary as V  # noqa: E402
from radmesh.common.errors import FailedPreconditionError, InvalidInputError  # noqa: E402
from radmesh.text import encoders as E  # noqa: E402


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module", autouse=True)
def no_network():
    """Any attempt to open a non-loopback socket while these tests load models fails the test."""
    attempts = []
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if self.family in (socket.AF_INET, socket.AF_INET6) and host not in ("127.0.0.1", "::1", "localhost"):
            attempts.append(address)
            raise OSError(f"test_encoders: network access to {address!r} is not allowed")
        return real_connect(self, address)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", guarded)
        mp.delenv(E.CLIP_WEIGHTS_ENV, raising=False)
        mp.delenv(E.TABLE_ENV, raising=False)
        yield attempts
    assert not attempts, f"encoders tried to reach the network: {attempts}"


@pytest.fixture(scope="module")
def minilm():
    return E.get_encoder("minilm")


# ------------------------------------------------------------------------------------- MiniLM


def test_minilm_shape_norm_and_id(minilm):
    assert isinstance(minilm, E.TextEncoder)
    assert minilm.backend == "minilm" and minilm.dimension == 384
    x = minilm.encode(["renal mass", "liver", "segment the pancreatic tumor and measure it"])
    assert x.shape == (3, 384) and x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    digest = E.file_sha256(E.minilm_dir() / "model.safetensors")
    assert minilm.encoder_id == f"minilm:all-MiniLM-L6-v2:{digest[:16]}"


def test_minilm_reproduces_sentence_transformers(minilm):
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(E.minilm_dir()), device="cpu", local_files_only=True)
    texts = ["renal mass", "Kidney Tumor", "A computerized tomography of a Spleen",
             "segment the pancreatic tumor and measure it", "a " * 499]  # the last one is truncated at 256 tokens
    ours = minilm.encode(texts)
    ref = model.encode(texts, batch_size=64, convert_to_numpy=True)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_minilm_semantics(minilm):
    renal, kidney, spleen = minilm.encode(["renal mass", "kidney tumor", "spleen"])
    assert cos(renal, kidney) > cos(renal, spleen) + 0.1


def test_batching_equals_one_by_one(minilm):
    texts = [f"{c.name} {w}" for c in V.CLASSES for w in ("lesion", "segmentation")][:70]  # crosses a batch of 64
    together = minilm.encode(texts)
    alone = np.concatenate([minilm.encode([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_text_validation(minilm):
    assert minilm.encode([]).shape == (0, 384) and minilm.encode([]).dtype == np.float32
    assert minilm.encode(["x" * E.MAX_TEXT_CHARS]).shape == (1, 384)
    with pytest.raises(InvalidInputError, match="text 1 is empty"):
        minilm.encode(["liver", ""])
    with pytest.raises(InvalidInputError, match="empty"):
        minilm.encode(["   "])
    with pytest.raises(InvalidInputError, match="1001 characters"):
        minilm.encode(["x" * 1001])
    with pytest.raises(InvalidInputError, match="not a string"):
        minilm.encode(["liver", 3])
    with pytest.raises(InvalidInputError, match="single string"):
        minilm.encode("liver")


def test_encode_classes_uses_template_and_caches(minilm, monkeypatch):
    x = minilm.encode_classes([26, 1, 26])
    assert x.shape == (3, 384) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], x[2])
    prompts = ["A computerized tomography of a Kidney Tumor", "A computerized tomography of a Spleen"]
    np.testing.assert_allclose(x[:2], minilm.encode(prompts), atol=1e-5)

    calls = []
    real = minilm._forward
    monkeypatch.setattr(minilm, "_forward", lambda texts: calls.append(list(texts)) or real(texts))
    y = minilm.encode_classes([26, 1, 26])
    assert calls == [] and np.array_equal(x, y)  # cache hit: no forward pass, the same values
    y[:] = 0  # callers get their own copy; the cache is not poisoned
    np.testing.assert_array_equal(minilm.encode_classes([26, 1, 26]), x)
    minilm.encode_classes([1, 2])
    assert calls == [["A computerized tomography of a Right Kidney"]]  # only the new class is encoded
    assert minilm.encode_classes([]).shape == (0, 384)


@pytest.mark.parametrize("bad", [0, 33, -1, "liver", 2.5, None])
def test_class_index_outside_vocabulary(minilm, bad):
    with pytest.raises(InvalidInputError, match="vocabulary|integer"):
        minilm.encode_classes([1, bad])


def test_get_encoder_caches_and_validates(minilm):
    assert E.get_encoder() is minilm and E.get_encoder("") is minilm
    assert E.get_encoder("minilm", clip_weights=None, table=None) is minilm
    with pytest.raises(InvalidInputError, match="minilm, clip, table"):
        E.get_encoder("bert")
    with pytest.raises(InvalidInputError, match="unknown encoder option"):
        E.get_encoder("minilm", weights="x")


def test_class_table_and_its_hash(minilm):
    table = E.encode_class_table("minilm")
    assert table.shape == (32, 384) and table.dtype == np.float32
    np.testing.assert_allclose(table[V.PANCREAS_TUMOR - 1], minilm.encode_classes([V.PANCREAS_TUMOR])[0])
    digest = E.table_sha256(table)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert digest == hashlib.sha256(table.astype("<f4").tobytes()).hexdigest()
    assert E.table_sha256(table.astype(np.float64)) == digest
    assert E.table_sha256(table.astype(">f4")) == digest  # byte order does not change the hash
    assert E.table_sha256(table + np.float32(1e-3)) != digest


def test_concurrent_calls_agree(minilm):
    texts = [[f"{c.name} number {i}" for c in V.CLASSES[:10]] for i in range(6)]
    expected = [minilm.encode(t) for t in texts]
    results, errors = [None] * len(texts), []

    def work(i):
        try:
            results[i] = minilm.encode(texts[i])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for got, want in zip(results, expected):
        np.testing.assert_allclose(got, want, atol=1e-5)


# --------------------------------------------------------------------------------------- CLIP


def _random_clip(seed: int):
    import open_clip

    torch.manual_seed(seed)
    return open_clip.create_model("ViT-B-32", pretrained=None).eval()


def _text_state(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("visual.")}


def _reference(model, texts) -> np.ndarray:
    import open_clip

    tokens = open_clip.get_tokenizer("ViT-B-32")(texts)
    with torch.inference_mode():
        return torch.nn.functional.normalize(model.encode_text(tokens), dim=-1).numpy()


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory):
    """Two randomly initialised ViT-B-32 text towers saved as an operator would supply them."""
    d = tmp_path_factory.mktemp("clip")
    a = _random_clip(0)
    text_only = d / "text_tower.pt"
    torch.save(_text_state(a), text_only)

    b = _random_clip(1).half()  # like OpenAI's fp16 weights, as a DataParallel training checkpoint
    full = d / "full_module.pt"
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in b.state_dict().items()}}, full)
    b = b.float()
    return {"dir": d, "text_only": text_only, "model_a": a, "full": full, "model_b": b}


TEXTS = ["renal mass", "A computerized tomography of a Liver", "segment the pancreatic tumor"]


def test_clip_text_only_state_dict(clip_files):
    enc = E.get_encoder("clip", clip_weights=str(clip_files["text_only"]))
    assert isinstance(enc, E.TextEncoder) and enc.backend == "clip" and enc.dimension == 512
    assert enc.encoder_id == f"clip:ViT-B-32:{E.file_sha256(clip_files['text_only'])[:16]}"
    x = enc.encode(TEXTS)
    assert x.shape == (3, 512) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(x, _reference(clip_files["model_a"], TEXTS), atol=1e-5)
    np.testing.assert_array_equal(x, enc.encode(TEXTS))  # deterministic
    np.testing.assert_allclose(x, np.concatenate([enc.encode([t]) for t in TEXTS]), atol=1e-5)
    np.testing.assert_allclose(enc.encode_classes([6])[0], x[1], atol=1e-6)  # the Universal Model's template
    assert E.get_encoder("clip", clip_weights=clip_files["text_only"]) is enc
    assert E.encode_class_table("clip", clip_weights=clip_files["text_only"]).shape == (32, 512)


def test_clip_full_checkpoint_with_module_prefix(clip_files):
    a = E.get_encoder("clip", clip_weights=clip_files["text_only"])
    b = E.get_encoder("clip", clip_weights=clip_files["full"])
    assert b.dimension == 512 and b is not a
    xb = b.encode(TEXTS)
    np.testing.assert_allclose(xb, _reference(clip_files["model_b"], TEXTS), atol=1e-5)
    assert b.encoder_id != a.encoder_id
    assert np.abs(xb - a.encode(TEXTS)).max() > 0.1  # different weights, different embeddings


def test_clip_from_environment(clip_files, monkeypatch):
    monkeypatch.setenv(E.CLIP_WEIGHTS_ENV, str(clip_files["text_only"]))
    assert E.get_encoder("clip") is E.get_encoder("clip", clip_weights=clip_files["text_only"])
    monkeypatch.delenv(E.CLIP_WEIGHTS_ENV)
    with pytest.raises(FailedPreconditionError, match="RADMESH_CLIP_WEIGHTS"):
        E.get_encoder("clip")


@pytest.mark.filterwarnings("ignore:.*torch.jit.*deprecated:FutureWarning")
def test_clip_openai_torchscript_layout(clip_files):
    """OpenAI's original ViT-B-32.pt is a TorchScript archive with fp16 weights and int buffers."""
    src = clip_files["model_a"]

    class Scripted(torch.nn.Module):
        def __init__(self):
            super().__init__()
            for name in ("token_embedding", "positional_embedding", "transformer", "ln_final",
                         "text_projection", "logit_scale"):
                setattr(self, name, getattr(src, name))
            self.visual = torch.nn.Linear(2, 2)
            self.register_buffer("input_resolution", torch.tensor(224))

        def forward(self, x):
            return self.token_embedding(x).sum() + self.visual.weight.sum()

    path = clip_files["dir"] / "ViT-B-32-openai-like.pt"
    scripted = torch.jit.trace(Scripted().half(), torch.zeros(1, 77, dtype=torch.long))
    scripted.save(str(path))
    src_half = E.ClipEncoder(path)
    ref = _random_clip(0)
    ref.load_state_dict({k: v.half().float() for k, v in ref.state_dict().items()})
    np.testing.assert_allclose(src_half.encode(TEXTS), _reference(ref, TEXTS), atol=1e-5)


def test_clip_bad_files_are_clear_errors(clip_files):
    d = clip_files["dir"]
    missing = d / "nope.pt"
    with pytest.raises(FailedPreconditionError, match="nope.pt"):
        E.get_encoder("clip", clip_weights=missing)

    corrupt = d / "corrupt.pt"
    corrupt.write_bytes(clip_files["text_only"].read_bytes()[:100_000])
    with pytest.raises(FailedPreconditionError, match="not a readable torch checkpoint"):
        E.get_encoder("clip", clip_weights=corrupt)

    state = _text_state(clip_files["model_a"])
    lacking = dict(state)
    del lacking["ln_final.weight"], lacking["transformer.resblocks.11.mlp.c_proj.bias"]
    torch.save(lacking, d / "lacking.pt")
    with pytest.raises(FailedPreconditionError,
                       match=r"missing text keys \(2\): ln_final.weight, transformer.resblocks.11.mlp.c_proj.bias"):
        E.ClipEncoder(d / "lacking.pt")

    extra = dict(state)
    extra["transformer.resblocks.12.ln_1.weight"] = torch.ones(512)  # a 13-layer tower is not ViT-B-32
    torch.save(extra, d / "extra.pt")
    with pytest.raises(FailedPreconditionError, match=r"unexpected keys \(1\): transformer.resblocks.12.ln_1.weight"):
        E.ClipEncoder(d / "extra.pt")

    wrong = dict(state)
    wrong["text_projection"] = torch.zeros(512, 768)  # ViT-L-14's projection width
    torch.save(wrong, d / "wrong.pt")
    with pytest.raises(FailedPreconditionError, match=r"text_projection \(512, 768\) \(expected \(512, 512\)\)"):
        E.ClipEncoder(d / "wrong.pt")

    torch.save(torch.zeros(3), d / "tensor.pt")
    with pytest.raises(FailedPreconditionError, match="not a state_dict"):
        E.ClipEncoder(d / "tensor.pt")

    no_logit_scale = {k: v for k, v in state.items() if k != "logit_scale"}  # optional
    torch.save(no_logit_scale, d / "no_scale.pt")
    assert E.ClipEncoder(d / "no_scale.pt").encode(["liver"]).shape == (1, 512)


# -------------------------------------------------------------------------------------- table


@pytest.fixture(scope="module")
def table_file(tmp_path_factory):
    """A 32×512 float16 table like the Universal Model's txt_encoding.pth."""
    torch.manual_seed(5)
    table = (torch.randn(32, 512) * 0.3).half()
    path = tmp_path_factory.mktemp("table") / "txt_encoding.pth"
    torch.save(table, path)
    return path, table.float().numpy()


def test_table_rows_as_stored(table_file):
    path, rows = table_file
    enc = E.get_encoder("table", table=path)
    assert isinstance(enc, E.TextEncoder)
    assert enc.backend == "table" and enc.dimension == 512 and enc.table_key is None
    assert enc.encoder_id == f"table:32x512:{E.file_sha256(path)[:16]}"
    x = enc.encode_classes([1, 32, 5])
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, rows[[0, 31, 4]])  # not re-normalised
    assert not np.allclose(np.linalg.norm(x, axis=1), 1.0)
    full = E.encode_class_table("table", table=str(path))
    np.testing.assert_array_equal(full, rows)
    assert E.table_sha256(full) == hashlib.sha256(rows.astype("<f4").tobytes()).hexdigest()
    assert enc.encode([]).shape == (0, 512)
    with pytest.raises(InvalidInputError, match="the table backend embeds vocabulary classes only"):
        enc.encode(["liver"])
    with pytest.raises(InvalidInputError, match="vocabulary"):
        enc.encode_classes([33])


def test_table_layouts(tmp_path, table_file):
    path, rows = table_file
    t = torch.from_numpy(rows).half()
    torch.save({"txt_encoding": t}, tmp_path / "one.pth")
    enc = E.TableEncoder(tmp_path / "one.pth")
    assert enc.table_key == "txt_encoding"
    np.testing.assert_array_equal(enc.encode_classes([7]), rows[[6]])

    torch.save({"a": t, "b": t * 2, "note": "x"}, tmp_path / "two.pth")
    with pytest.raises(FailedPreconditionError, match=r"2 tensors \(a, b\).*table_key"):
        E.TableEncoder(tmp_path / "two.pth")
    enc = E.get_encoder("table", table=tmp_path / "two.pth", table_key="b")
    np.testing.assert_array_equal(enc.encode_classes([2]), rows[[1]] * 2)
    with pytest.raises(FailedPreconditionError, match="no tensor 'c'"):
        E.TableEncoder(tmp_path / "two.pth", table_key="c")

    torch.save(t[:10], tmp_path / "short.pth")
    short = E.TableEncoder(tmp_path / "short.pth")
    assert short.encoder_id.startswith("table:10x512:")
    np.testing.assert_array_equal(short.encode_classes([10, 3]), rows[[9, 2]])
    with pytest.raises(FailedPreconditionError, match=r"10 rows; no row for class 11 \(Pancreas\)"):
        short.encode_classes([3, 11])

    for name, bad, msg in (("long", torch.zeros(33, 512), "33 rows"),
                           ("flat", torch.zeros(512), "shape"),
                           ("ints", torch.zeros(32, 512, dtype=torch.int64), "dtype"),
                           ("nan", torch.full((32, 512), float("nan")), "NaN")):
        torch.save(bad, tmp_path / f"{name}.pth")
        with pytest.raises(FailedPreconditionError, match=msg):
            E.TableEncoder(tmp_path / f"{name}.pth")

    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(FailedPreconditionError, match="junk.pth.*not a readable torch file"):
        E.TableEncoder(tmp_path / "junk.pth")


def test_table_configuration(table_file, tmp_path, monkeypatch):
    path, _ = table_file
    with pytest.raises(FailedPreconditionError, match="RADMESH_CLASS_TABLE"):
        E.get_encoder("table")
    with pytest.raises(FailedPreconditionError, match="missing.pth"):
        E.get_encoder("table", table=tmp_path / "missing.pth")
    monkeypatch.setenv(E.TABLE_ENV, str(path))
    assert E.get_encoder("table") is E.get_encoder("table", table=path)
