"""Training loop, checkpoints/resume, determinism, the weights file and evaluation (tiny configs)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from radmesh.common import vocabulary as vocab
from radmesh.common.errors import FailedPreconditionError, InvalidInputError
from radmesh.model import data, train
from radmesh.phantom.generator import PhantomConfig

TINY = dict(backbone_kwargs={"width": 8}, patch=16, num_points=512, batch_size=1, progress=False, log_every=1)
SMALL_PHANTOM = PhantomConfig(in_plane_size=48, spacing_xyz_mm=(3.0, 3.0, 4.0), slices=24, oblique=False,
                              lesions=(vocab.LIVER_TUMOR,), noise=True, blur=True)


def _sampler(seed: int) -> data.PhantomPatchSampler:
    """A real sampler over two small phantoms, refreshed every other step."""
    configs = {s: SMALL_PHANTOM for s in range(1000, 1010)}
    return data.PhantomPatchSampler(seed, pool_size=2, refresh_every=2, refresh_count=1, num_points=512,
                                    patch=16, phantom_configs=configs)


class _FixedBatch:
    """The same batch every step (a sphere of liver in a cube): the loss must go down."""

    def __init__(self) -> None:
        p, k = 16, len(data.PHANTOM_CLASSES)
        z, y, x = np.mgrid[:p, :p, :p]
        ball = (z - 8) ** 2 + (y - 7) ** 2 + (x - 9) ** 2 < 20
        img = np.where(ball, 0.7, 0.3).astype(np.float32)
        tgt = np.zeros((k, p, p, p), np.uint8)
        tgt[data.PHANTOM_CLASSES.index(vocab.LIVER)] = ball
        rng = np.random.default_rng(0)
        pts = np.concatenate([rng.integers(0, p ** 3, 256), rng.choice(np.flatnonzero(ball), 256)])
        self.batch = dict(image=img[None, None], targets=tgt[None], points=pts[None].astype(np.int64),
                          point_targets=tgt.reshape(k, -1)[:, pts][None].astype(np.float32), seeds=[1000])

    def next_batch(self, batch_size: int) -> dict:
        return self.batch

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def _state(path: Path) -> dict:
    return torch.load(path / train.CHECKPOINT_NAME, map_location="cpu", weights_only=False)["model"]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_loss_finite_and_decreasing(tmp_path):
    res = train.train(tmp_path / "fixed", steps=10, seed=3, lr=1e-2, sampler=_FixedBatch(), **TINY)
    log = [__import__("json").loads(line) for line in (tmp_path / "fixed" / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log]
    assert len(losses) == 10 and all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-3:]) < losses[0]
    assert math.isfinite(res["final_loss"]) and res["weights"]


def test_point_loss_and_schedule():
    t = torch.zeros(1, 2, 8)
    t[0, 0, :4] = 1
    good, _ = train.point_loss(torch.where(t > 0, 10.0, -10.0), t)
    bad, _ = train.point_loss(torch.where(t > 0, -10.0, 10.0), t)
    assert float(good) < 0.01 < float(bad)
    assert train.lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert train.lr_factor(10, 100, 10) == pytest.approx(1.0)
    assert train.lr_factor(100, 100, 10) == pytest.approx(0.01)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An interrupted-and-resumed run and two uninterrupted ones, same seed; the real sampler."""
    root = tmp_path_factory.mktemp("runs")
    a, b, c = root / "a", root / "b", root / "c"
    first = train.train(a, steps=4, seed=5, stop_after=2, sampler=_sampler(5), **TINY)
    assert first["weights"] is None and first["steps_done"] == 2
    train.train(a, steps=4, seed=5, sampler=_sampler(5), **TINY)
    train.train(b, steps=4, seed=5, sampler=_sampler(5), **TINY)
    train.train(c, steps=4, seed=5, sampler=_sampler(5), **TINY)
    return a, b, c


def test_resume_equals_uninterrupted(runs):
    a, b, _ = runs
    assert _same(_state(a), _state(b))
    ca = torch.load(a / train.CHECKPOINT_NAME, weights_only=False)
    cb = torch.load(b / train.CHECKPOINT_NAME, weights_only=False)
    assert ca["step"] == cb["step"] == 4
    assert ca["history"] == cb["history"]
    assert ca["sampler"]["pool_seeds"] == cb["sampler"]["pool_seeds"]


