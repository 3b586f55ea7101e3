"""What the v2 phantoms add to the procedural anatomy: the rest of the vocabulary, the pelvis, and the bone.

v1 (:mod:`radmesh.phantom.anatomy`) draws 11 organs between the kidneys and the lung
bases; a model trained on it learns that anything bright and round beside the midline
is a kidney, because nothing else there is. v2 paints, after v1's anatomy and in the
same anatomy frame (mm, LPS axes, origin at the pancreatic body ≈ L1):

- the labelled classes v1 lacks: esophagus 5, portal and splenic vein 10, adrenal glands
  12/13, duodenum 14 (the C-loop round the pancreatic head), hepatic vessels 15 (the
  three hepatic veins into the IVC and the portal branches, inside the liver only),
  colon 18 (caecum to sigmoid), small intestine 19 (v1's bowel loops, now labelled),
  rectum 20, bladder 21, prostate 22 (male cases), femoral heads 23/24, celiac trunk 25;
- unlabelled bone and soft tissue that sits where those organs do: sternum, sacrum,
  iliac wings, acetabula, femoral necks, pubic and ischial rami, gluteal muscles, the
  uterus (female cases); v1's spine ends at the sacrum.

Every v2 structure paints only over background and small bowel (labels 0 and 19) and
never over bone unless it is bone, so v1's organs keep their shapes and a tube that
passes an organ simply stops at it. Hollow organs are drawn as a wall (full radius)
then a lumen (radius minus the wall) restricted to the organ's own wall, so joints
between segments stay closed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from radmesh.common import vocabulary as vocab
from radmesh.phantom.anatomy import F32, Anatomy, Canvas, Frame, Slab, _ellipse, rotation_xyz, sq3

BONE_GUARD_HU = 300.0  # soft-tissue structures never paint over voxels brighter than this
SOFT = (0, vocab.INTESTINE)  # labels a v2 structure may paint over


@dataclass
class Tube:
    """A polyline with a radius at each point (anatomy mm), linearly interpolated along segments."""

    points: np.ndarray  # (n, 3)
    radii: np.ndarray  # (n,)

    def segments(self):
        for i in range(len(self.points) - 1):
            yield self.points[i], self.points[i + 1], float(self.radii[i]), float(self.radii[i + 1])


@dataclass
class AnatomyV2:
    """One case's v2 additions (anatomy-frame mm). Built by :func:`sample_v2`."""

    male: bool
    esophagus: Tube
    esophagus_air: bool
    portal: Tube  # splenic vein → confluence → portal vein (one class)
    celiac: Tube
    celiac_branches: list[Tube]
    hepatic_veins: list[Tube]
    portal_branches: list[Tube]
    adrenals: dict[int, Frame]
    duodenum: Tube
    duodenum_gas: bool
    colon: Tube
    colon_texture: tuple[np.ndarray, np.ndarray, float]  # wave vectors (2, 3) rad/mm, phases, gas level
    rectum: Tube
    bladder: Frame
    bladder_contrast: float  # fraction of the bladder depth holding excreted contrast (delayed phase)
    prostate: Frame | None
    uterus: Frame | None
    femoral_heads: dict[int, Frame]
    femoral_necks: list[Tube]
    acetabula: dict[int, Frame]
    rami: list[Tube]
    iliac_wings: list[Frame]
    sacrum: Frame
    sacrum_top_z: float
    sternum: tuple[float, float, float, float]  # y centre, rx, ry, lowest z (xiphoid)
    gluteal: tuple[float, float, float, float, float]  # x, y, rx, ry, top z
    wall_mm: float = 3.0
    extra: dict = field(default_factory=dict)


def _jit(rng: np.random.Generator, pts: list, s: float, d: float) -> np.ndarray:
    p = np.asarray(pts, dtype=float) * s
    return p + rng.uniform(-d, d, p.shape) * s


def _pancreas_at(a: Anatomy, x: float) -> tuple[float, float, float]:
    """(y, z, posterior half-thickness ry) of the pancreas centreline at anatomy x."""
    x0, x1 = a.pancreas_x
    u = float(np.clip((x - x0) / (x1 - x0), 0, 1))
    ry = float(np.interp(u, [0.0, 0.3, 1.0], a.pancreas_r[0]))
    return float(np.polyval(a.pancreas_y, x)), float(np.polyval(a.pancreas_z, x)), ry


