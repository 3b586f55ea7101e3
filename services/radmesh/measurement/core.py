"""The measurement core: per-structure volumes and per-lesion diameters, HU and location.

``measure(ct, labels)`` takes a CT volume (HU, any real dtype) and a label map of
vocabulary class indices on the same grid, both (z, y, x) arrays with ITK/LPS
geometry, and returns a :class:`Measurement`; ``Measurement.to_dict()`` is a
JSON-ready dict (plain ``int``/``float``/``str``/lists only) whose keys and value
conventions are those of ``radmesh.v1.MeasureResponse`` (proto field names;
proto3 defaults for "nothing": 0, 0.0 or ""), so
``json_format.ParseDict(m.to_dict(), MeasureResponse())`` is the gRPC answer:

.. code-block:: text

    {"structures": [{"class_index", "name", "kind", "volume_ml", "voxel_count", "hu_mean",
                     "lesions": [...],                      # empty for organs and vessels
                     "scan_edges": [...]                    # edges of the scan it reaches (edges.py)
                    }, ...],
     "grid": {"shape_zyx", "spacing_xyz_mm", "origin_lps_mm", "direction"},   # direction: 9, row-major
     "min_lesion_mm3": float}

and each lesion

.. code-block:: text

    {"id", "volume_ml", "max_diameter_mm", "long_axis_mm", "short_axis_mm", "long_axis_slice",
     "long_axis_endpoints_lps_mm", "short_axis_endpoints_lps_mm", "centroid_mm", "bbox_min_mm", "bbox_max_mm",
     "hu_mean", "hu_std", "hu_min", "hu_max", "hu_median",
     "host_class_index", "host_hu_mean", "attenuation",
     "location", "subregion", "laterality", "location_method", "scan_edges"}

Structures come in vocabulary order (duplicates dropped). In the dict, "nothing"
follows proto3: an absent class has ``hu_mean`` 0.0 (and ``voxel_count`` 0); a
lesion with no host organ has ``host_class_index`` 0, ``host_hu_mean`` 0.0 and
``attenuation`` ""; ``subregion`` is "" where the organ has none and
``laterality`` "" for unpaired organs; ``long_axis_endpoints_lps_mm`` and
``short_axis_endpoints_lps_mm`` are flat ``[x1, y1, z1, x2, y2, z2]``. The dataclasses themselves use ``None`` for absent
values and the vocabulary's "none" laterality.

Definitions
-----------
- A structure's ``volume_ml`` is its voxel count × voxel volume / 1000 (every voxel
  of the class, including lesion components below the size threshold).
- Lesions of a lesion class are its 26-connected components (3×3×3 structuring
  element) of at least ``min_lesion_mm3``, numbered 1, 2, … by decreasing volume
  (ties: raster order of the component's first voxel).
- ``max_diameter_mm``: exact largest distance between two voxel centres, in LPS
  mm — see :mod:`radmesh.measurement.diameters` for the voxel-centre convention
  and how it compares with pyradiomics' ``Maximum3DDiameter`` (which reads up to
  about one voxel larger).
- ``long_axis_mm`` / ``short_axis_mm``: RECIST 1.1 axes on the axial slice (array
  index ``k``, reported as ``long_axis_slice``) of longest in-plane diameter.
- ``centroid_mm``: mean LPS position of the lesion's voxel centres;
  ``bbox_min_mm``/``bbox_max_mm``: the LPS axis-aligned box of those centres.
- HU statistics are over the lesion's voxels; ``hu_std`` is the population
  standard deviation (ddof = 0). A CT with NaN or infinite values inside a
  measured structure is refused (InvalidInputError).
- ``host_class_index``: the host organ decided from the labels in a 2-voxel shell
  around the lesion (the side for kidneys and lungs), see
  :mod:`radmesh.measurement.location`; ``host_hu_mean`` is the mean HU over that
  host's label (lesion voxels carry their own label, so they are never in it).
- ``attenuation``: lesion mean − host mean below −``ATTENUATION_THRESHOLD_HU``
  → "hypoattenuating", above +``ATTENUATION_THRESHOLD_HU`` → "hyperattenuating",
  otherwise "isoattenuating"; none ("" in the dict) when there is no host.

Label maps: integer dtypes hold class indices 0..32. Floating-point label maps
(some tools write NIfTI masks as float32) are accepted only if every value is a
whole number in 0..32; anything else — boolean masks, fractional or non-finite
values, complex or object arrays — is refused with an :class:`InvalidInputError`
that names the problem. A class asked for but absent is a valid answer: it is
reported with volume 0, no mean HU (0.0 in the dict) and no lesions.

Speed: one pass of ``scipy.ndimage.find_objects`` over the label map gives every
class's bounding box; all further work (counts, HU, connected components,
diameters, shells) happens inside those boxes. No full-volume float copy is made.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy import ndimage

from radmesh.common import vocabulary as vocab
from radmesh.common.errors import InvalidInputError
from radmesh.common.labels import label_array
from radmesh.common.volume import Geometry, Volume
from radmesh.measurement import location as loc
from radmesh.measurement.diameters import farthest_pair, recist_axes, row_ends_zyx
from radmesh.measurement.edges import scan_edges

__all__ = [
    "ATTENUATION_THRESHOLD_HU",
    "DEFAULT_MIN_LESION_MM3",
    "HOST_SHELL_VOXELS",
    "LesionMeasurement",
    "Measurement",
    "StructureMeasurement",
    "measure",
]

#: |lesion mean − host mean| ≤ this many HU is "isoattenuating". 10 HU is about the
#: noise-limited resolution of a mean over a small ROI on portal-venous CT and the
#: usual threshold for calling a focal lesion hypo-/hyperattenuating.
ATTENUATION_THRESHOLD_HU = 10.0
DEFAULT_MIN_LESION_MM3 = 10.0
#: Thickness (voxels, 26-neighbourhood dilation) of the shell in which the host
#: organ is looked for; widened to HOST_SHELL_WIDE_VOXELS if nothing is found.
HOST_SHELL_VOXELS = 2
HOST_SHELL_WIDE_VOXELS = 6
MAX_LABEL = vocab.NUM_CLASSES

_STRUCT26 = np.ones((3, 3, 3), dtype=bool)


# ---- results -------------------------------------------------------------------

def _num(v: Any) -> float:
    """A plain float; None (nothing) is proto3's 0.0."""
    return 0.0 if v is None else float(v)


