"""Where a structure meets the edge of the scan: the sign that it continues outside it.

A structure whose voxels reach the first or last slice, or the border of the in-plane
field of view, was cut by the acquisition (a thin slab, a chest-only or pelvis-only
scan, a small reconstruction field of view). Its volume, and a lesion's diameters,
are then lower bounds; the answer has to say so rather than report them as whole.

Edges are named in patient terms: "superior" / "inferior" for the slice ends (which
end is which follows the grid's direction, so a feet-first or reversed series is
named correctly), "field of view" for the in-plane border.
"""

from __future__ import annotations

import numpy as np

from radmesh.common.volume import Geometry

SUPERIOR, INFERIOR, FIELD_OF_VIEW = "superior", "inferior", "field of view"


def scan_edges(box: tuple[slice, slice, slice], geometry: Geometry) -> tuple[str, ...]:
    """The edges of the scan that ``box`` (the structure's tight (z, y, x) voxel box) reaches."""
    nz, ny, nx = geometry.shape_zyx
    out: list[str] = []
    if nz > 1:
        # Which slice end is superior: compare the LPS S coordinate of the first and last slices.
        ends = geometry.to_lps(np.array([[0.0, 0.0, 0.0], [nz - 1.0, 0.0, 0.0]]))
        first_is_superior = bool(ends[0, 2] > ends[1, 2])
        at_first, at_last = box[0].start == 0, box[0].stop == nz
        if at_first or at_last:
            touched = {SUPERIOR if first_is_superior else INFERIOR} if at_first else set()
            if at_last:
                touched.add(INFERIOR if first_is_superior else SUPERIOR)
            out += [e for e in (SUPERIOR, INFERIOR) if e in touched]
    if box[1].start == 0 or box[1].stop == ny or box[2].start == 0 or box[2].stop == nx:
        out.append(FIELD_OF_VIEW)
    return tuple(out)


def edges_phrase(edges: tuple[str, ...] | list[str]) -> str:
    """"the superior edge", "the superior and inferior edges", "the edge of the field of view"."""
    ends = [e for e in edges if e in (SUPERIOR, INFERIOR)]
    parts = []
    if ends:
        parts.append(f"the {' and '.join(ends)} {'edge' if len(ends) == 1 else 'edges'} of the scan")
    if FIELD_OF_VIEW in edges:
        parts.append("the edge of the field of view")
    return " and ".join(parts)