def test_deterministic_by_seed(runs):
    _, b, c = runs
    assert _same(_state(b), _state(c))


def test_resume_with_other_settings_refused(runs):
    a, _, _ = runs
    with pytest.raises(FailedPreconditionError, match="other settings"):
        train.train(a, steps=4, seed=6, sampler=_sampler(6), **TINY)


def test_reschedule_on_resume(tmp_path):
    d = tmp_path / "r"
    train.train(d, steps=3, seed=2, stop_after=1, sampler=_FixedBatch(), **TINY)
    with pytest.raises(FailedPreconditionError, match="steps"):
        train.train(d, steps=2, seed=2, sampler=_FixedBatch(), **TINY)
    res = train.train(d, steps=2, seed=2, sampler=_FixedBatch(), reschedule=True, **TINY)
    assert res["steps_done"] == 2 and res["rescheduled"] == [dict(at_step=1, from_steps=3, to_steps=2)]


def test_fine_tune_starts_from_weights_and_records_them(runs, tmp_path):
    """A fresh run with init_weights starts from that file's parameters (its first step's loss is the
    source's loss on that batch, not a random model's) and records the source in the new weights."""
    from radmesh.common.fileio import file_sha256

    _, b, _ = runs
    source = b / train.WEIGHTS_NAME
    src_model, src_meta = train.load_weights(source)
    batch = _FixedBatch().batch
    with torch.no_grad():
        src_loss, _ = train.point_loss(src_model(torch.from_numpy(batch["image"]), torch.from_numpy(src_meta["class_embedding"]),
                                                 points=torch.from_numpy(batch["points"])),
                                       torch.from_numpy(batch["point_targets"]))
    res = train.train(tmp_path / "ft", steps=2, seed=9, lr=1e-3, sampler=_FixedBatch(), init_weights=source, **TINY)
    first = __import__("json").loads((tmp_path / "ft" / "train_log.jsonl").read_text().splitlines()[0])
    assert first["loss"] == pytest.approx(float(src_loss), rel=1e-5)
    assert res["init_weights"]["sha256"] == file_sha256(source)
    _, meta = train.load_weights(res["weights"])
    assert meta["training"]["init_weights"]["model_version"] == src_meta["model_version"]
    assert meta["table_sha256"] == src_meta["table_sha256"]
    # without it, the same seed starts from a random model: another first loss
    train.train(tmp_path / "fresh", steps=1, seed=9, lr=1e-3, sampler=_FixedBatch(), **TINY)
    fresh = __import__("json").loads((tmp_path / "fresh" / "train_log.jsonl").read_text().splitlines()[0])
    assert fresh["loss"] != pytest.approx(first["loss"], rel=1e-3)


def test_fine_tune_from_other_architecture_refused(runs, tmp_path):
    _, b, _ = runs
    kw = dict(TINY, backbone_kwargs={"width": 4})
    with pytest.raises(FailedPreconditionError, match="backbone_kwargs"):
        train.train(tmp_path / "ft", steps=1, seed=9, sampler=_FixedBatch(), init_weights=b / train.WEIGHTS_NAME, **kw)
    assert not (tmp_path / "ft" / train.CHECKPOINT_NAME).exists()