def _vec(v: np.ndarray) -> list[float]:
    return [float(x) for x in np.asarray(v, dtype=np.float64).ravel()]


@dataclass(frozen=True)
class LesionMeasurement:
    """One connected lesion. Lengths mm, volumes ml, positions LPS mm, intensities HU."""

    id: int
    volume_ml: float
    voxel_count: int
    max_diameter_mm: float
    max_diameter_endpoints_lps_mm: np.ndarray  # (2, 3)
    long_axis_mm: float
    short_axis_mm: float
    long_axis_slice: int
    long_axis_endpoints_lps_mm: np.ndarray  # (2, 3)
    short_axis_endpoints_lps_mm: np.ndarray  # (2, 3)
    centroid_mm: np.ndarray  # (3,) LPS
    bbox_min_mm: np.ndarray  # (3,) LPS
    bbox_max_mm: np.ndarray  # (3,) LPS
    hu_mean: float
    hu_std: float
    hu_min: float
    hu_max: float
    hu_median: float
    host_class_index: int | None
    host_hu_mean: float | None
    attenuation: str | None
    location: str
    subregion: str | None
    laterality: str
    location_method: str
    location_margin: float | None = None
    scan_edges: tuple[str, ...] = ()  # edges of the scan it reaches (radmesh.measurement.edges)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": int(self.id),
            "volume_ml": float(self.volume_ml),
            "max_diameter_mm": float(self.max_diameter_mm),
            "long_axis_mm": float(self.long_axis_mm),
            "short_axis_mm": float(self.short_axis_mm),
            "long_axis_slice": int(self.long_axis_slice),
            "long_axis_endpoints_lps_mm": _vec(self.long_axis_endpoints_lps_mm),  # x1, y1, z1, x2, y2, z2
            "short_axis_endpoints_lps_mm": _vec(self.short_axis_endpoints_lps_mm),  # same slice, same order
            "centroid_mm": _vec(self.centroid_mm),
            "bbox_min_mm": _vec(self.bbox_min_mm),
            "bbox_max_mm": _vec(self.bbox_max_mm),
            "hu_mean": _num(self.hu_mean),
            "hu_std": _num(self.hu_std),
            "hu_min": _num(self.hu_min),
            "hu_max": _num(self.hu_max),
            "hu_median": _num(self.hu_median),
            "host_class_index": 0 if self.host_class_index is None else int(self.host_class_index),
            "host_hu_mean": _num(self.host_hu_mean),
            "attenuation": self.attenuation or "",
            "location": self.location,
            "subregion": self.subregion or "",
            "laterality": "" if self.laterality == vocab.Laterality.NONE.value else self.laterality,
            "location_method": self.location_method,
            "scan_edges": list(self.scan_edges),
        }


