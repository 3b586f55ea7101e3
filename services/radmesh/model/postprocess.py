"""Per-class probabilities → one label map: the Universal Model's post-processing, rule by rule.

The model is multi-label (one sigmoid per class, an organ's target includes the
lesions it hosts), so its raw output is K overlapping masks. :func:`postprocess`
turns (K, Z, Y, X) probabilities on the model's grid into one uint8 label map of
vocabulary indices (0 background) with these rules, applied in this order:

1. **Threshold, inside the body.** A class claims a voxel where its probability is >
   its threshold (``class_threshold``, the weights' calibration,
   :mod:`radmesh.model.calibration`; every class it does not list ``threshold``, 0.5)
   and the voxel is inside ``body_mask`` when one is given (the
   body with the air it surrounds, :func:`radmesh.model.preprocess.body_on_grid`: the air
   around the patient looks like lung and bowel gas to a window that sees little
   else, and without this rule a sheet of outside air can be the largest "lung"
   component).
   An empty ``body_mask`` restricts nothing.
2. **Left/right pairs** (lungs, kidneys, adrenal glands, femoral heads: each pair
   only when both its sides are requested). The union of the two masks is split by
   the body's mid-sagittal plane: voxels on the patient's right of it become the
   right class, the others the left, each with the higher of the two probabilities.
   This fixes an organ predicted on the wrong side or under both names (a window's
   view of one kidney or lung rarely tells which side it is on; the body's midline
   does). The plane passes through the centroid of ``body_mask`` and is
   perpendicular to the body's in-plane long (left–right) axis, so a patient rotated
   on the table a few degrees is still split down the middle; without a body mask,
   or for a body too round to have a long axis, it is the plane x = centroid
   (of the body, else of the pair's union).
   **Lungs and air** (only with ``image`` and a non-empty ``body_mask``). The HU window
   starts at -175 HU, so to the model lung parenchyma, gas and the air around the
   patient are all the same 0; a window deep inside a lung sees nothing else and
   leaves much of it unlabelled. Before the split, the lungs' union (either side that
   was requested) gains every *air component* it overlaps: 26-connected voxels at
   the window's floor, inside the body, claimed by no other class. The lungs are the
   body's air above the diaphragm, and bowel or stomach gas is walled off from them
   by tissue. With one side requested, it gains only on its own side of the midline.
3. **Organs:** only one 26-connected component is kept (an organ is one piece): the one
   with the most confident voxels (probability > :data:`CONFIDENT`), the largest among
   equals. A look-alike the model is unsure of (bowel fluid called gall bladder) can be
   bigger than the organ, but it is not surer. For the organs in ``organ_opening_mm``
   (the weights' calibration) that component is then *opened* by a ball of the organ's
   radius, its most confident piece kept, and grown back by the radius within the
   component (for a stomach, with its lumen the thickest organ, a wide one): bowel touching the
   stomach, the pancreas or the liver through a narrow neck is one 26-connected piece
   with the organ, and the opening cuts the neck (a look-alike joined over a broad face
   stays; a part of the organ thinner than twice the radius is kept only within the
   radius of the rest).
   Then (with ``image`` and a body) an organ gains each air component that it
   *encloses*: claimed by no class, and at least :data:`ENCLOSING_FRACTION` of the
   voxels bordering it belong to that organ (a stomach's gas cap, which the model
   leaves out the same way, or a hole left in a lung).
4. **Vessels:** components of at least ``min_vessel_mm3`` are kept (vessels are
   legitimately cut into several pieces by a scan's field of view or by branching;
   specks are noise).
5. **One lesion, one class; lesions inside their host.** Lesion classes that share a host
   organ (kidney tumour and kidney cyst; liver tumour and hepatic vessel tumour) compete
   lesion by lesion, not voxel by voxel: each 26-connected component of their union takes
   the class that most of its voxels rank first (ties: the higher summed probability,
   then the class requested first). Voxel by voxel, a cyst whose rim the model half
   calls tumour would come out as a cyst and one or more small "tumours" beside it,
   each a false lesion in the report; a radiologist gives one lesion one diagnosis.
   A lesion class whose host organs (vocabulary
   ``host``) were requested keeps only voxels inside the union of those hosts'
   masks (after rules 2–4) dilated by ``host_dilation_mm`` (a tumour may bulge out
   of its organ), and only components that lie *in* the host: at least ``host_enclosure``
   (:data:`HOST_ENCLOSURE`) of the ring of voxels within :data:`ENCLOSURE_RING_MM` around
   the component must be host (the organ's mask holds its lesions, and a lung's mask the
   air around a nodule). A blob beside an organ is not its lesion: the fat next to the
   mediastinum looks like a nodule to a window that sees the lung beside it. An
   exophytic lesion more than about half outside its organ is dropped too; 0 turns
   the rule off. If no host was requested the lesions are kept as they are. If a
   lesion's hosts form a left/right pair (kidneys, lungs) and only one side was
   requested, the other side's lesions could not be told from false positives, so
   the lesions are again kept as they are (request both sides, or neither).
6. **Small or unconfident lesions:** lesion components (26-connected) smaller than
   ``min_lesion_mm3`` (default: :func:`default_min_lesion_mm3` of the class), or whose
   highest probability is below ``lesion_peak`` (a
   hysteresis threshold: a real lesion has a confident core, a false positive is
   mostly a rim of probabilities just over 0.5), are removed (applied after rule 5,
   so the part of a lesion left inside its host is what is measured). ``lesion_peak``
   comes from the weights' calibration; the default, ``threshold``, removes nothing.
   **Elongated lesions:** for the lesion classes in ``lesion_max_elongation`` (class index →
   ratio, the weights' calibration; classes it does not list get no such rule), components whose
   longest principal axis is more than that many times their shortest (:func:`elongation`) are
   removed too. A mass is roughly round; what a model mistakes for one along a vessel or an
   organ's edge is a strand or a sheet. Per class, because a model's false lesions, and how flat
   it draws the true ones (a lesion drawn only in part is flat too), differ from host to host.
7. **Overlaps.** Where a lesion and one of its host organs both claim a voxel, the
   lesion wins whatever the probabilities (the label-map convention: lesion labels
   override their host organ). Any other conflict goes to the class with the highest
   probability (ties: the class requested first).

**On the scan's grid.** The label map goes back to the CT's grid by nearest neighbour
(:func:`radmesh.model.pipeline.labels_on_ct_grid`). On thick or oblique slices that can
split a lesion's tip off into a fragment of a few voxels, which a report would count as
another lesion. :func:`absorb_lesion_fragments` gives each lesion component there smaller
than the lesion minimum (rule 6's, the same request value) to the label most of its
non-lesion neighbours carry: its host organ, or the background.

Arrays are (z, y, x) on an isotropic or anisotropic grid with ``spacing_zyx_mm``;
the x index must increase towards the patient's left (the canonical LPS grid of
:mod:`radmesh.model.preprocess`), which rule 2 relies on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
from scipy import ndimage

from radmesh.common import vocabulary as vocab
from radmesh.common.errors import InvalidInputError

THRESHOLD = 0.5
CONFIDENT = 0.9                # an organ's pieces are ranked by their voxels above this probability
# Smallest lesion kept by default, per class (a request's min_lesion_mm3 replaces both for every class):
LUNG_NODULE_MIN_MM3 = 20.0      # lung nodules: ≈ a 3.4 mm sphere; the report's Fleischner rules act on nodules < 6 mm
# Other lesions (liver, kidney, pancreas): below ≈ a 5.8 mm sphere a radiologist calls them too small to
# characterise, and here they are most of the false positives (docs/model_card.md). Not higher: a lesion
# 10 mm across can be as flat as 10 × 7 × 5 mm (192 mm³) and must survive being segmented at half its volume.
TOO_SMALL_TO_CHARACTERISE_MM3 = 100.0
MIN_VESSEL_MM3 = 100.0         # ≈ 30 voxels at 1.5 mm; a vessel piece smaller than this is a speck
ENCLOSING_FRACTION = 0.5       # share of an air pocket's border an organ must hold to enclose it
AIR_FILLED_PAIRS = ((vocab.RIGHT_LUNG, vocab.LEFT_LUNG),)
HOST_DILATION_MM = 5.0         # how far a lesion may bulge out of its host organ's mask
# A lesion lies in its organ: at least this share of the ring of voxels within ENCLOSURE_RING_MM around
# it must be host (a lung's mask holds its air). Chosen on validation phantoms (docs/model_card.md); it is
# the anatomy (a lesion lies in its organ), not one model's habit, so it applies to every model.
HOST_ENCLOSURE = 0.7
ENCLOSURE_RING_MM = 3.0
MIN_BODY_ELONGATION = 1.1      # in-plane long/short axis ratio below which the body has no usable long axis
STRUCT26 = ndimage.generate_binary_structure(3, 3)


# The valid values of the settings, defined once for the post-processing, the calibration file and the
# calibration tool.
def is_threshold(value: float) -> bool:
    """Rule 1's thresholds: probabilities in [0, 1) (at 1 no voxel could pass)."""
    return 0.0 <= value < 1.0