def test_v2_fine_tune_adds_classes_to_a_v1_model(runs, tmp_path):
    """A 16-class v1 model fine-tuned on v2 phantoms for all 32 classes: the source's parameters and its
    16 table rows are kept, the new rows are this run's encoding, and the file says what it is."""
    _, b, _ = runs
    source = b / train.WEIGHTS_NAME
    _, src = train.load_weights(source)
    v2 = PhantomConfig(in_plane_size=48, spacing_xyz_mm=(4.0, 4.0, 4.0), slices=40, version=2, region="abdomen")
    sampler = data.PhantomPatchSampler(5, data.V2_CLASSES, pool_size=1, refresh_every=0, refresh_count=0,
                                       num_points=512, patch=16, phantom_configs={1000: v2}, phantom_version=2)
    res = train.train(tmp_path / "v2", steps=2, seed=5, sampler=sampler, init_weights=source, phantom_version=2,
                      **TINY)
    _, meta = train.load_weights(res["weights"])
    assert meta["classes"] == list(data.V2_CLASSES) and meta["model_version"] == train.MODEL_VERSION_V2
    rows = [data.V2_CLASSES.index(c) for c in src["classes"]]
    assert np.array_equal(meta["class_embedding"][rows], src["class_embedding"])
    fresh, _, _ = train.class_table(data.V2_CLASSES)
    added = [i for i in range(len(data.V2_CLASSES)) if i not in rows]
    assert np.allclose(meta["class_embedding"][added], fresh[added], atol=1e-5)
    init = meta["training"]["init_weights"]
    assert init["classes_added"] == [c for c in data.V2_CLASSES if c not in src["classes"]]
    ck = torch.load(tmp_path / "v2" / train.CHECKPOINT_NAME, weights_only=False)
    assert ck["settings"]["phantom_version"] == 2
    # v2 targets: the liver includes its vessels, a lesion its own voxels only.
    lab = np.zeros((8, 8, 8), np.uint8)
    lab[:6] = vocab.LIVER
    lab[1, 1:7, 3] = vocab.HEPATIC_VESSEL
    lab[3:5, 3:5, 3:5] = vocab.LIVER_TUMOR
    classes = (vocab.LIVER, vocab.HEPATIC_VESSEL, vocab.LIVER_TUMOR)
    tg = data.multilabel_targets(lab, data.organ_labels(lab, classes), classes).astype(bool)
    assert np.array_equal(tg[0], lab > 0)  # liver ⊇ its vessels and its tumour
    assert np.array_equal(tg[1], lab == vocab.HEPATIC_VESSEL) and np.array_equal(tg[2], lab == vocab.LIVER_TUMOR)
    # Resumed elsewhere: the added rows re-encode a few float bits apart (1.9e-7 between installs), and
    # the run goes on with the checkpoint's table and sha rather than refusing; a table 1e-3 off is refused.
    from radmesh.text.encoders import table_sha256

    def resume_with(table):
        ck["class_embedding"] = torch.from_numpy(table)
        ck["settings"]["init_weights"]["table_sha256"] = table_sha256(table)
        torch.save(ck, tmp_path / "v2" / train.CHECKPOINT_NAME)
        again = data.PhantomPatchSampler(5, data.V2_CLASSES, pool_size=1, refresh_every=0, refresh_count=0,
                                         num_points=512, patch=16, phantom_configs={1000: v2}, phantom_version=2)
        return train.train(tmp_path / "v2", steps=2, seed=5, sampler=again, init_weights=source,
                           phantom_version=2, **TINY)

    elsewhere = meta["class_embedding"].copy()
    elsewhere[added] += 5e-7
    _, resumed = train.load_weights(resume_with(elsewhere)["weights"])
    assert np.array_equal(resumed["class_embedding"], elsewhere)
    assert resumed["table_sha256"] == table_sha256(elsewhere) == resumed["training"]["init_weights"]["table_sha256"]
    elsewhere[added] += 1e-3
    with pytest.raises(FailedPreconditionError, match="init_weights"):
        resume_with(elsewhere)
    # A run may add classes but not drop them.
    with pytest.raises(FailedPreconditionError, match="classes"):
        train.train(tmp_path / "drop", steps=1, seed=5, sampler=_FixedBatch(), init_weights=source,
                    classes=data.PHANTOM_CLASSES[:-1], **TINY)