def _aorta_at(a: Anatomy, z: float) -> tuple[float, float, float]:
    """(x, y, radius) of the aorta's centre at height z (as v1 paints it)."""
    x0, y0, slope, rise, r, _ = a.aorta
    top_y = a.dome_l[0] - 60 * a.s
    y = y0 + rise * float(np.clip((z - top_y) / (60 * a.s), 0, 1))
    return x0 + slope * z, y, r


def sample_v2(rng: np.random.Generator, a: Anatomy) -> AnatomyV2:
    """Draw the v2 additions for anatomy ``a`` (their own random stream, so v1's draws are unchanged)."""
    s = a.s
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    yv, srx, sry = a.spine[:3]
    # Esophagus: anterior-right of the descending aorta, through the hiatus, into the cardia.
    gej = a.stomach.c + a.stomach.rot @ (np.array([-0.55, 0.0, 0.6]) * a.stomach.r)
    e_r = u(7, 10) * s
    esophagus = Tube(np.array([[-6 * s, yv - sry - 12 * s, 400 * s], [-4 * s, yv - sry - 12 * s, a.dome_r[0] + 10 * s],
                               [10 * s, yv - sry - 24 * s, a.dome_l[0] - 18 * s], gej]), np.full(4, e_r))
    # Splenic vein along the back of the pancreas, confluence behind the neck, portal vein up to the hilum.
    sv_r, pv_r = u(4, 5.5) * s, u(6, 8) * s
    x0, x1 = a.pancreas_x
    pts = []
    for x in (x1 - 8 * s, 0.6 * x1, 0.25 * x1, -5 * s, -22 * s):
        y, z, ry = _pancreas_at(a, x)
        pts.append([x, y + ry + sv_r + 1.0, z])
    yt, zt, _ = _pancreas_at(a, x1)
    pts.insert(0, [x1 + 6 * s, yt + 12 * s, zt + 8 * s])
    conf = np.array(pts[-1])
    hilum = np.array([-48 * s + u(-4, 4) * s, -5 * s + u(-4, 4) * s, conf[2] + u(40, 50) * s])
    portal_pts = np.vstack([pts, conf + [-12 * s, -10 * s, 20 * s], hilum])
    portal = Tube(portal_pts, np.r_[np.full(len(pts), sv_r), pv_r, pv_r])
    # Celiac trunk: off the front of the aorta above the pancreas, 15–25 mm long.
    zc = _pancreas_at(a, 0.0)[1] + u(15, 25) * s
    ax, ay, ar = _aorta_at(a, zc)
    c_end = np.array([ax + u(-5, 5) * s, ay - ar - u(15, 25) * s, zc + u(0, 8) * s])
    c_r = u(3, 4.5) * s
    celiac = Tube(np.array([[ax, ay, zc], c_end]), np.array([c_r, c_r]))
    celiac_branches = [Tube(np.array([c_end, c_end + [dx * s, u(-5, 5) * s, u(-5, 8) * s]]), np.array([2.5 * s, 2 * s]))
                       for dx in (-45.0, 55.0)]
    # Hepatic veins from the top of the IVC into the right, middle and left liver; portal branches from the hilum.
    vx0, vy0, _, vry, vtop, _ = a.ivc
    z0 = vtop - 15 * s
    hv0 = np.array([vx0, vy0 - 16 * s * float(np.clip(z0 / (90 * s), 0, 1)), z0])
    hepatic_veins = [Tube(np.array([hv0, hv0 + np.array(d) * s + rng.uniform(-8, 8, 3) * s]), np.array([u(5, 6.5) * s, 1.6 * s]))
                     for d in ((-90, 10, -35), (-35, -55, -40), (30, -55, -25))]
    portal_branches = [Tube(np.array([hilum, hilum + np.array(d) * s + rng.uniform(-6, 6, 3) * s]), np.array([u(4.5, 6) * s, 1.6 * s]))
                       for d in ((-55, 10, 5), (50, -35, 20), (-30, 25, -25))]
    # Adrenals: thin plates above the kidneys' upper poles, the right one behind the IVC,
    # the left one beside the aorta (where they sit, clear of the liver and spleen).
    adrenals = {}
    for kid, cls, sign in ((vocab.RIGHT_KIDNEY, vocab.RIGHT_ADRENAL, -1), (vocab.LEFT_KIDNEY, vocab.LEFT_ADRENAL, 1)):
        fr = a.kidneys[kid]
        zt = float((fr.c + fr.rot @ np.array([0.0, 0.0, fr.r[2]]))[2]) + u(2, 10) * s
        if sign < 0:
            c = np.array([vx0 - u(2, 8) * s, vy0 + vry + u(8, 13) * s, zt])
        else:
            ax, ay, ar = _aorta_at(a, zt)
            c = np.array([ax + ar + u(10, 16) * s, ay + u(4, 12) * s, zt])
        adrenals[cls] = Frame(c, np.array([u(2.5, 3.5), u(9, 13), u(14, 20)]) * s,
                              rotation_xyz(np.radians(u(-15, 15)), 0.0, np.radians(sign * u(20, 50))))
    # Duodenum: pylorus → bulb → descending (lateral to the head) → horizontal (in front of IVC and aorta) → ascending.
    duodenum = Tube(_jit(rng, [[-5, -50, 0], [-45, -35, -5], [-80, -8, -15], [-82, -2, -50], [-65, -18, -74],
                               [-10, -24, -78], [25, -22, -74], [38, -15, -45]], s, 4), np.full(8, u(11, 15) * s))
    # Colon: caecum, ascending, hepatic flexure, transverse (sagging), splenic flexure, descending, sigmoid.
    colon_pts = _jit(rng, [[-75, -5, -175], [-90, 10, -110], [-88, 15, -45], [-72, -28, -12], [-30, -62, -45],
                           [20, -62, -40], [72, -5, 22], [92, 22, -40], [90, 20, -125], [60, -12, -200],
                           [20, -18, -212], [0, 42, -222]], s, 7)
    colon_r = np.array([28, 24, 23, 22, 21, 21, 20, 19, 18, 17, 16, 16], float) * s * u(0.8, 1.1)
    colon = Tube(colon_pts, colon_r)
    k = np.array([rng.standard_normal(3) for _ in range(2)])
    k = k / np.linalg.norm(k, axis=1, keepdims=True) * (2 * np.pi / (np.array([u(30, 60), u(30, 60)])[:, None] * s))
    colon_texture = (k, rng.uniform(0, 2 * np.pi, 2), u(-0.6, 1.4))
    rectum = Tube(_jit(rng, [[0, 42, -222], [0, 60, -270], [0, 50, -325], [0, 30, -362]], s, 3),
                  np.full(4, u(14, 20) * s))
    fill = u(0.35, 1.0) ** (1 / 3)
    bl_r = np.array([42.0, 32.0, 35.0]) * s * fill
    bladder = Frame(np.array([u(-5, 5) * s, -30 * s, -300 * s + bl_r[2]]), bl_r)
    male = bool(rng.random() < 0.5)
    prostate = Frame(np.array([0.0, -15 * s, bladder.c[2] - bl_r[2] - 16 * s]), np.array([20, 15, 16]) * s * u(0.85, 1.2))
    uterus = Frame(np.array([0.0, 8 * s, -262 * s]), np.array([32, 22, 42]) * s * u(0.8, 1.1),
                   rotation_xyz(np.radians(u(-40, -20)), 0.0, 0.0))
    # Hips: femoral heads in their acetabula, necks running out laterally and down.
    femoral_heads, acetabula, necks = {}, {}, []
    fz = u(-320, -300) * s
    for cls, sign in ((vocab.RIGHT_FEMUR_HEAD, -1), (vocab.LEFT_FEMUR_HEAD, 1)):
        c = np.array([sign * u(84, 92) * s, u(0, 10) * s, fz + u(-3, 3) * s])
        r = u(22, 26) * s
        femoral_heads[cls] = Frame(c, np.full(3, r))
        acetabula[cls] = Frame(c, np.full(3, r + u(6, 9) * s))
        necks.append(Tube(np.array([c, c + np.array([sign * 38, 12, -28]) * s]), np.array([15 * s, 15 * s])))
    rami = []
    for sign in (-1, 1):
        hc = femoral_heads[vocab.LEFT_FEMUR_HEAD if sign > 0 else vocab.RIGHT_FEMUR_HEAD].c
        rami.append(Tube(np.array([hc + np.array([-sign * 15, -22, -5]) * s, [sign * 8 * s, -45 * s, hc[2] - 12 * s]]),
                         np.array([10 * s, 8 * s])))
        rami.append(Tube(np.array([hc + np.array([-sign * 10, 22, -15]) * s, [sign * 50 * s, 30 * s, hc[2] - 55 * s]]),
                         np.array([11 * s, 9 * s])))
    wings = [Frame(np.array([sign * u(76, 84) * s, 30 * s, u(-195, -180) * s]), np.array([48, 8, 52]) * s,
                   rotation_xyz(0.0, np.radians(sign * u(5, 15)), np.radians(-sign * u(30, 42)))) for sign in (-1, 1)]
    sacrum = Frame(np.array([0.0, 62 * s, -255 * s]), np.array([46, 14, 58]) * s, rotation_xyz(np.radians(u(20, 35)), 0.0, 0.0))
    front = a.body_c[1] - a.cavity_r[1]
    sternum = (front + 7 * s, u(14, 20) * s, u(5, 7) * s, a.dome_r[0] - u(20, 40) * s)
    return AnatomyV2(
        male=male, esophagus=esophagus, esophagus_air=bool(rng.random() < 0.5), portal=portal,
        celiac=celiac, celiac_branches=celiac_branches, hepatic_veins=hepatic_veins,
        portal_branches=portal_branches, adrenals=adrenals, duodenum=duodenum,
        duodenum_gas=bool(rng.random() < 0.4), colon=colon, colon_texture=colon_texture, rectum=rectum,
        bladder=bladder, bladder_contrast=u(0.1, 0.5), prostate=prostate if male else None,
        uterus=None if male else uterus, femoral_heads=femoral_heads, femoral_necks=necks, acetabula=acetabula,
        rami=rami, iliac_wings=wings, sacrum=sacrum, sacrum_top_z=float(sacrum.c[2] + 0.9 * sacrum.half_extent()[2]),
        sternum=sternum, gluteal=(62 * s, 72 * s, 55 * s, 34 * s, -185 * s), wall_mm=u(2.5, 3.5) * s,
    )


