"""Where a lesion is: host organ, side and sub-region, by fixed geometric rules.

Every rule works in patient space (DICOM LPS millimetres: +x = patient Left,
+y = Posterior, +z = Superior) on voxel centres, so it gives the same answer for
any voxel spacing or orientation of the same anatomy. The rules are the contract
between this module and the phantom generator's ``truth.json``; change them
together.

Host organ (:func:`host_from_shell`)
    The most frequent host-class label among the voxels of a thin shell around
    the lesion (the lesion dilated by ``radius`` voxels in the 26-neighbourhood
    sense, minus the lesion). Ties go to the host listed first in the vocabulary.
    The caller widens the shell, then falls back to the nearest host centroid,
    when nothing is found.

Pancreas (:func:`pancreas_subregion`)
    The principal axis (first PCA eigenvector) of the LPS voxel centres of
    pancreas ∪ pancreas tumour, oriented towards patient left (+x). The voxels'
    projections span ``[t_min, t_max]``; the lesion centroid's projection falls in
    the first (patient-right) third → **head**, second → **body**, last → **tail**.

Kidney (:func:`kidney_pole`)
    Side: the host kidney label (2 right, 3 left). Pole: the superior–inferior
    (S) extent ``[s_min, s_max]`` of that kidney's voxels together with the kidney
    lesions (tumour and cyst) hosted by it, cut in thirds; the lesion centroid's S
    in the top third → **upper pole**, middle → **mid**, bottom → **lower pole**.

Liver (:func:`liver_lobe`)
    Cantlie's line: the plane through the gall-bladder (4) centroid and the IVC
    (9) centroid that contains the S axis. The side of the lesion centroid that
    contains patient right is the **right lobe**, the other the **left lobe**. If
    the gall bladder or IVC is not segmented (or they are nearly left–right of
    each other, so the plane would be coronal) the split is the median L
    coordinate (x) of liver ∪ liver-tumour voxels, and ``method`` says so.

Lung (:func:`lung_side`)
    The lung label around the lesion: 16 → right lung, 17 → left lung.

Other lesion classes
    The host organ's name (e.g. "colon").

Each call returns a :class:`LocationCall`; its ``margin`` is the distance of the
lesion from the nearest sub-region boundary as a fraction of the organ extent
used by the rule (``None`` where the rule has no boundary). Calls with a small
margin are the ones that can flip with a slightly different segmentation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import ndimage

from radmesh.common import vocabulary as vocab
from radmesh.common.vocabulary import Laterality

__all__ = [
    "LocationCall",
    "host_from_shell",
    "kidney_pole",
    "liver_lobe",
    "lung_side",
    "organ_location",
    "pancreas_subregion",
    "principal_axis",
]

# The Cantlie plane is used only if its normal has at least this much of a
# left-right component (|n_x| ≥ 0.25: the plane is within ~75° of sagittal).
MIN_CANTLIE_NORMAL_X = 0.25


@dataclass(frozen=True)
class LocationCall:
    """A lesion's place in words.

    location:   human text, e.g. "pancreatic tail", "right kidney, lower pole".
    subregion:  the vocabulary sub-region ("head", "upper pole", "right lobe", "left", ...) or None.
    laterality: "left", "right" or "none" (paired organs only: kidneys, lungs, adrenals, femoral heads).
    method:     which rule decided it (machine-readable, stable strings).
    margin:     distance to the nearest sub-region boundary as a fraction of the organ extent, or None.
    """

    location: str
    subregion: str | None
    laterality: str
    method: str
    margin: float | None = None


def _organ_text(index: int) -> str:
    return vocab.get(index).name.lower()


def _side(index: int) -> str:
    return vocab.get(index).laterality.value


# ---- host ---------------------------------------------------------------------

def host_from_shell(labels_crop: np.ndarray, lesion_crop: np.ndarray,
                    hosts: tuple[int, ...], radius: int = 2) -> tuple[int | None, dict[int, int]]:
    """The host class most frequent in a ``radius``-voxel shell around the lesion.

    ``labels_crop`` and ``lesion_crop`` are the same (z, y, x) crop of the label map
    and of the lesion's boolean mask; the crop should extend ``radius`` voxels past
    the lesion where the volume allows. Returns ``(host or None, {host: count})``.
    """
    if not hosts:
        return None, {}
    grown = ndimage.maximum_filter(lesion_crop.view(np.uint8) if lesion_crop.dtype == bool
                                   else lesion_crop.astype(np.uint8),
                                   size=2 * radius + 1, mode="constant", cval=0).astype(bool)
    shell = grown & ~lesion_crop.astype(bool)
    values = labels_crop[shell]
    counts = {h: int(np.count_nonzero(values == h)) for h in hosts}
    best = max(hosts, key=lambda h: (counts[h], -hosts.index(h)))
    return (best if counts[best] > 0 else None), counts


# ---- pancreas -------------------------------------------------------------------

def principal_axis(points_lps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, unit first principal axis) of (N, 3) LPS points, the axis pointing to +x (patient left)."""
    pts = np.asarray(points_lps, dtype=np.float64)
    mean = pts.mean(axis=0)
    c = pts - mean
    cov = c.T @ c / max(len(pts), 1)
    w, v = np.linalg.eigh(cov)
    axis = v[:, int(np.argmax(w))]
    # Orient towards patient left; if the axis is exactly anterior-posterior or
    # cranio-caudal, fall back to +y, then +z, so the answer is deterministic.
    for comp in (0, 1, 2):
        if abs(axis[comp]) > 1e-9:
            if axis[comp] < 0:
                axis = -axis
            break
    return mean, axis