@dataclass(frozen=True)
class StructureMeasurement:
    """One vocabulary class: totals over all its voxels, and its lesions if it is a lesion class."""

    class_index: int
    name: str
    kind: str
    volume_ml: float
    voxel_count: int
    hu_mean: float | None
    lesions: tuple[LesionMeasurement, ...] = ()
    scan_edges: tuple[str, ...] = ()  # edges of the scan its voxels reach: it continues outside

    @property
    def is_lesion_class(self) -> bool:
        return self.kind == vocab.Kind.LESION.value

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "class_index": int(self.class_index),
            "name": self.name,
            "kind": self.kind,
            "volume_ml": float(self.volume_ml),
            "voxel_count": int(self.voxel_count),
            "hu_mean": _num(self.hu_mean),
            # Always present (empty for organs) so the CLI's JSON and the proto's
            # repeated field carry the same content.
            "lesions": [lesion.to_dict() for lesion in self.lesions],
            "scan_edges": list(self.scan_edges),
        }
        return d


@dataclass(frozen=True)
class Measurement:
    """The answer of :func:`measure`: structures in vocabulary order, the grid, the size threshold."""

    structures: tuple[StructureMeasurement, ...]
    geometry: Geometry
    min_lesion_mm3: float
    grid: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        g = self.geometry
        object.__setattr__(self, "grid", {
            "shape_zyx": [int(s) for s in g.shape_zyx],
            "spacing_xyz_mm": [float(s) for s in g.spacing_xyz_mm],
            "origin_lps_mm": [float(s) for s in g.origin_lps_mm],
            "direction": _vec(g.direction),  # row-major 3×3, as SimpleITK's GetDirection()
        })

    def structure(self, class_index: int) -> StructureMeasurement:
        for s in self.structures:
            if s.class_index == class_index:
                return s
        raise KeyError(class_index)

    def to_dict(self) -> dict[str, Any]:
        return {
            "structures": [s.to_dict() for s in self.structures],
            "grid": {k: (list(v) if isinstance(v, list) else v) for k, v in self.grid.items()},
            "min_lesion_mm3": float(self.min_lesion_mm3),
        }


# ---- validation ------------------------------------------------------------------

def _check_min_size(min_lesion_mm3: Any) -> float:
    if isinstance(min_lesion_mm3, bool) or not isinstance(min_lesion_mm3, numbers.Real):
        raise InvalidInputError(
            f"min_lesion_mm3 must be a number of cubic millimetres, got {min_lesion_mm3!r}")
    v = float(min_lesion_mm3)
    if math.isnan(v):
        raise InvalidInputError("min_lesion_mm3 is NaN; give a lesion size threshold ≥ 0 mm³")
    if v < 0 or math.isinf(v):
        raise InvalidInputError(f"min_lesion_mm3 must be finite and ≥ 0 mm³, got {v}")
    return v


def _check_classes(classes: Sequence[int] | None) -> list[int] | None:
    if classes is None:
        return None
    if isinstance(classes, (str, bytes)) or not hasattr(classes, "__iter__"):
        raise InvalidInputError(f"classes must be a list of class indices, got {classes!r}")
    out: list[int] = []
    for c in classes:
        if isinstance(c, (bool, np.bool_)) or not isinstance(c, numbers.Integral):
            raise InvalidInputError(
                f"requested class {c!r} is not an integer class index (valid: 1..{MAX_LABEL})")
        info = vocab.get(int(c))  # UnknownClassError (an InvalidInputError) names the index
        if info.index not in out:
            out.append(info.index)
    if not out:
        raise InvalidInputError("classes is empty; pass None to measure every class in the label map")
    return out