# ---- painting ----------------------------------------------------------------------

def _lut(labels: tuple[int, ...]) -> np.ndarray:
    t = np.zeros(256, dtype=bool)
    t[list(labels)] = True
    return t


def _paintable(lab: np.ndarray, hu: np.ndarray, allowed: np.ndarray, bone_ok: bool) -> np.ndarray:
    ok = allowed[lab]
    if not bone_ok:
        ok &= hu < F32(BONE_GUARD_HU)
    return ok


def _segment_mask(slab: Slab, p0: np.ndarray, p1: np.ndarray, r0: float, r1: float, shrink: float) -> np.ndarray:
    """Voxels within the tapered radius (minus ``shrink``) of segment p0→p1 (exact point-to-segment distance)."""
    d = p1 - p0
    length = float(np.linalg.norm(d))
    e = d / length
    s_ = slab.field(e, -float(e @ p0))  # signed distance along the segment from p0
    q = None
    for ax in range(3):
        row = np.zeros(3)
        row[ax] = 1.0
        c = slab.field(row, -float(p0[ax]))
        c *= c
        q = c if q is None else q + c
    t = np.clip(s_, 0, F32(length))
    q -= F32(2) * t * s_
    q += t * t  # |p − p0 − t e|²
    r = F32(r0) + (t * F32((r1 - r0) / length)) - F32(shrink)
    np.maximum(r, 0, out=r)
    return q <= r * r