def is_opening_mm(value: float) -> bool:
    """Rule 3's opening radii: finite millimetres ≥ 0 (0: no opening)."""
    return math.isfinite(value) and value >= 0.0


def is_share(value: float) -> bool:
    """The lesion peak and the host enclosure: in [0, 1] (0 turns the rule off)."""
    return 0.0 <= value <= 1.0


def is_elongation(value: float) -> bool:
    """Rule 6's largest elongation of a lesion: a finite ratio of two axes, ≥ 1 (0 turns the rule off)."""
    return value == 0.0 or (math.isfinite(value) and value >= 1.0)


def postprocess(probabilities: np.ndarray, class_indices: Sequence[int],
                spacing_zyx_mm: float | Sequence[float], *, threshold: float = THRESHOLD,
                min_lesion_mm3: float | None = None, lesion_peak: float = THRESHOLD,
                min_vessel_mm3: float = MIN_VESSEL_MM3, host_dilation_mm: float = HOST_DILATION_MM,
                body_mask: np.ndarray | None = None, image: np.ndarray | None = None,
                host_enclosure: float = HOST_ENCLOSURE,
                organ_opening_mm: Mapping[int, float] | None = None,
                class_threshold: Mapping[int, float] | None = None,
                lesion_max_elongation: Mapping[int, float] | None = None) -> np.ndarray:
    """(K, Z, Y, X) probabilities in [0, 1] of ``class_indices`` (K vocabulary indices, request
    order) → (Z, Y, X) uint8 label map of vocabulary indices (see the module docstring).

    ``spacing_zyx_mm``: the voxel size (one number if isotropic); ``body_mask`` (Z, Y, X) bool,
    optional: the patient's body, for the midline that splits left/right pairs; ``image`` (Z, Y, X),
    optional: the windowed model input on the same grid (:func:`radmesh.model.preprocess.window`), for
    the air rules. ``organ_opening_mm`` (organ index → opening radius in mm for rule 3; organs it
    does not list get none), ``class_threshold`` (class index → rule 1's threshold; classes it does
    not list get ``threshold``), ``lesion_peak`` and ``lesion_max_elongation`` (lesion class index → ratio,
    rule 6) are the weights' calibration
    (:class:`radmesh.model.calibration.Calibration`); left out, none of them moves anything.
    ``probabilities`` is not modified.
    """
    classes = [int(c) for c in class_indices]
    probs = np.asarray(probabilities)
    if probs.ndim != 4 or probs.shape[0] != len(classes):
        raise InvalidInputError(f"probabilities must be (K, Z, Y, X) with K = {len(classes)} classes, "
                                f"got shape {probs.shape}")
    if len(set(classes)) != len(classes):
        raise InvalidInputError(f"class indices must be distinct, got {classes}")
    if not is_share(float(lesion_peak)):
        raise InvalidInputError(f"lesion_peak must be a probability in [0, 1], got {lesion_peak}")
    if not is_share(float(host_enclosure)):
        raise InvalidInputError(f"host_enclosure must be a share in [0, 1], got {host_enclosure}")
    for c in classes:
        vocab.get(c)
    openings = dict(organ_opening_mm or {})
    bad = {c: r for c, r in openings.items() if not is_opening_mm(float(r))}
    if bad:
        raise InvalidInputError(f"organ opening radii must be finite millimetres ≥ 0, got {bad}")
    thresholds = {c: float(threshold) for c in classes}
    thresholds.update({int(c): float(t) for c, t in (class_threshold or {}).items() if int(c) in thresholds})
    bad = {c: t for c, t in thresholds.items() if not is_threshold(t)}
    if bad:
        raise InvalidInputError(f"thresholds must be probabilities in [0, 1), got {bad}")
    elongations = {int(c): float(v) for c, v in (lesion_max_elongation or {}).items()}
    bad = {c: v for c, v in elongations.items() if not is_elongation(v)}
    if bad:
        raise InvalidInputError(f"lesion_max_elongation values must be finite ratios ≥ 1 (0: no rule), got {bad}")
    spacing = _spacing3(spacing_zyx_mm)
    voxel_mm3 = float(np.prod(spacing))
    shape = probs.shape[1:]
    if body_mask is not None and body_mask.shape != shape:
        raise InvalidInputError(f"body_mask shape {body_mask.shape} does not match the probabilities' {shape}")
    if image is not None and np.shape(image) != shape:
        raise InvalidInputError(f"image shape {np.shape(image)} does not match the probabilities' {shape}")
    has_body = body_mask is not None and bool(body_mask.any())
    # Without a body the air around the patient would count as the lungs' air.
    air = (np.asarray(image) <= 0.0) & body_mask if image is not None and has_body else None

    # 1. threshold. Masks and probabilities are kept per class; a left/right split replaces both.
    masks = {c: probs[i] > thresholds[c] for i, c in enumerate(classes)}
    if has_body:
        masks = {c: m & body_mask for c, m in masks.items()}
    prob = {c: probs[i] for i, c in enumerate(classes)}

    # 2. lungs gain the air they overlap; left/right pairs split by the body midline.
    if air is not None:
        for pair in AIR_FILLED_PAIRS:
            present = [c for c in pair if c in masks]
            if present:
                grow_lungs_into_air(masks, present, air, body_mask, spacing, pair)
    for r, l in vocab.LEFT_RIGHT_PAIRS:
        if r in masks and l in masks:
            right, left, p = split_pair(masks[r], masks[l], prob[r], prob[l], body_mask, spacing)
            masks[r], masks[l] = right, left
            prob[r] = prob[l] = p

    # 3. organs: the most confident component; 4. vessels: components above a size.
    for c in classes:
        kind = vocab.get(c).kind
        if kind is vocab.Kind.ORGAN:
            masks[c] = organ_component(masks[c], prob[c], spacing, openings.get(c, 0.0))
        elif kind is vocab.Kind.VESSEL:
            masks[c] = remove_small_components(masks[c], min_voxels=min_vessel_mm3 / voxel_mm3)
    if air is not None:
        fill_enclosed_air(masks, [c for c in classes if vocab.get(c).kind is vocab.Kind.ORGAN], air)

    # 5. one class per lesion among classes sharing a host; lesions inside their dilated host;
    # 6. small or unconfident lesions removed.
    for group in lesion_groups(classes):
        vote_lesion_class(masks, prob, group)
    for c in classes:
        if not vocab.get(c).is_lesion:
            continue
        region = host_region(c, classes)
        if region:
            host = np.zeros(shape, dtype=bool)
            for h in region:
                host |= masks[h]
            masks[c] &= dilate_mm(host, host_dilation_mm, spacing)
            if host_enclosure > 0:
                masks[c] = remove_unenclosed_components(masks[c], host, spacing, share=host_enclosure)
        smallest_mm3 = min_lesion_mm3_of(c, min_lesion_mm3)
        masks[c] = remove_small_components(masks[c], min_voxels=smallest_mm3 / voxel_mm3)
        if lesion_peak > thresholds[c]:
            masks[c] = remove_unconfident_components(masks[c], prob[c], lesion_peak)
        if elongations.get(c):
            masks[c] = remove_elongated_components(masks[c], spacing, elongations[c])

    # 7. overlaps.
    return resolve_overlaps(classes, masks, prob)


