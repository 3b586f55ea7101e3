"""On-the-fly training data: synthetic CT phantoms → model-space 96³ patches with sampled points.

:class:`PhantomPatchSampler` keeps a pool of preprocessed phantoms in memory and
draws training patches from it; every ``refresh_every`` batches the oldest
``refresh_count`` cases are replaced by new ones. Everything is a function of the
training seed: phantom ``i`` of a run is ``generate(first_phantom_seed + i, config_i)``
with ``config_i`` drawn from a stream seeded by that phantom seed, and patches,
centres and points come from one ``numpy.random.Generator``. The sampler's state
(:meth:`PhantomPatchSampler.state_dict`) is the generator's state plus the phantom
seeds in the pool, so a resumed run regenerates the same pool and draws the same
batches as an uninterrupted one.

Phantom seeds 0–99 are reserved for evaluation and the demo; training phantoms start
at :data:`FIRST_TRAINING_SEED` (1000) and the sampler refuses anything lower.

Per phantom (drawn from its seed): in-plane matrix 256, 320 or 384 (the generator
scales the spacing so the field of view stays 307–512 mm; slice thickness 0.8–5 mm),
oblique grid as the generator draws it (p = 0.3), lesions forced in 85 % of cases
(a random non-empty subset of the lesion classes, one to three liver tumours when
the liver is drawn), left to the generator's own random presence otherwise (cases
without lesions teach the model not to invent them).

With ``phantom_version=2`` the phantoms are v2 (:mod:`radmesh.phantom.anatomy_v2`: all
32 classes, contrast phases, regions and thin slabs; lesions forced from all seven lesion
classes) and each case's CT is *intensity-remapped* before preprocessing
(:func:`remap_intensities`): every labelled structure is shifted by its own offset and
stretched about its own median, so the model must learn shape and context rather than
the phantoms' exact HU.

Targets are multi-label, the Universal Model's convention: an organ's target
includes the lesions it hosts (liver ⊇ liver tumours, each kidney ⊇ its tumours and
cysts, pancreas ⊇ pancreas tumour, each lung ⊇ its nodules); a lesion's target is
the lesion alone. The host of each lesion component is the organ label that
dominates its one-voxel shell.

Each patch: image (1, 96, 96, 96) float32 in [0, 1]; ``targets`` (K, 96, 96, 96)
uint8 for the class list; ``points`` (M,) int64 flat indices into the patch — half
uniform, half from structures: every lesion voxel (up to half of that share),
then label boundaries (voxels whose 6-neighbourhood holds another label) and
structure interiors. Patch centres: 40 % on a lesion voxel (when the case has one),
40 % on a voxel of a class drawn uniformly among those present (so the gall bladder
and pancreas are seen as often as the liver), 20 % uniform in the body box; then
jittered by up to ±patch/4 voxels (±24 at 96³).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from radmesh.common import vocabulary as vocab
from radmesh.common.errors import InvalidInputError, RadmeshError
from radmesh.model.preprocess import MODEL_SPACING_MM, body_box, labels_to_model_space, to_model_space
from radmesh.phantom.generator import LESION_CLASSES, LESION_CLASSES_V2, ORGAN_CLASSES, PhantomConfig, generate

log = logging.getLogger(__name__)

FIRST_TRAINING_SEED = 1000
RESERVED_SEEDS = range(0, 100)   # evaluation and demo phantoms: never trained on
# The 16 classes the phantoms contain, vocabulary order: the model's validated classes.
PHANTOM_CLASSES: tuple[int, ...] = tuple(sorted(ORGAN_CLASSES + LESION_CLASSES))
# v2 phantoms draw every vocabulary class.
V2_CLASSES: tuple[int, ...] = tuple(c.index for c in vocab.CLASSES)
# Intensity remapping (v2): per labelled structure an offset and a contrast stretch about its median;
# a lesion follows its host's offset plus a smaller one of its own, so its contrast sign is kept.
REMAP_OFFSET_HU = 20.0
REMAP_LESION_OFFSET_HU = 8.0
REMAP_SCALE = (0.85, 1.15)
# Organ targets that include another labelled structure inside them, as reference segmentations
# of real CT draw them: the liver includes its intrahepatic vessels (label 15 lies only inside
# the liver in the v2 phantoms; v1 phantoms have none).
CONTAINS: dict[int, tuple[int, ...]] = {vocab.LIVER: (vocab.HEPATIC_VESSEL,)}
PATCH = 96
IN_PLANE_SIZES = (256, 320, 384)
FORCED_LESIONS_P = 0.85
LESION_DRAW_P = 0.6
_MAX_CLASS_COORDS = 20000        # coordinates kept per class for centre sampling


def host_map(classes: tuple[int, ...]) -> dict[int, tuple[int, ...]]:
    """Lesion class → its possible host organ classes (those in ``classes``)."""
    return {c: tuple(h for h in vocab.get(c).host if h in classes) for c in classes if vocab.get(c).is_lesion}


def phantom_config(phantom_seed: int, version: int = 1) -> PhantomConfig:
    """The generator config of training phantom ``phantom_seed`` (a function of the seed and version alone)."""
    rng = np.random.default_rng([int(phantom_seed), 0x5EED])
    size = int(rng.choice(IN_PLANE_SIZES))
    lesions: tuple[int, ...] | None = None
    lesion_classes = LESION_CLASSES if version == 1 else LESION_CLASSES_V2
    if rng.random() < FORCED_LESIONS_P:
        chosen: list[int] = []
        while not chosen:
            chosen = [c for c in lesion_classes if rng.random() < LESION_DRAW_P]
        out: list[int] = []
        for c in chosen:
            n = int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2])) if c == vocab.LIVER_TUMOR else 1
            out.extend([c] * n)
        lesions = tuple(out)
    return PhantomConfig(in_plane_size=size, lesions=lesions, version=version)


def remap_intensities(ct: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """float32 CT with each labelled structure's HU moved: (v − median) · scale + median + offset.

    Background (label 0: fat, muscle, bone, air, bowel content) is left as it is; it is the
    context the labelled structures are told apart by.
    """
    present = [int(c) for c in np.unique(labels) if c]
    off = np.zeros(256, np.float32)
    scale = np.ones(256, np.float32)
    med = np.zeros(256, np.float32)
    for c in present:
        if not vocab.get(c).is_lesion:
            off[c] = rng.uniform(-REMAP_OFFSET_HU, REMAP_OFFSET_HU)
            scale[c] = rng.uniform(*REMAP_SCALE)
    for c in present:
        sample = ct[labels == c]
        med[c] = float(np.median(sample[:: max(1, sample.size // 20000)]))
        if vocab.get(c).is_lesion:
            hosts = [h for h in vocab.get(c).host if h in present] or [0]
            off[c] = float(np.mean(off[hosts])) + rng.uniform(-REMAP_LESION_OFFSET_HU, REMAP_LESION_OFFSET_HU)
            scale[c] = rng.uniform(*REMAP_SCALE)
    out = ct.astype(np.float32)
    out -= med[labels]
    out *= scale[labels]
    out += med[labels] + off[labels]
    return out


@dataclass
class Case:
    """One preprocessed phantom, cropped to its body box in model space."""

    seed: int
    image: np.ndarray                 # (Z, Y, X) float32 in [0, 1]
    labels: np.ndarray                # (Z, Y, X) uint8, the label map (lesions over organs)
    organs: np.ndarray                # (Z, Y, X) uint8, lesion voxels replaced by their host organ
    class_coords: dict[int, np.ndarray]   # class → (n, 3) int32 voxel coordinates (subsampled)


def organ_labels(labels: np.ndarray, classes: tuple[int, ...]) -> np.ndarray:
    """The label map with every lesion voxel replaced by its host organ (0 where none is found).

    The host of a lesion component (26-connected) is the candidate host label that
    dominates its one-voxel shell.
    """
    out = labels.copy()
    hosts = host_map(classes)
    struct = ndimage.generate_binary_structure(3, 3)
    for les, cands in hosts.items():
        mask = labels == les
        if not mask.any():
            continue
        out[mask] = 0
        if not cands:
            continue
        comps, _ = ndimage.label(mask, structure=struct)
        for j, box in enumerate(ndimage.find_objects(comps), start=1):
            if box is None:
                continue
            grown = tuple(slice(max(0, s.start - 2), s.stop + 2) for s in box)
            comp = comps[grown] == j
            shell = ndimage.binary_dilation(comp, structure=struct) & ~comp
            votes = [int(np.count_nonzero(labels[grown][shell] == h)) for h in cands]
            if max(votes) > 0:
                out[grown][comp] = cands[int(np.argmax(votes))]
    return out


def multilabel_targets(labels: np.ndarray, organs: np.ndarray, classes: tuple[int, ...]) -> np.ndarray:
    """(K, ...) uint8 targets: lesion classes from ``labels``, organ classes from ``organs``
    (:func:`organ_labels`, so an organ includes the lesions it hosts, and the structures of
    :data:`CONTAINS` inside it)."""
    out = np.empty((len(classes),) + labels.shape, dtype=np.uint8)
    for i, c in enumerate(classes):
        src = labels if vocab.get(c).is_lesion else organs
        np.equal(src, c, out=out[i], casting="unsafe")
        for inner in CONTAINS.get(c, ()):
            out[i] |= organs == inner
    return out


def prepare_case(phantom_seed: int, classes: tuple[int, ...] = PHANTOM_CLASSES,
                 config: PhantomConfig | None = None, spacing_mm: float = MODEL_SPACING_MM,
                 version: int = 1) -> Case:
    """Generate training phantom ``phantom_seed`` and move it to model space (body box crop).

    ``version`` 2: v2 phantoms, intensity-remapped (:func:`remap_intensities`) before preprocessing.
    """
    if int(phantom_seed) < FIRST_TRAINING_SEED:
        raise InvalidInputError(f"training phantom seeds start at {FIRST_TRAINING_SEED} "
                                f"(0–99 are reserved for evaluation), got {phantom_seed}")
    cfg = config or phantom_config(phantom_seed, version)
    try:
        ph = generate(int(phantom_seed), cfg)
    except RadmeshError as e:  # forced lesions that could not be placed: let the generator decide
        log.info("phantom %d: %s; retrying with random lesions", phantom_seed, e)
        ph = generate(int(phantom_seed), PhantomConfig(in_plane_size=cfg.in_plane_size, version=cfg.version))
    if cfg.version == 2:
        remapped = remap_intensities(ph.ct.array, ph.labels.array, np.random.default_rng([int(phantom_seed), 0x1A7E]))
        ph.ct = type(ph.ct)(remapped, ph.ct.geometry)
    img = to_model_space(ph.ct, spacing_mm)
    lab = labels_to_model_space(ph.labels, img.geometry).array.astype(np.uint8)
    box = body_box(img.array)
    image = np.ascontiguousarray(img.array[box], dtype=np.float32)
    labels = np.ascontiguousarray(lab[box])
    organs = organ_labels(labels, classes)
    rng = np.random.default_rng([int(phantom_seed), 0xC0])
    coords = {}
    for c in classes:
        idx = np.flatnonzero(labels == c)
        if idx.size == 0:
            continue
        if idx.size > _MAX_CLASS_COORDS:
            idx = np.sort(rng.choice(idx, _MAX_CLASS_COORDS, replace=False))
        coords[c] = np.stack(np.unravel_index(idx, labels.shape), axis=1).astype(np.int32)
    return Case(int(phantom_seed), image, labels, organs, coords)


def _boundary(labels: np.ndarray) -> np.ndarray:
    """Voxels with a 6-neighbour of another label (both sides of every boundary)."""
    b = np.zeros(labels.shape, dtype=bool)
    for ax in range(3):
        a = np.moveaxis(labels, ax, 0)
        d = a[1:] != a[:-1]
        bb = np.moveaxis(b, ax, 0)
        bb[1:] |= d
        bb[:-1] |= d
    return b


def sample_points(labels: np.ndarray, num_points: int, rng: np.random.Generator,
                  lesion_classes: tuple[int, ...]) -> np.ndarray:
    """(M,) int64 flat indices: half uniform, half lesions → boundaries → interiors."""
    n = labels.size
    half = num_points // 2
    uniform = rng.integers(0, n, size=num_points - half)
    flat = labels.ravel()
    fg = flat != 0
    if not fg.any():
        return np.concatenate([uniform, rng.integers(0, n, size=half)]).astype(np.int64)
    lesion = np.flatnonzero(np.isin(flat, lesion_classes)) if lesion_classes else np.empty(0, np.int64)
    parts = []
    budget = half
    if lesion.size:
        take = min(lesion.size, half // 2)
        parts.append(lesion if lesion.size <= take else rng.choice(lesion, take, replace=False))
        budget -= parts[-1].size
    boundary = np.flatnonzero(_boundary(labels).ravel())
    interior = np.flatnonzero(fg)
    nb = budget // 2 if boundary.size else 0
    if nb:
        parts.append(rng.choice(boundary, nb, replace=boundary.size < nb))
    ni = budget - nb
    parts.append(rng.choice(interior, ni, replace=interior.size < ni))
    return np.concatenate([uniform] + parts).astype(np.int64)


class PhantomPatchSampler:
    """A seeded pool of preprocessed phantoms and a patch/point sampler over it.

    ``next_batch(batch_size)`` → dict(image (B,1,P,P,P) float32, targets (B,K,P,P,P) uint8,
    points (B,M) int64, point_targets (B,K,M) float32, seeds list). Call it once per
    training step: the pool is refreshed every ``refresh_every`` calls.
    """

    def __init__(self, seed: int, classes: tuple[int, ...] = PHANTOM_CLASSES, pool_size: int = 12,
                 refresh_every: int = 50, refresh_count: int = 3, num_points: int = 65536,
                 patch: int = PATCH, first_phantom_seed: int = FIRST_TRAINING_SEED,
                 phantom_configs: dict[int, PhantomConfig] | None = None, progress: bool = False,
                 phantom_version: int = 1):
        if first_phantom_seed < FIRST_TRAINING_SEED:
            raise InvalidInputError(f"training phantom seeds start at {FIRST_TRAINING_SEED}, got {first_phantom_seed}")
        if pool_size < 1 or refresh_count < 0 or refresh_count > pool_size or num_points < 2 or patch < 16:
            raise InvalidInputError("bad sampler settings")
        self.seed = int(seed)
        self.classes = tuple(int(c) for c in classes)
        self.lesion_classes = tuple(c for c in self.classes if vocab.get(c).is_lesion)
        self.pool_size, self.refresh_every, self.refresh_count = pool_size, refresh_every, refresh_count
        self.num_points, self.patch = num_points, patch
        self.first_phantom_seed = first_phantom_seed
        self.phantom_configs = phantom_configs or {}
        self.progress = progress
        self.phantom_version = int(phantom_version)
        self.rng = np.random.default_rng([self.seed, 0xDA7A])
        self.calls = 0
        self.next_phantom = first_phantom_seed
        self.pool: list[Case] = []
        self.used_seeds: list[int] = []

    # ---- pool -------------------------------------------------------------------
    def _make(self, phantom_seed: int) -> Case:
        return prepare_case(phantom_seed, self.classes, self.phantom_configs.get(phantom_seed),
                            version=self.phantom_version)

    def _fill(self) -> None:
        while len(self.pool) < self.pool_size:
            s = self.next_phantom
            self.next_phantom += 1
            self.pool.append(self._make(s))
            self.used_seeds.append(s)

    def _maybe_refresh(self) -> None:
        if not self.pool:
            self._fill()
        elif self.refresh_every > 0 and self.calls > 0 and self.calls % self.refresh_every == 0:
            del self.pool[:self.refresh_count]
            self._fill()

    def state_dict(self) -> dict:
        return dict(rng=self.rng.bit_generator.state, calls=self.calls, next_phantom=self.next_phantom,
                    pool_seeds=[c.seed for c in self.pool], used_seeds=list(self.used_seeds))

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.calls = int(state["calls"])
        self.next_phantom = int(state["next_phantom"])
        self.used_seeds = [int(s) for s in state["used_seeds"]]
        have = {c.seed: c for c in self.pool}
        self.pool = [have.get(int(s)) or self._make(int(s)) for s in state["pool_seeds"]]

    # ---- patches ----------------------------------------------------------------
    def _centre(self, case: Case) -> np.ndarray:
        shape = np.array(case.image.shape)
        u = self.rng.random()
        present_les = [c for c in self.lesion_classes if c in case.class_coords]
        present = list(case.class_coords)
        if u < 0.4 and present_les:
            c = present_les[int(self.rng.integers(len(present_les)))]
        elif u < 0.8 and present:
            c = present[int(self.rng.integers(len(present)))]
        else:
            c = None
        if c is None:
            centre = self.rng.integers(0, shape)
        else:
            pts = case.class_coords[c]
            centre = pts[int(self.rng.integers(len(pts)))].astype(np.int64)
        centre = centre + self.rng.integers(-self.patch // 4, self.patch // 4 + 1, size=3)
        return centre

    def _crop(self, case: Case, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = self.patch
        shape = np.array(case.image.shape)
        start = np.clip(centre - p // 2, 0, np.maximum(shape - p, 0))
        src = tuple(slice(int(s), int(min(s + p, n))) for s, n in zip(start, shape))
        dst = tuple(slice(0, sl.stop - sl.start) for sl in src)
        img = np.zeros((p, p, p), np.float32)
        lab = np.zeros((p, p, p), np.uint8)
        org = np.zeros((p, p, p), np.uint8)
        img[dst] = case.image[src]
        lab[dst] = case.labels[src]
        org[dst] = case.organs[src]
        return img, multilabel_targets(lab, org, self.classes), lab

    def sample(self) -> dict:
        """One patch: image (1,P,P,P), targets (K,P,P,P) uint8, points (M,), point_targets (K,M)."""
        case = self.pool[int(self.rng.integers(len(self.pool)))]
        img, tgt, lab = self._crop(case, self._centre(case))
        pts = sample_points(lab, self.num_points, self.rng, self.lesion_classes)
        pt = tgt.reshape(len(self.classes), -1)[:, pts].astype(np.float32)
        return dict(image=img[None], targets=tgt, points=pts, point_targets=pt, seed=case.seed)

    def next_batch(self, batch_size: int) -> dict:
        self._maybe_refresh()
        self.calls += 1
        items = [self.sample() for _ in range(batch_size)]
        return dict(image=np.stack([i["image"] for i in items]),
                    targets=np.stack([i["targets"] for i in items]),
                    points=np.stack([i["points"] for i in items]),
                    point_targets=np.stack([i["point_targets"] for i in items]),
                    seeds=[i["seed"] for i in items])