def paint_tube(canvas: Canvas, tube: Tube, label: int, value, allowed: tuple[int, ...] = SOFT,
               shrink: float = 0.0, bone_ok: bool = False) -> None:
    """Paint ``tube`` (label, HU ``value`` or ``value(slab, mask) → HU of the masked voxels``)."""
    lut = _lut(allowed)

    def fn(slab: Slab, lab: np.ndarray, hu: np.ndarray, p0, p1, r0, r1) -> None:
        m = _segment_mask(slab, p0, p1, r0, r1, shrink)
        m &= _paintable(lab, hu, lut, bone_ok)
        if not m.any():
            return
        lab[m] = label
        hu[m] = value(slab, m) if callable(value) else F32(value)

    classes = (label,) if label else ()
    for p0, p1, r0, r1 in tube.segments():
        r = max(r0, r1) + 2
        canvas.paint(np.minimum(p0, p1) - r, np.maximum(p0, p1) + r,
                     lambda sl, lab, h, p0=p0, p1=p1, r0=r0, r1=r1: fn(sl, lab, h, p0, p1, r0, r1), classes)


def paint_hollow(canvas: Canvas, tube: Tube, label: int, wall_hu: float, lumen, wall_mm: float) -> None:
    """A hollow organ: the wall over background and small bowel, then its lumen inside its own wall."""
    paint_tube(canvas, tube, label, wall_hu)
    paint_tube(canvas, tube, label, lumen, allowed=(label,), shrink=wall_mm)