def absorb_lesion_fragments(labels: np.ndarray, voxel_mm3: float, min_lesion_mm3: float | None = None) -> np.ndarray:
    """``labels`` (a uint8 label map, modified in place and returned) with each 26-connected lesion
    component smaller than its class's minimum (``min_lesion_mm3``, None: :func:`default_min_lesion_mm3`)
    relabelled as the most common non-lesion label among the voxels touching it (ties: the lower index)."""
    lesion_labels = np.array(vocab.LESION_INDICES)
    for c in (int(v) for v in np.unique(labels) if int(v) in vocab.LESION_INDICES):
        smallest_mm3 = min_lesion_mm3_of(c, min_lesion_mm3)
        if smallest_mm3 / voxel_mm3 <= 1:
            continue
        box = _box(labels == c, pad=(1, 1, 1), shape=labels.shape)
        view = labels[box]
        comps, n = ndimage.label(view == c, structure=STRUCT26)
        sizes = np.bincount(comps.ravel(), minlength=n + 1)
        for j, sl in enumerate(ndimage.find_objects(comps), start=1):
            if sizes[j] * voxel_mm3 >= smallest_mm3:
                continue
            grown = tuple(slice(max(0, a.start - 1), a.stop + 1) for a in sl)
            piece = comps[grown] == j
            touching = view[grown][ndimage.binary_dilation(piece, STRUCT26) & ~piece]
            touching = touching[~np.isin(touching, lesion_labels)]
            view[grown][piece] = int(np.argmax(np.bincount(touching))) if touching.size else 0
    return labels