def _check_ct(arr: np.ndarray) -> None:
    dt = arr.dtype
    if dt == np.bool_ or not (np.issubdtype(dt, np.integer) or np.issubdtype(dt, np.floating)):
        raise InvalidInputError(f"CT has dtype {dt}; expected real Hounsfield units (an integer or float array)")


def _require_finite(value: float, where: str) -> None:
    if not math.isfinite(value):
        raise InvalidInputError(f"CT holds NaN or infinite values inside {where}; HU must be finite numbers")


# ---- the scene: label map + CT with per-class boxes and caches --------------------

@dataclass
class _Component:
    label: int  # value in the class's component array
    local: tuple[slice, slice, slice]  # inside the class box
    box: tuple[slice, slice, slice]  # in the full volume
    count: int


class _Scene:
    """Label map, CT and geometry with lazily computed, cached per-class facts."""

    def __init__(self, ct: np.ndarray, lab: np.ndarray, geometry: Geometry) -> None:
        self.ct, self.lab, self.g = ct, lab, geometry
        # Foreground box from two cheap max-projections, then one find_objects pass inside it.
        zs = np.flatnonzero(lab.max(axis=(1, 2)))
        self.boxes: dict[int, tuple[slice, slice, slice]] = {}
        self._stats: dict[int, tuple[int, float | None]] = {}
        self._comps: dict[int, tuple[np.ndarray, tuple[slice, ...], list[_Component]]] = {}
        if zs.size == 0:  # an empty map: every requested class is absent
            return
        fg_z = slice(int(zs[0]), int(zs[-1]) + 1)
        plane = lab[fg_z].max(axis=0)
        ys, xs = np.flatnonzero(plane.max(axis=1)), np.flatnonzero(plane.max(axis=0))
        fg = (fg_z, slice(int(ys[0]), int(ys[-1]) + 1), slice(int(xs[0]), int(xs[-1]) + 1))
        objs = ndimage.find_objects(lab[fg], max_label=MAX_LABEL)
        self.boxes = {i + 1: tuple(slice(a.start + f.start, a.stop + f.start) for a, f in zip(sl, fg))
                      for i, sl in enumerate(objs) if sl is not None}
        self._hosts: dict[tuple[int, int], tuple[int | None, str]] = {}
        self._centroids: dict[int, np.ndarray] = {}
        self._s_ranges: dict[int, tuple[float, float]] = {}
        self._cache: dict[str, Any] = {}

    def present(self, c: int) -> bool:
        return c in self.boxes

    # class totals
    def stats(self, c: int) -> tuple[int, float | None]:
        if c not in self._stats:
            if c not in self.boxes:
                self._stats[c] = (0, None)
            else:
                sl = self.boxes[c]
                mask = self.lab[sl] == c
                n = int(np.count_nonzero(mask))
                hu = float(np.mean(self.ct[sl][mask], dtype=np.float64))
                _require_finite(hu, vocab.get(c).name)
                self._stats[c] = (n, hu)
        return self._stats[c]

    def centroid(self, c: int) -> np.ndarray:
        if c not in self._centroids:
            sl = self.boxes[c]
            idx = np.nonzero(self.lab[sl] == c)
            mean = np.array([ix.mean() + s.start for ix, s in zip(idx, sl)])
            self._centroids[c] = self.g.to_lps(mean[None, :])[0]
        return self._centroids[c]

    # components of a lesion class
    def components(self, c: int) -> tuple[np.ndarray, tuple[slice, ...], list[_Component]]:
        if c not in self._comps:
            if c not in self.boxes:
                self._comps[c] = (np.zeros((0, 0, 0), np.int32), (), [])
            else:
                sl = self.boxes[c]
                comp, n = ndimage.label(self.lab[sl] == c, structure=_STRUCT26)
                counts = np.bincount(comp.ravel(), minlength=n + 1)
                objs = ndimage.find_objects(comp)
                items = []
                for i, local in enumerate(objs, start=1):
                    box = tuple(slice(a.start + b.start, a.stop + b.start) for a, b in zip(local, sl))
                    items.append(_Component(i, local, box, int(counts[i])))
                self._comps[c] = (comp, sl, items)
        return self._comps[c]

    def component_mask(self, c: int, comp: _Component) -> np.ndarray:
        labels, _, _ = self.components(c)
        return labels[comp.local] == comp.label

    def host(self, c: int, comp: _Component) -> tuple[int | None, str]:
        """(host class or None, how it was decided) for one component of lesion class c."""
        key = (c, comp.label)
        if key in self._hosts:
            return self._hosts[key]
        hosts = tuple(h for h in vocab.get(c).host if self.present(h))
        result: tuple[int | None, str] = (None, "no host label in the label map")
        if hosts:
            mask = self.component_mask(c, comp)
            for radius in (HOST_SHELL_VOXELS, HOST_SHELL_WIDE_VOXELS):
                padded = tuple(slice(max(0, s.start - radius), min(n, s.stop + radius))
                               for s, n in zip(comp.box, self.lab.shape))
                inner = tuple(slice(s.start - p.start, s.stop - p.start) for s, p in zip(comp.box, padded))
                lesion = np.zeros(tuple(p.stop - p.start for p in padded), dtype=bool)
                lesion[inner] = mask
                h, _ = loc.host_from_shell(self.lab[padded], lesion, hosts, radius)
                if h is not None:
                    result = (h, "shell" if radius == HOST_SHELL_VOXELS else "wide_shell")
                    break
            else:
                centre = self.lesion_centroid(c, comp, mask)
                h = min(hosts, key=lambda k: float(np.linalg.norm(self.centroid(k) - centre)))
                result = (h, "nearest_host_centroid")
        self._hosts[key] = result
        return result

    def lesion_centroid(self, c: int, comp: _Component, mask: np.ndarray | None = None) -> np.ndarray:
        if mask is None:
            mask = self.component_mask(c, comp)
        idx = np.nonzero(mask)
        mean = np.array([ix.mean() + s.start for ix, s in zip(idx, comp.box)])
        return self.g.to_lps(mean[None, :])[0]

    # anatomy for the location rules
    def _s_range_of(self, mask: np.ndarray, start: tuple[int, ...]) -> tuple[float, float]:
        ends = row_ends_zyx(mask) + np.asarray(start, dtype=np.int64)
        s = self.g.to_lps(ends)[:, 2]
        return float(s.min()), float(s.max())

    def kidney_s_range(self, kidney: int) -> tuple[float, float]:
        """S extent of a kidney label together with the kidney lesions it hosts."""
        if kidney not in self._s_ranges:
            sl = self.boxes[kidney]
            lo, hi = self._s_range_of(self.lab[sl] == kidney, tuple(s.start for s in sl))
            for lc in (vocab.KIDNEY_TUMOR, vocab.KIDNEY_CYST):
                for comp in self.components(lc)[2]:
                    if self.host(lc, comp)[0] == kidney:
                        a, b = self._s_range_of(self.component_mask(lc, comp),
                                                tuple(s.start for s in comp.box))
                        lo, hi = min(lo, a), max(hi, b)
            self._s_ranges[kidney] = (lo, hi)
        return self._s_ranges[kidney]

    def _union_points(self, classes: tuple[int, ...]) -> np.ndarray:
        """(N, 3) voxel indices (k, j, i) of the union of ``classes`` (present ones)."""
        boxes = [self.boxes[c] for c in classes if c in self.boxes]
        if not boxes:
            return np.empty((0, 3), dtype=np.int64)
        sl = tuple(slice(min(b[d].start for b in boxes), max(b[d].stop for b in boxes)) for d in range(3))
        crop = self.lab[sl]
        mask = np.isin(crop, np.asarray(classes, dtype=np.uint8))
        return np.argwhere(mask) + np.array([s.start for s in sl])

    def pancreas_points(self) -> np.ndarray:
        if "pancreas" not in self._cache:
            self._cache["pancreas"] = self.g.to_lps(
                self._union_points((vocab.PANCREAS, vocab.PANCREAS_TUMOR)))
        return self._cache["pancreas"]

    def liver_x(self) -> np.ndarray | None:
        """LPS x of every liver ∪ liver-tumour voxel centre (for the median fallback)."""
        if "liver_x" not in self._cache:
            idx = self._union_points((vocab.LIVER, vocab.LIVER_TUMOR)) if self.present(vocab.LIVER) else None
            self._cache["liver_x"] = None if idx is None else self.g.to_lps(idx)[:, 0]
        return self._cache["liver_x"]

    def liver_x_extent(self) -> tuple[float, float] | None:
        """(min, max) LPS x of liver ∪ liver tumour, from row ends only (exact, cheap)."""
        if "liver_x_extent" not in self._cache:
            lo, hi = math.inf, -math.inf
            for c in (vocab.LIVER, vocab.LIVER_TUMOR):
                if c in self.boxes:
                    sl = self.boxes[c]
                    ends = row_ends_zyx(self.lab[sl] == c) + np.array([s.start for s in sl])
                    x = self.g.to_lps(ends)[:, 0]
                    lo, hi = min(lo, float(x.min())), max(hi, float(x.max()))
            self._cache["liver_x_extent"] = (lo, hi) if self.present(vocab.LIVER) else None
        return self._cache["liver_x_extent"]