def paint_frame(canvas: Canvas, fr: Frame, label: int, value, allowed: tuple[int, ...] = SOFT,
                bone_ok: bool = False, scale: float = 1.0, where=None) -> None:
    """Paint the ellipsoid ``fr`` (optionally shrunk by ``scale``; ``where(slab)`` further restricts it)."""
    lut = _lut(allowed)
    inner = Frame(fr.c, fr.r * scale, fr.rot)

    def fn(slab: Slab, lab: np.ndarray, hu: np.ndarray) -> None:
        m = sq3(inner.local(slab)) <= 1
        m &= _paintable(lab, hu, lut, bone_ok)
        if where is not None:
            m &= where(slab)
        if m.any():
            lab[m] = label
            hu[m] = value(slab, m) if callable(value) else F32(value)

    half = fr.half_extent() + 2
    canvas.paint(fr.c - half, fr.c + half, fn, (label,) if label else ())


def _bone_frame(canvas: Canvas, fr: Frame, label: int, h: dict[str, float], cortex_mm: float = 2.0,
                allowed: tuple[int, ...] = SOFT, where=None) -> None:
    """A bone: cortical ellipsoid, then cancellous inside it (cortex ``cortex_mm`` thick)."""
    lab_ok = tuple(sorted(set(allowed) | {label}))
    paint_frame(canvas, fr, label, h["bone_cortical"], allowed=lab_ok, bone_ok=True, where=where)
    scale = max(0.2, 1 - cortex_mm / float(fr.r.min()))
    paint_frame(canvas, fr, label, h["bone_cancellous"], allowed=(label,), bone_ok=True, scale=scale, where=where)


def _bone_tube(canvas: Canvas, tube: Tube, h: dict[str, float], cortex_mm: float = 2.5) -> None:
    paint_tube(canvas, tube, 0, h["bone_cortical"], bone_ok=True)
    paint_tube(canvas, tube, 0, h["bone_cancellous"], shrink=cortex_mm, bone_ok=True, allowed=(0,))


def _colon_content(v: AnatomyV2, h: dict[str, float]):
    (k, phi, gas_level) = v.colon_texture

    def value(slab: Slab, m: np.ndarray) -> np.ndarray:
        t = np.sin(slab.field(k[0], phi[0]))
        t += np.sin(slab.field(k[1], phi[1]))
        bubbles = np.sin(slab.field(k[0] * 7.0, phi[1])) * np.sin(slab.field(k[1] * 7.0, phi[0]))
        out = np.where(t > F32(gas_level), F32(h["gas"]),
                       np.where(bubbles > F32(0.55), F32(-600.0), F32(h["stool"])))
        return out[m]

    return value