def default_min_lesion_mm3(lesion: int) -> float:
    """The smallest component of lesion class ``lesion`` kept when a request names no minimum, mm³."""
    return LUNG_NODULE_MIN_MM3 if lesion == vocab.LUNG_TUMOR else TOO_SMALL_TO_CHARACTERISE_MM3


def min_lesion_mm3_of(lesion: int, requested_mm3: float | None) -> float:
    """The smallest component of lesion class ``lesion`` kept, mm³: the request's minimum, or the class's
    default when the request names none (rule 6 and the fragments on the scan's grid use the same one)."""
    return default_min_lesion_mm3(lesion) if requested_mm3 is None else float(requested_mm3)


def host_region(lesion: int, requested: Sequence[int]) -> tuple[int, ...]:
    """The requested host organs a lesion class is confined to (rule 5); () = not confined."""
    hosts = vocab.get(lesion).host
    present = tuple(h for h in hosts if h in requested)
    if not present:
        return ()
    for h in hosts:
        other = vocab.counterpart(h)
        if other is not None and other in hosts and (h in requested) != (other in requested):
            return ()
    return present


def lesion_groups(classes: Sequence[int]) -> list[list[int]]:
    """The requested lesion classes in groups that share a host organ (transitively), request order;
    only groups of two or more (rule 5's vote)."""
    groups: list[list[int]] = []
    for c in (c for c in classes if vocab.get(c).is_lesion):
        hosts = set(vocab.get(c).host)
        joined = [g for g in groups if any(hosts & set(vocab.get(o).host) for o in g)]
        merged = [o for g in joined for o in g] + [c]
        groups = [g for g in groups if g not in joined] + [sorted(merged, key=list(classes).index)]
    return [g for g in groups if len(g) > 1]