def pancreas_subregion(lesion_centroid_lps: np.ndarray, pancreas_points_lps: np.ndarray) -> LocationCall:
    """Head/body/tail by thirds of the principal-axis extent of pancreas ∪ pancreas tumour."""
    pts = np.asarray(pancreas_points_lps, dtype=np.float64)
    if len(pts) < 2:
        return LocationCall("pancreas", None, Laterality.NONE.value, "no_pancreas_label")
    mean, axis = principal_axis(pts)
    t = (pts - mean) @ axis
    t0, t1 = float(t.min()), float(t.max())
    if t1 - t0 <= 0:
        return LocationCall("pancreas", None, Laterality.NONE.value, "degenerate_pancreas")
    f = float((np.asarray(lesion_centroid_lps, dtype=np.float64) - mean) @ axis - t0) / (t1 - t0)
    part = vocab.PANCREAS_SUBREGIONS[min(2, max(0, int(np.floor(f * 3))))]
    margin = float(min(abs(f - 1 / 3), abs(f - 2 / 3)))
    return LocationCall(f"pancreatic {part}", part, Laterality.NONE.value, "pancreas_pca_thirds", margin)


# ---- kidney ---------------------------------------------------------------------

def kidney_pole(lesion_centroid_lps: np.ndarray, kidney: int, s_range_mm: tuple[float, float]) -> LocationCall:
    """Upper pole / mid / lower pole by thirds of the host kidney's S (superior) extent."""
    side = _side(kidney)
    s0, s1 = float(s_range_mm[0]), float(s_range_mm[1])
    if not s1 > s0:
        return LocationCall(f"{side} kidney", None, side, "kidney_degenerate_extent")
    f = (float(lesion_centroid_lps[2]) - s0) / (s1 - s0)  # 0 = inferior end, 1 = superior end
    third = min(2, max(0, int(np.floor(f * 3))))
    pole = ("lower pole", "mid", "upper pole")[third]
    margin = float(min(abs(f - 1 / 3), abs(f - 2 / 3)))
    return LocationCall(f"{side} kidney, {pole}", pole, side, "kidney_s_thirds", margin)