def render_v2(canvas: Canvas, a: Anatomy, v: AnatomyV2, h: dict[str, float], extent_z: tuple[float, float],
              phase: str) -> None:
    """Paint the v2 additions over v1's rendered anatomy (labels and noiseless HU)."""
    s = a.s
    z_lo, z_hi = extent_z
    # Pelvic bones and hips first: the soft organs of the pelvis then stop at them.
    for fr in v.iliac_wings:
        _bone_frame(canvas, fr, 0, h, 2.0)
    _bone_frame(canvas, v.sacrum, 0, h, 2.0)
    for cls, acet in v.acetabula.items():
        head = v.femoral_heads[cls]
        sign = 1 if head.c[0] > 0 else -1
        # The socket: a shell round the head, on its medial and upper side only.
        medial = lambda sl, c=head.c, sign=sign: (sl.field((sign, 0, 0), -sign * float(c[0])) < F32(8 * s))  # noqa: E731
        _bone_frame(canvas, acet, 0, h, 2.0, where=medial)
        # The head: cleared of socket bone first (a 1.5 mm joint space), then painted.
        paint_frame(canvas, Frame(head.c, head.r + 1.5 * s, head.rot), 0, h["muscle"] - 10, allowed=(0,), bone_ok=True)
        _bone_frame(canvas, head, cls, h, 2.0)
    for t in v.rami + v.femoral_necks:
        _bone_tube(canvas, t, h)
    # Sternum.
    sy, srx, sry, sz = v.sternum

    def sternum(slab: Slab, lab: np.ndarray, hu: np.ndarray) -> None:
        x, y, z = slab.xyz()
        f = _ellipse(x, y, 0.0, sy, srx, sry)
        m = (f <= 1) & (z >= F32(sz)) & (lab == 0)
        hu[m] = F32(h["bone_cortical"])
        hu[m & (f < F32((1 - 2.0 / sry) ** 2))] = F32(h["bone_cancellous"])

    if z_hi > sz:
        canvas.paint(np.array([-srx - 2, sy - sry - 2, max(sz, z_lo)]), np.array([srx + 2, sy + sry + 2, z_hi]), sternum)
    # Gluteal muscles behind the pelvis.
    gx, gy, grx, gry, gtop = v.gluteal

    def gluteal(slab: Slab, lab: np.ndarray, hu: np.ndarray) -> None:
        x, y, z = slab.xyz()
        m = (_ellipse(np.abs(x), y, gx, gy, grx, gry) <= 1) & (z < F32(gtop))
        m &= (lab == 0) & (hu > F32(-200)) & (hu < F32(BONE_GUARD_HU))
        hu[m] = F32(h["muscle"])

    if z_lo < gtop:
        canvas.paint(np.array([-gx - grx, gy - gry, z_lo]), np.array([gx + grx, gy + gry, gtop]), gluteal)
    # Pelvic organs.
    gas = lambda level: lambda sl, m: np.full(int(m.sum()), F32(level))  # noqa: E731
    paint_hollow(canvas, v.rectum, vocab.RECTUM, h["colon_wall"], _colon_content(v, h), v.wall_mm)

    def urine(slab: Slab, m: np.ndarray) -> np.ndarray:
        # Excreted contrast layers dependently (posterior, supine) in the delayed phase.
        depth = slab.field((0.0, 1.0, 0.0), -float(v.bladder.c[1])) / F32(v.bladder.r[1])
        out = np.where(depth > F32(1 - 2 * v.bladder_contrast), F32(h["excreted_contrast"]), F32(h["urine"]))
        return out[m] if phase == "delayed" else np.full(int(m.sum()), F32(h["urine"]))

    paint_frame(canvas, v.bladder, vocab.BLADDER, h["muscle"])
    paint_frame(canvas, v.bladder, vocab.BLADDER, urine, allowed=(vocab.BLADDER,),
                scale=max(0.3, 1 - v.wall_mm / float(v.bladder.r.min())))
    if v.prostate is not None:
        paint_frame(canvas, v.prostate, vocab.PROSTATE, h["prostate"])
    if v.uterus is not None:
        paint_frame(canvas, v.uterus, 0, h["uterus"])
    # Bowel: colon, duodenum.
    paint_hollow(canvas, v.colon, vocab.COLON, h["colon_wall"], _colon_content(v, h), v.wall_mm)
    duo_lumen = (lambda sl, m: np.where(sl.field((0, 1, 0), 0.0)[m] < F32(float(v.duodenum.points[:, 1].mean()) - 4 * s),
                                        F32(h["gas"]), F32(h["bowel_content"]))) if v.duodenum_gas else h["bowel_content"]
    paint_hollow(canvas, v.duodenum, vocab.DUODENUM, h["bowel_wall"], duo_lumen, 2.5 * s)
    # Esophagus: a collapsed muscular tube, sometimes with an air sliver.
    paint_tube(canvas, v.esophagus, vocab.ESOPHAGUS, h["esophagus"])
    if v.esophagus_air:
        r = float(v.esophagus.radii[0])
        paint_tube(canvas, v.esophagus, vocab.ESOPHAGUS, gas(h["gas"]), allowed=(vocab.ESOPHAGUS,), shrink=max(0.0, r - 2.5 * s))
    # Vessels.
    paint_tube(canvas, v.portal, vocab.PORTAL_SPLENIC_VEIN, h["portal_vein"])
    paint_tube(canvas, v.celiac, vocab.CELIAC_TRUNK, h["aorta"])
    for t in v.celiac_branches:
        paint_tube(canvas, t, 0, h["aorta"])
    for t in v.hepatic_veins:
        paint_tube(canvas, t, vocab.HEPATIC_VESSEL, h["hepatic_vessel"], allowed=(vocab.LIVER,))
    for t in v.portal_branches:
        paint_tube(canvas, t, vocab.HEPATIC_VESSEL, h["portal_vein"], allowed=(vocab.LIVER,))
    for cls, fr in v.adrenals.items():
        # The right adrenal sits behind the IVC, medial to the liver: v1's liver reaches over that
        # spot, so the gland is cut out of it (it never covers more than a few mL of liver).
        paint_frame(canvas, fr, cls, h["adrenal"], allowed=SOFT + (vocab.LIVER,))