# ---- per-lesion work -----------------------------------------------------------------

def _attenuation(lesion_hu: float, host_hu: float | None) -> str | None:
    if host_hu is None or not (math.isfinite(lesion_hu) and math.isfinite(host_hu)):
        return None
    diff = lesion_hu - host_hu
    if diff < -ATTENUATION_THRESHOLD_HU:
        return "hypoattenuating"
    if diff > ATTENUATION_THRESHOLD_HU:
        return "hyperattenuating"
    return "isoattenuating"


_GENERIC_ORGAN = {
    vocab.KIDNEY_TUMOR: "kidney", vocab.KIDNEY_CYST: "kidney", vocab.LUNG_TUMOR: "lung",
}


def _locate(scene: _Scene, c: int, host: int | None, host_method: str,
            centroid: np.ndarray) -> loc.LocationCall:
    none = vocab.Laterality.NONE.value
    if c == vocab.PANCREAS_TUMOR:
        if not scene.present(vocab.PANCREAS):
            return loc.LocationCall("pancreas", None, none, "no_pancreas_label")
        return loc.pancreas_subregion(centroid, scene.pancreas_points())
    if c in (vocab.KIDNEY_TUMOR, vocab.KIDNEY_CYST):
        if host is None:
            return loc.LocationCall("kidney", None, none, "no_host_label")
        call = loc.kidney_pole(centroid, host, scene.kidney_s_range(host))
    elif c == vocab.LIVER_TUMOR:
        return loc.liver_lobe(
            centroid,
            scene.centroid(vocab.GALL_BLADDER) if scene.present(vocab.GALL_BLADDER) else None,
            scene.centroid(vocab.POSTCAVA) if scene.present(vocab.POSTCAVA) else None,
            scene.liver_x,  # called only if the median fallback is needed
            scene.liver_x_extent(),
        )
    elif c == vocab.LUNG_TUMOR:
        if host is None:
            return loc.LocationCall("lung", None, none, "no_host_label")
        call = loc.lung_side(host)
    else:
        call = loc.organ_location(host, vocab.get(c).host[0] if vocab.get(c).host else None)
    if host is not None and host_method != "shell":
        call = loc.LocationCall(call.location, call.subregion, call.laterality,
                                f"{call.method} (host by {host_method})", call.margin)
    return call