# ---- liver ----------------------------------------------------------------------

def liver_lobe(lesion_centroid_lps: np.ndarray,
               gall_bladder_centroid_lps: np.ndarray | None,
               ivc_centroid_lps: np.ndarray | None,
               liver_x_mm: np.ndarray | Callable[[], np.ndarray | None] | None,
               liver_x_extent_mm: tuple[float, float] | None = None) -> LocationCall:
    """Right/left lobe by Cantlie's plane (gall bladder – IVC, containing S), or the liver's x median.

    ``liver_x_mm``: LPS x of liver ∪ liver-tumour voxel centres for the median
    fallback, or a zero-argument callable returning them (called only when the
    fallback is used), or None if there is no liver label. ``liver_x_extent_mm``
    (min, max) scales the margin; taken from ``liver_x_mm`` when not given.
    """
    c = np.asarray(lesion_centroid_lps, dtype=np.float64)

    def xs() -> np.ndarray | None:
        x = liver_x_mm() if callable(liver_x_mm) else liver_x_mm
        return None if x is None or len(x) == 0 else np.asarray(x, dtype=np.float64)

    def width(x: np.ndarray | None) -> float | None:
        if liver_x_extent_mm is not None:
            w = float(liver_x_extent_mm[1] - liver_x_extent_mm[0])
        elif x is not None:
            w = float(x.max() - x.min())
        else:
            return None
        return w if w > 0 else None

    missing = [name for name, p in (("gall bladder", gall_bladder_centroid_lps),
                                    ("IVC", ivc_centroid_lps)) if p is None]
    if not missing:
        gb = np.asarray(gall_bladder_centroid_lps, dtype=np.float64)
        ivc = np.asarray(ivc_centroid_lps, dtype=np.float64)
        d = (ivc - gb) * np.array([1.0, 1.0, 0.0])  # the plane contains S: only L/P matter
        n = np.array([d[1], -d[0], 0.0])  # axial-plane normal of the plane, = d × S
        norm = float(np.linalg.norm(n))
        if norm > 0 and abs(n[0]) / norm >= MIN_CANTLIE_NORMAL_X:
            n /= norm
            if n[0] < 0:
                n = -n  # +n points to patient left
            dist = float((c - gb) @ n)
            lobe = "left lobe" if dist > 0 else "right lobe"
            w = width(None if liver_x_extent_mm is not None or callable(liver_x_mm) else xs())
            return LocationCall(f"liver, {lobe}", lobe, Laterality.NONE.value, "cantlie_plane",
                                abs(dist) / w if w else None)
        reason = "gall bladder and IVC are side by side"
    else:
        reason = " and ".join(missing) + (" is" if len(missing) == 1 else " are") + " not segmented"
    x = xs()
    if x is None:
        return LocationCall("liver", None, Laterality.NONE.value, "no_liver_label")
    median = float(np.median(x))
    lobe = "left lobe" if c[0] > median else "right lobe"
    w = width(x)
    return LocationCall(f"liver, {lobe}", lobe, Laterality.NONE.value,
                        f"liver_x_median ({reason})", abs(float(c[0]) - median) / w if w else None)


# ---- lung and the rest ------------------------------------------------------------

def lung_side(lung: int) -> LocationCall:
    """Right or left lung from the host lung label (16 or 17)."""
    side = _side(lung)
    return LocationCall(f"{side} lung", side, side, "host_label")


def organ_location(host: int | None, default_host: int | None = None) -> LocationCall:
    """Location = host organ name (classes without sub-regions)."""
    if host is None:
        if default_host is None:
            return LocationCall("unknown", None, Laterality.NONE.value, "no_host_label")
        info = vocab.get(default_host)
        side = info.laterality.value
        return LocationCall(info.name.lower(), None, side, "no_host_label")
    return LocationCall(_organ_text(host), None, _side(host), "host_label")