# ---- metal ---------------------------------------------------------------------------

def paint_metal(rng: np.random.Generator, canvas: Canvas, a: Anatomy, h: dict[str, float],
                extent_z: tuple[float, float]) -> dict:
    """A surgical clip near the liver hilum or a pair of pedicle screws, with the streaks they cast.

    Streaks are in-plane (the scanner's plane) bands round the metal, ±amplitude HU as
    cos(n·θ + φ), decaying with distance; they change HU only, never labels.
    """
    s = a.s
    z_lo, z_hi = extent_z
    kind = "clip" if rng.random() < 0.5 else "screws"
    if kind == "clip":
        c = np.array([-45.0, -35.0, -5.0]) * s + rng.uniform(-15, 15, 3) * s
        pieces = [Tube(np.array([c, c + rng.uniform(-6, 6, 3)]), np.full(2, float(rng.uniform(1.5, 3.0))))]
        amp, reach = float(rng.uniform(60, 200)), 60.0
    else:
        yv, _, ry, period, _, phase = a.spine
        lo = max(z_lo + 15, -150 * s)
        hi = min(z_hi - 15, 120 * s)
        zc = float(rng.uniform(lo, hi)) if hi > lo else 0.5 * (z_lo + z_hi)
        c = np.array([0.0, yv, zc])
        pieces = [Tube(np.array([[sgn * 18 * s, yv + ry + 20 * s, zc], [sgn * 6 * s, yv - 0.4 * ry, zc]]), np.full(2, 3.0 * s))
                  for sgn in (-1, 1)]
        amp, reach = float(rng.uniform(150, 400)), 90.0
    if not (z_lo - 10 < c[2] < z_hi + 10):
        return dict(kind="none")
    for t in pieces:
        paint_tube(canvas, t, 0, h["metal"], allowed=tuple(range(256)), bone_ok=True)
    n = int(rng.integers(8, 20))
    phi = float(rng.uniform(0, 2 * np.pi))
    zhalf = 12.0 * s

    def streaks(slab: Slab, lab: np.ndarray, hu: np.ndarray) -> None:
        x, y, z = slab.xyz()
        dx, dy = x - F32(c[0]), y - F32(c[1])
        r = np.sqrt(dx * dx + dy * dy)
        band = np.cos(F32(n) * np.arctan2(dy, dx) + F32(phi))
        band *= F32(amp) * np.exp(-r / F32(reach)) * (np.abs(z - F32(c[2])) < F32(zhalf))
        body = (hu > F32(-900)) & (hu < F32(2000))
        hu[body] += band[body]

    r = 3 * reach
    canvas.paint(np.array([c[0] - r, c[1] - r, c[2] - zhalf]), np.array([c[0] + r, c[1] + r, c[2] + zhalf]), streaks)
    return dict(kind=kind, centre_anatomy_mm=[float(v) for v in c], streak_amplitude_hu=amp, streak_bands=n)