def vote_lesion_class(masks: dict[int, np.ndarray], prob: dict[int, np.ndarray], group: Sequence[int]) -> None:
    """Rule 5's vote, in place: each 26-connected component of the union of ``group``'s masks goes
    whole to the class that most of its voxels rank first among ``group`` (ties: the higher summed
    probability over the component, then the earlier class in ``group``)."""
    union = np.zeros_like(masks[group[0]])
    for c in group:
        union |= masks[c]
    box = _box(union)
    if box is None:
        return
    comps, n = ndimage.label(union[box], structure=STRUCT26)
    stacked = np.stack([prob[c][box] for c in group])
    first = np.argmax(stacked, axis=0)
    inside = comps > 0
    votes = np.stack([np.bincount(comps[inside & (first == k)], minlength=n + 1) for k in range(len(group))])
    mass = np.stack([np.bincount(comps[inside], weights=stacked[k][inside], minlength=n + 1)
                     for k in range(len(group))])
    # A component's summed probability is below its size + 1, so it only breaks ties between vote
    # counts; argmax keeps the earlier class on a full tie.
    sizes = np.bincount(comps[inside], minlength=n + 1)
    winner = np.argmax(votes + mass / (sizes + 1.0), axis=0)
    for k, c in enumerate(group):
        m = np.zeros_like(union)
        m[box] = inside & (winner[comps] == k)
        masks[c] = m


def resolve_overlaps(classes: Sequence[int], masks: dict[int, np.ndarray],
                     prob: dict[int, np.ndarray]) -> np.ndarray:
    """Rule 7: one label per voxel; a lesion beats its host organs, otherwise the highest probability."""
    shape = next(iter(masks.values())).shape
    labels = np.zeros(shape, dtype=np.uint8)
    best = np.full(shape, -1.0, dtype=np.float32)
    lesions_of = {c: [les for les in classes if c in vocab.get(les).host] for c in classes}
    for c in classes:
        m = masks[c]
        box = _box(m)
        if box is None:
            continue
        claim = m[box].copy()
        for les in lesions_of[c]:          # a host organ yields to its lesions
            claim &= ~masks[les][box]
        p = prob[c][box]
        win = claim & (p > best[box])
        best[box][win] = p[win]
        labels[box][win] = c
    return labels


# ---- rule helpers ---------------------------------------------------------------------

def keep_components(mask: np.ndarray, keep: Callable[[np.ndarray, int, tuple[slice, ...]], np.ndarray],
                    pad: int = 0) -> np.ndarray:
    """``mask`` with only the 26-connected components that ``keep`` marks.

    ``keep(comps, n, box)`` gets the components labelled 1..n on the crop ``box`` of the
    arrays (``mask``'s bounding box grown by ``pad`` voxels) and returns (n + 1,) bools
    (index 0, the background, is ignored). ``mask`` itself comes back when all are kept.
    """
    box = _box(mask, pad=(pad, pad, pad), shape=mask.shape)
    if box is None:
        return mask
    comps, n = ndimage.label(mask[box], structure=STRUCT26)
    kept = np.array(keep(comps, n, box), dtype=bool)
    kept[0] = False
    if kept[1:].all():
        return mask
    out = np.zeros_like(mask)
    out[box] = kept[comps]
    return out