def _measure_lesion(scene: _Scene, c: int, comp: _Component, number: int) -> LesionMeasurement:
    g = scene.g
    mask = scene.component_mask(c, comp)
    start = np.array([s.start for s in comp.box], dtype=np.int64)
    vals = scene.ct[comp.box][mask].astype(np.float64)
    _require_finite(float(vals.sum()), f"{vocab.get(c).name} lesion at voxel {tuple(int(v) for v in start)}")

    idx = np.nonzero(mask)
    centroid = g.to_lps(np.array([[ix.mean() for ix in idx]]) + start)[0]
    ends = g.to_lps(row_ends_zyx(mask) + start)  # contains every hull vertex → exact extremes
    length, a, b = farthest_pair(ends)
    recist = recist_axes(mask, g, tuple(int(s) for s in start))

    host, host_method = scene.host(c, comp)
    host_hu = scene.stats(host)[1] if host is not None else None
    hu_mean = float(vals.mean())
    call = _locate(scene, c, host, host_method, centroid)
    return LesionMeasurement(
        id=number,
        volume_ml=comp.count * g.voxel_volume_mm3 / 1000.0,
        voxel_count=comp.count,
        max_diameter_mm=length,
        max_diameter_endpoints_lps_mm=ends[[a, b]],
        long_axis_mm=recist.long_axis_mm,
        short_axis_mm=recist.short_axis_mm,
        long_axis_slice=recist.slice_index,
        long_axis_endpoints_lps_mm=recist.long_axis_endpoints_lps_mm,
        short_axis_endpoints_lps_mm=recist.short_axis_endpoints_lps_mm,
        centroid_mm=centroid,
        bbox_min_mm=ends.min(axis=0),
        bbox_max_mm=ends.max(axis=0),
        hu_mean=hu_mean,
        hu_std=float(vals.std()),
        hu_min=float(vals.min()),
        hu_max=float(vals.max()),
        hu_median=float(np.median(vals)),
        host_class_index=host,
        host_hu_mean=host_hu,
        attenuation=_attenuation(hu_mean, host_hu),
        location=call.location,
        subregion=call.subregion,
        laterality=call.laterality,
        location_method=call.method,
        location_margin=call.margin,
        scan_edges=scan_edges(comp.box, g),
    )