def test_sampler_patches_and_reserved_seeds():
    s = _sampler(1)
    batch = s.next_batch(2)
    k = len(data.PHANTOM_CLASSES)
    assert batch["image"].shape == (2, 1, 16, 16, 16) and batch["image"].dtype == np.float32
    assert batch["targets"].shape == (2, k, 16, 16, 16)
    assert batch["points"].shape == (2, 512) and batch["points"].dtype == np.int64
    assert batch["point_targets"].shape == (2, k, 512)
    # point targets are the patch targets at the points
    flat = batch["targets"].reshape(2, k, -1)
    assert np.array_equal(np.take_along_axis(flat, batch["points"][:, None, :], 2), batch["point_targets"])
    assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0
    assert min(s.used_seeds) >= data.FIRST_TRAINING_SEED
    with pytest.raises(InvalidInputError):
        data.prepare_case(5)
    with pytest.raises(InvalidInputError):
        data.PhantomPatchSampler(0, first_phantom_seed=50)
    # organ targets include hosted lesions
    labels = np.zeros((9, 9, 9), np.uint8)
    labels[1:8, 1:8, 1:8] = vocab.LIVER
    labels[3:6, 3:6, 3:6] = vocab.LIVER_TUMOR
    organs = data.organ_labels(labels, data.PHANTOM_CLASSES)
    t = data.multilabel_targets(labels, organs, data.PHANTOM_CLASSES)
    liver, tumour = t[data.PHANTOM_CLASSES.index(vocab.LIVER)], t[data.PHANTOM_CLASSES.index(vocab.LIVER_TUMOR)]
    assert liver.sum() == 343 and tumour.sum() == 27 and (liver >= tumour).all()


def test_weights_round_trip_and_corruption(runs, tmp_path):
    _, b, _ = runs
    path = b / train.WEIGHTS_NAME
    assert path.stat().st_size <= train.MAX_WEIGHTS_BYTES
    model, meta = train.load_weights(path)
    assert meta["classes"] == list(data.PHANTOM_CLASSES)
    assert meta["class_embedding"].shape == (16, 384) and meta["class_embedding"].dtype == np.float32
    assert meta["encoder_id"].startswith("minilm:") and len(meta["table_sha256"]) == 64
    assert meta["training"]["steps"] == 4 and meta["spacing_mm"] == 1.5
    assert _same(model.state_dict(), _state(b))
    with pytest.raises(FailedPreconditionError, match="encoder"):
        train.load_weights(path, expected_encoder_id="clip:other:0")

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(FailedPreconditionError, match="corrupt"):
        train.load_weights(truncated)
    with pytest.raises(FailedPreconditionError, match="not found"):
        train.load_weights(tmp_path / "missing.pt")

    obj = torch.load(path, weights_only=True)
    obj["class_embedding"] = obj["class_embedding"] + 1
    torch.save(obj, tmp_path / "table.pt")
    with pytest.raises(FailedPreconditionError, match="table_sha256"):
        train.load_weights(tmp_path / "table.pt")

    obj = torch.load(path, weights_only=True)
    obj["backbone_kwargs"] = {"width": 16}
    torch.save(obj, tmp_path / "arch.pt")
    with pytest.raises(FailedPreconditionError, match="state_dict does not match"):
        train.load_weights(tmp_path / "arch.pt")

    torch.save({"hello": 1}, tmp_path / "other.pt")
    with pytest.raises(FailedPreconditionError, match="not a radmesh weights file"):
        train.load_weights(tmp_path / "other.pt")


SHIPPED = Path(__file__).resolve().parents[1] / "model_weights" / train.WEIGHTS_NAME


@pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped weights")
def test_evaluate_one_small_phantom_with_shipped_weights(tmp_path):
    import json

    from radmesh.model.evaluate import evaluate

    _, meta = train.load_weights(SHIPPED)
    assert SHIPPED.stat().st_size <= train.MAX_WEIGHTS_BYTES
    assert meta["classes"] == list(data.PHANTOM_CLASSES)
    cases_file = tmp_path / "cases.jsonl"
    cases_file.write_text('{"seed": "from an earlier run"}\n')
    res = evaluate(SHIPPED, seeds=[3], config=SMALL_PHANTOM, progress=False, print_table=False,
                   segmenter="reference", cases_jsonl=cases_file)
    assert len(res["cases"]) == 1 and res["organs"]
    # the per-case file holds this run only
    lines = [json.loads(line) for line in cases_file.read_text().splitlines()]
    assert len(lines) == 1 and lines[0]["seed"] == res["cases"][0]["seed"]
    assert all(0.0 <= r["mean"] <= 1.0 for r in res["organs"].values())
    assert set(res["quality_bars"]) == {"mean_organ_dice", "min_organ_dice", "lesion_sensitivity", "fp_per_case",
                                        "median_diameter_error_mm"}