def organ_component(mask: np.ndarray, probability: np.ndarray, spacing_zyx_mm: Sequence[float] = (1.0, 1.0, 1.0),
                    opening_mm: float = 0.0) -> np.ndarray:
    """The 26-connected component of ``mask`` with the most voxels of ``probability`` >
    :data:`CONFIDENT`, the largest among equals (``mask`` itself if it has ≤ 1).

    With ``opening_mm`` > 0 that component is then opened by a ball of that radius (necks and
    parts thinner than twice the radius gone), its most confident piece is kept and grows back
    by the radius within the component: a look-alike touching the organ through a narrow neck
    (bowel against the stomach or the pancreas) is cut off. If the opening leaves nothing, the
    component is kept whole.
    """
    def most_confident(comps, n, box):
        sizes = np.bincount(comps.ravel(), minlength=n + 1)
        confident = np.bincount(comps[probability[box] > CONFIDENT], minlength=n + 1)
        sizes[0] = confident[0] = -1
        return np.arange(n + 1) == int(np.lexsort((sizes, confident))[-1])
    piece = keep_components(mask, most_confident)
    if opening_mm > 0:
        # Opened on the component's own box, not the whole mask: a fraction of the voxels.
        opened = open_mm(piece, opening_mm, spacing_zyx_mm)
        if opened.any():
            core = keep_components(opened, most_confident)
            # Growing back can reach a strand of the component that is cut off from the core: one piece again.
            piece = keep_components(dilate_mm(core, opening_mm, spacing_zyx_mm) & piece, most_confident)
    return piece


def remove_small_components(mask: np.ndarray, min_voxels: float) -> np.ndarray:
    """``mask`` without its 26-connected components of fewer than ``min_voxels`` voxels."""
    if min_voxels <= 1:
        return mask
    return keep_components(mask, lambda comps, n, box: np.bincount(comps.ravel(), minlength=n + 1) >= min_voxels)


def remove_unconfident_components(mask: np.ndarray, probability: np.ndarray, min_peak: float) -> np.ndarray:
    """``mask`` without its 26-connected components whose highest ``probability`` is below ``min_peak``."""
    def confident(comps, n, box):
        peaks = ndimage.maximum(probability[box], labels=comps, index=np.arange(1, n + 1))
        return np.concatenate([[False], np.asarray(peaks, dtype=float) >= min_peak])
    return keep_components(mask, confident)


def remove_unenclosed_components(mask: np.ndarray, host: np.ndarray, spacing_zyx_mm: Sequence[float],
                                 ring_mm: float = ENCLOSURE_RING_MM, share: float = HOST_ENCLOSURE) -> np.ndarray:
    """``mask`` without its 26-connected components whose surrounding ring (the voxels within
    ``ring_mm`` outside the component) lies less than ``share`` in ``host``."""
    r = max(int(math.ceil(ring_mm / s)) for s in spacing_zyx_mm)

    def enclosed(comps, n, box):
        out = np.zeros(n + 1, dtype=bool)
        h = host[box]
        for j, sl in enumerate(ndimage.find_objects(comps), start=1):
            grown = tuple(slice(max(0, a.start - r), a.stop + r) for a in sl)
            piece = comps[grown] == j
            ring = dilate_mm(piece, ring_mm, spacing_zyx_mm) & ~piece
            out[j] = ring.any() and float(h[grown][ring].mean()) >= share
        return out
    return keep_components(mask, enclosed, pad=r)


def elongation(points_zyx: np.ndarray, spacing_zyx_mm: Sequence[float]) -> float:
    """The ratio of the longest to the shortest principal axis of the voxels at integer (n, 3)
    ``points_zyx`` on a grid of ``spacing_zyx_mm`` (1 for a ball or a cube, about 3 for a
    cigar three times as long as it is wide).

    Each voxel counts as the cube it fills, not as its centre (its own variance, s²/12 per axis,
    is added), so a single voxel is 1 and a sheet one voxel thick has a finite ratio.
    """
    s = np.asarray(spacing_zyx_mm, dtype=float)
    pts = np.asarray(points_zyx, dtype=float) * s
    cov = np.diag(s ** 2 / 12.0)
    if len(pts) > 1:
        cov = cov + np.cov(pts, rowvar=False, bias=True)
    w = np.linalg.eigvalsh(cov)
    return float(math.sqrt(w[-1] / w[0]))