def _measure_structure(scene: _Scene, c: int, min_size_mm3: float) -> StructureMeasurement:
    info = vocab.get(c)
    count, hu = scene.stats(c)
    lesions: list[LesionMeasurement] = []
    if info.is_lesion and count:
        vv = scene.g.voxel_volume_mm3
        kept = [comp for comp in scene.components(c)[2]
                if comp.count * vv >= min_size_mm3 * (1 - 1e-12)]
        kept.sort(key=lambda comp: -comp.count)  # stable: ties keep raster order
        lesions = [_measure_lesion(scene, c, comp, n) for n, comp in enumerate(kept, start=1)]
    return StructureMeasurement(
        class_index=c,
        name=info.name,
        kind=info.kind.value,
        volume_ml=count * scene.g.voxel_volume_mm3 / 1000.0,
        voxel_count=count,
        hu_mean=hu,
        lesions=tuple(lesions),
        scan_edges=scan_edges(scene.boxes[c], scene.g) if count else (),
    )


# ---- entry point ---------------------------------------------------------------------

def measure(ct: Volume, labels: Volume, classes: Sequence[int] | None = None,
            min_lesion_mm3: float = DEFAULT_MIN_LESION_MM3) -> Measurement:
    """Measure ``classes`` (default: every class present) of ``labels`` on ``ct``.

    ct:      CT in HU, (z, y, x), any integer or float dtype.
    labels:  vocabulary class indices 0..32 on exactly the CT's grid.
    classes: class indices to report (reported in vocabulary order, duplicates
             dropped); a class that is absent is reported with volume 0 and no lesions.
    min_lesion_mm3: lesion components smaller than this are not reported as
             lesions (they still count in the class volume).

    Raises InvalidInputError (or its subclasses GeometryError, UnknownClassError)
    for mismatched grids, bad label dtypes or values, unknown classes, an empty
    label map when no classes are named, or a bad size threshold.
    """
    min_size = _check_min_size(min_lesion_mm3)
    if not isinstance(ct, Volume):
        raise InvalidInputError(f"ct must be a radmesh Volume, got {type(ct).__name__}")
    if not isinstance(labels, Volume):
        raise InvalidInputError(f"labels must be a radmesh Volume, got {type(labels).__name__}")
    ct.geometry.require_match(labels.geometry, what="label map", ref="CT")
    _check_ct(ct.array)
    requested = _check_classes(classes)
    lab = label_array(labels.array)
    if not lab.any() and requested is None:
        # With classes named, an empty map is an answer ("no pancreatic tumour"): each is
        # reported with volume 0. Without, there is nothing to measure.
        raise InvalidInputError("label map is empty: every voxel is 0 (background), there is nothing to measure "
                                "(name the classes to get them reported as absent)")

    scene = _Scene(ct.array, lab, ct.geometry)
    wanted = sorted(requested) if requested is not None else sorted(scene.boxes)
    structures = tuple(_measure_structure(scene, c, min_size) for c in wanted)
    return Measurement(structures=structures, geometry=ct.geometry, min_lesion_mm3=min_size)
