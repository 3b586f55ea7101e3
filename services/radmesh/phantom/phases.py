"""Contrast phases and lesion attenuation patterns of the v2 phantoms.

A v2 case is acquired in one of four phases; each has its own per-case uniform draw of
tissue values (HU). The ranges are typical values for a 1.2–1.5 mL/kg iodinated bolus
at 3–4 mL/s as given in abdominal CT teaching texts and phase studies (unenhanced
liver 50–65 HU and spleen 40–50; late arterial aorta 250–400 and a corticomedullary
kidney, cortex far above medulla, pancreas at its peak; portal venous liver
100–120 with the portal vein and hepatic veins brightest; delayed 3–5 min: the
nephrographic kidney homogeneous, vessels ≈ 100–130, excreted contrast in the
collecting systems and the bladder). Keys not listed for a phase keep the
portal-venous value of :data:`radmesh.phantom.anatomy.HU_RANGES`.

Lesions carry an attenuation *pattern* drawn per lesion; their value is set relative
to the host organ of the same case, so "hypoattenuating" means darker than this
liver in this phase, not a fixed number.
"""

from __future__ import annotations

import numpy as np

from radmesh.common import vocabulary as vocab
from radmesh.phantom.anatomy import HU_RANGES

PHASES = ("non-contrast", "arterial", "portal-venous", "delayed")
PHASE_P = (0.2, 0.2, 0.45, 0.15)

# Tissues the v2 anatomy adds; portal-venous ranges (HU).
V2_TISSUES: dict[str, tuple[float, float]] = {
    "portal_vein": (150.0, 190.0),
    "hepatic_vessel": (140.0, 180.0),
    "adrenal": (50.0, 70.0),
    "esophagus": (40.0, 60.0),
    "colon_wall": (50.0, 70.0),
    "stool": (10.0, 50.0),
    "urine": (5.0, 20.0),
    "excreted_contrast": (5.0, 20.0),
    "prostate": (50.0, 70.0),
    "uterus": (80.0, 110.0),
    "cartilage": (100.0, 180.0),
    "metal": (2500.0, 3071.0),
}

_PHASE_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "non-contrast": {
        "liver": (50, 65), "spleen": (40, 50), "kidney_cortex": (28, 38), "kidney_medulla": (25, 35),
        "pancreas": (35, 48), "aorta": (35, 50), "ivc": (35, 48), "portal_vein": (35, 48),
        "hepatic_vessel": (30, 45), "heart": (35, 50), "stomach_wall": (35, 45), "bowel_wall": (35, 45),
        "colon_wall": (35, 45), "adrenal": (10, 30), "prostate": (30, 45), "uterus": (40, 55),
    },
    "arterial": {
        "liver": (60, 80), "spleen": (90, 130), "kidney_cortex": (150, 220), "kidney_medulla": (60, 100),
        "pancreas": (100, 140), "aorta": (250, 400), "ivc": (60, 110), "portal_vein": (100, 150),
        "hepatic_vessel": (60, 90), "heart": (150, 300), "stomach_wall": (70, 100), "bowel_wall": (70, 100),
        "colon_wall": (60, 90), "adrenal": (50, 80), "prostate": (50, 80), "uterus": (90, 130),
    },
    "portal-venous": {},
    "delayed": {
        "liver": (75, 95), "spleen": (75, 95), "kidney_cortex": (130, 170), "kidney_medulla": (140, 180),
        "pancreas": (65, 85), "aorta": (100, 130), "ivc": (100, 130), "portal_vein": (100, 130),
        "hepatic_vessel": (95, 125), "heart": (100, 130), "stomach_wall": (50, 70), "bowel_wall": (50, 70),
        "colon_wall": (50, 70), "adrenal": (40, 60), "prostate": (45, 65), "uterus": (70, 95),
        "excreted_contrast": (300, 800),
    },
}


def phase_ranges(phase: str) -> dict[str, tuple[float, float]]:
    """Every tissue's (low, high) HU range in ``phase``."""
    if phase not in _PHASE_RANGES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
    out = {**HU_RANGES, **V2_TISSUES}
    out.update({k: (float(lo), float(hi)) for k, (lo, hi) in _PHASE_RANGES[phase].items()})
    return out


def sample_phase_hu(rng: np.random.Generator, phase: str) -> dict[str, float]:
    """One v2 case's tissue values (HU, rounded to 0.1) in ``phase``."""
    return {k: round(float(rng.uniform(lo, hi)), 1) for k, (lo, hi) in phase_ranges(phase).items()}


# ---- lesion patterns ---------------------------------------------------------------

PATTERNS = ("hypo", "iso", "hyper", "cystic", "necrotic", "rim")
# class → probabilities over PATTERNS (a kidney cyst is always cystic)
_PATTERN_P: dict[int, tuple[float, ...]] = {
    vocab.LIVER_TUMOR: (0.45, 0.05, 0.2, 0.1, 0.1, 0.1),
    vocab.HEPATIC_VESSEL_TUMOR: (0.55, 0.05, 0.15, 0.05, 0.1, 0.1),
    vocab.PANCREAS_TUMOR: (0.7, 0.05, 0.05, 0.1, 0.1, 0.0),
    vocab.KIDNEY_TUMOR: (0.25, 0.05, 0.35, 0.0, 0.25, 0.1),
    vocab.KIDNEY_CYST: (0.0, 0.0, 0.0, 1.0, 0.0, 0.0),
    vocab.LUNG_TUMOR: (0.0, 0.0, 1.0, 0.0, 0.0, 0.0),
    vocab.COLON_TUMOR: (0.0, 0.0, 1.0, 0.0, 0.0, 0.0),
}
# lesion class → the tissue key its host's value is read from
HOST_TISSUE: dict[int, str] = {
    vocab.LIVER_TUMOR: "liver", vocab.HEPATIC_VESSEL_TUMOR: "liver", vocab.PANCREAS_TUMOR: "pancreas",
    vocab.KIDNEY_TUMOR: "kidney_cortex", vocab.KIDNEY_CYST: "kidney_cortex", vocab.LUNG_TUMOR: "lung_tumor",
    vocab.COLON_TUMOR: "colon_wall",
}


def draw_pattern(rng: np.random.Generator, cls: int) -> str:
    return PATTERNS[int(rng.choice(len(PATTERNS), p=_PATTERN_P[cls]))]


def pattern_values(rng: np.random.Generator, pattern: str, host_hu: float) -> tuple[float, float]:
    """(core, rim) HU of a lesion with ``pattern`` in a host of ``host_hu``.

    hypo: 20–60 below the host; iso: within 8 of it, with a thin hypoattenuating capsule
    (so it is seen at all, as a capsule shows an isoattenuating HCC); hyper: 20–60 above;
    cystic: water (0–20), rim = core; necrotic: a fluid core (10–30) in a hypo rim;
    rim-enhancing: a rim 20–50 above the host around a hypo core.
    """
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    if pattern == "hypo":
        v = host_hu - u(20, 60)
        return v, v
    if pattern == "iso":
        return host_hu + u(-8, 8), host_hu - u(15, 30)
    if pattern == "hyper":
        v = host_hu + u(20, 60)
        return v, v
    if pattern == "cystic":
        v = u(0, 20)
        return v, v
    if pattern == "necrotic":
        return u(10, 30), host_hu - u(10, 40)
    if pattern == "rim":
        return host_hu - u(30, 60), host_hu + u(20, 50)
    raise ValueError(f"unknown lesion pattern {pattern!r}")