def remove_elongated_components(mask: np.ndarray, spacing_zyx_mm: Sequence[float], max_elongation: float) -> np.ndarray:
    """``mask`` without its 26-connected components whose :func:`elongation` exceeds ``max_elongation``."""
    def round_enough(comps, n, box):
        out = np.zeros(n + 1, dtype=bool)
        for j, sl in enumerate(ndimage.find_objects(comps), start=1):
            if sl is not None:
                pts = np.argwhere(comps[sl] == j)
                out[j] = elongation(pts, spacing_zyx_mm) <= max_elongation
        return out
    return keep_components(mask, round_enough)


def unclaimed(air: np.ndarray, claims: Iterable[np.ndarray]) -> np.ndarray:
    """The voxels of ``air`` in none of the ``claims`` masks (a new array)."""
    free = air.copy()
    for m in claims:
        free &= ~m
    return free


def grow_lungs_into_air(masks: dict[int, np.ndarray], present: Sequence[int], air: np.ndarray,
                        body_mask: np.ndarray, spacing_zyx_mm: Sequence[float], pair: tuple[int, int]) -> None:
    """Rule 2, first part: the requested side(s) of ``pair`` gain the air components they overlap (in place)."""
    free = unclaimed(air, [m for c, m in masks.items() if c not in present])
    union = np.zeros_like(free)
    for c in present:
        union |= masks[c]
    box = _box(free | union)
    if box is None:
        return
    comps, _ = ndimage.label(free[box], structure=STRUCT26)
    hit = np.unique(comps[union[box] & (comps > 0)])
    if hit.size == 0:
        return
    gained = np.zeros_like(free)
    gained[box] = np.isin(comps, hit)
    if len(present) == 2:
        masks[present[0]] |= gained & ~masks[present[1]]   # the split that follows decides the side
        return
    c = present[0]
    left = _left_of_midline(gained, body_mask, spacing_zyx_mm)
    masks[c] |= gained & (left if c == pair[1] else ~left)


def fill_enclosed_air(masks: dict[int, np.ndarray], organs: Sequence[int], air: np.ndarray,
                      fraction: float = ENCLOSING_FRACTION) -> None:
    """Rule 3, second part: each unclaimed air component joins the organ holding at least
    ``fraction`` of the voxels that border it (in place)."""
    free = unclaimed(air, masks.values())
    box = _box(free, pad=(1, 1, 1), shape=free.shape)
    if box is None or not organs:
        return
    comps, n = ndimage.label(free[box], structure=STRUCT26)
    owner = np.zeros(comps.shape, dtype=np.int64)       # 1 + position in ``organs``; 0 = no organ
    for i, c in enumerate(organs):
        owner[masks[c][box]] = i + 1
    # Each voxel outside the pockets that touches one takes that pocket's number: the border.
    near = ndimage.grey_dilation(comps, footprint=STRUCT26)
    border = (comps == 0) & (near > 0)
    k = len(organs) + 1
    counts = np.bincount(near[border] * k + owner[border], minlength=(n + 1) * k).reshape(n + 1, k)
    total = counts.sum(axis=1)
    best = counts[:, 1:].argmax(axis=1)
    joins = (counts[:, 1:].max(axis=1) >= fraction * total) & (total > 0)
    joins[0] = False
    for i, c in enumerate(organs):
        ids = np.flatnonzero(joins & (best == i))
        if ids.size:
            masks[c][box] |= np.isin(comps, ids)


def dilate_mm(mask: np.ndarray, radius_mm: float, spacing_zyx_mm: Sequence[float]) -> np.ndarray:
    """``mask`` dilated by an ellipsoid of ``radius_mm`` (in millimetres on this grid)."""
    return _morphology_mm(ndimage.binary_dilation, mask, radius_mm, spacing_zyx_mm)


def open_mm(mask: np.ndarray, radius_mm: float, spacing_zyx_mm: Sequence[float]) -> np.ndarray:
    """``mask`` opened (eroded, then dilated) by an ellipsoid of ``radius_mm`` (millimetres on this grid)."""
    return _morphology_mm(ndimage.binary_opening, mask, radius_mm, spacing_zyx_mm)


def _morphology_mm(operation: Callable[..., np.ndarray], mask: np.ndarray, radius_mm: float,
                   spacing_zyx_mm: Sequence[float]) -> np.ndarray:
    """``operation(mask, structure=ball)`` with the ellipsoid of ``radius_mm`` on this grid, on the
    mask's bounding box grown by the radius (``mask`` itself for a radius under one voxel)."""
    if radius_mm <= 0 or not mask.any():
        return mask
    r = [max(0, int(math.floor(radius_mm / s))) for s in spacing_zyx_mm]
    if max(r) == 0:
        return mask
    zz, yy, xx = np.ogrid[-r[0]:r[0] + 1, -r[1]:r[1] + 1, -r[2]:r[2] + 1]
    sz, sy, sx = spacing_zyx_mm
    ball = (zz * sz) ** 2 + (yy * sy) ** 2 + (xx * sx) ** 2 <= radius_mm ** 2 + 1e-9
    box = _box(mask, pad=r, shape=mask.shape)
    out = np.zeros_like(mask)
    out[box] = operation(mask[box], structure=ball)
    return out


def split_pair(right: np.ndarray, left: np.ndarray, p_right: np.ndarray, p_left: np.ndarray,
               body_mask: np.ndarray | None, spacing_zyx_mm: Sequence[float]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rule 2: (right mask, left mask, probability of either) of a left/right pair from its two predicted masks."""
    union = right | left
    p = np.maximum(p_right, p_left)
    if not union.any():
        return right, left, p
    side = _left_of_midline(union, body_mask, spacing_zyx_mm)
    return union & ~side, union & side, p


def _left_of_midline(union: np.ndarray, body_mask: np.ndarray | None,
                     spacing_zyx_mm: Sequence[float]) -> np.ndarray:
    """Bool (Z, Y, X): True on the patient's left of the body's mid-sagittal plane."""
    centre, axis = midline(body_mask, spacing_zyx_mm) if body_mask is not None and body_mask.any() else (None, None)
    if centre is None:
        centre = np.argwhere(union.any(axis=0)).mean(axis=0)   # (y, x) centroid of the pair's footprint
        axis = np.array([0.0, 1.0])
    _, sy, sx = spacing_zyx_mm
    ny, nx = union.shape[1:]
    y = (np.arange(ny) - centre[0]) * sy
    x = (np.arange(nx) - centre[1]) * sx
    signed = y[:, None] * axis[0] + x[None, :] * axis[1]     # mm along the left-pointing long axis
    return np.broadcast_to(signed[None] >= 0, union.shape)


def midline(body_mask: np.ndarray, spacing_zyx_mm: Sequence[float]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The body's mid-sagittal line in the axial plane: (centre (y, x) in voxels, unit left-right
    axis (y, x) pointing to the patient's left, in mm); (centre, x axis) for a round body."""
    pts = np.argwhere(body_mask[::2, ::2, ::2])[:, 1:].astype(np.float64) * 2.0  # (y, x) in voxels
    if len(pts) < 10:
        return None, None
    centre = pts.mean(axis=0)
    _, sy, sx = spacing_zyx_mm
    mm = (pts - centre) * np.array([sy, sx])
    evals, evecs = np.linalg.eigh(np.cov(mm.T))
    axis = evecs[:, 1]                               # the long in-plane axis
    if evals[1] < (MIN_BODY_ELONGATION ** 2) * evals[0] or abs(axis[1]) < abs(axis[0]):
        axis = np.array([0.0, 1.0])                  # round body, or long axis front-back: use x
    if axis[1] < 0:
        axis = -axis                                 # point to the patient's left (+x in LPS)
    return centre, axis


def _box(mask: np.ndarray, pad: Sequence[int] = (0, 0, 0), shape: Sequence[int] | None = None
         ) -> tuple[slice, ...] | None:
    """Bounding box of ``mask`` (None if empty), grown by ``pad`` voxels within ``shape``."""
    if not mask.any():
        return None
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        idx = np.flatnonzero(mask.any(axis=other))
        lo, hi = int(idx[0]), int(idx[-1]) + 1
        if shape is not None:
            lo, hi = max(0, lo - pad[axis]), min(shape[axis], hi + pad[axis])
        box.append(slice(lo, hi))
    return tuple(box)


def _spacing3(spacing: float | Sequence[float]) -> tuple[float, float, float]:
    if np.isscalar(spacing):
        s = (float(spacing),) * 3
    else:
        s = tuple(float(v) for v in spacing)  # type: ignore[union-attr]
    if len(s) != 3 or not all(np.isfinite(s)) or min(s) <= 0:
        raise InvalidInputError(f"spacing must be one or three positive millimetre values, got {spacing!r}")
    return s  # type: ignore[return-value]
