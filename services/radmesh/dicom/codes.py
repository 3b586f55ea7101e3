"""Coded concepts for DICOM SEG and SR: one row per radmesh vocabulary class.

Every code here is taken from pydicom's DICOM code dictionaries
(``pydicom.sr.codedict.codes.SCT`` / ``.DCM`` / ``.UCUM``) by attribute name, never
typed in as a number, so a code that is not in the DICOM standard's tables fails
at import; ``tests/test_dicom_out.py`` checks the values as well.

Segment coding (DICOM PS3.3 C.8.20.2, CID 7150 categories):

- organs and vessels: category *Anatomical Structure* (SCT 91723000); type the
  organ from CID 7151 (e.g. Liver 10200004); left/right classes carry the side as
  SegmentedPropertyTypeModifier (Right 24028007 / Left 7771000).
- Hepatic Vessel has no organ code of its own: category *Tissue* (85756007), type
  *Blood Vessel* (59820001, CID 7166), anatomic region Liver.
- Portal Vein and Splenic Vein is one class in the vocabulary but has no single
  code: it is coded *Portal vein* (32764006); the segment label keeps the full name.
- Intestine (the vocabulary's small bowel) is *Small intestine* (30315005).
- lesions: category *Morphologically Abnormal Structure* (49755003 — "Morphologically
  Altered Structure" in older editions; pydicom carries the current meaning); type
  *Neoplasm* (108369006), or *Cyst* (367643001) for Kidney Cyst; the host organ as
  AnatomicRegionSequence (Kidney for kidney lesions, whose side is per lesion).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from radmesh.common import vocabulary as vocab

__all__ = ["ClassCodes", "CLASS_CODES", "LATERALITY", "UNITS", "MEASUREMENTS", "SCAN_EDGE_CONCEPT", "SCAN_EDGES", "codes_for", "laterality_code",
           "DISPLAY_RGB"]

SCT, DCM, UCUM = codes.SCT, codes.DCM, codes.UCUM

ANATOMY = SCT.AnatomicalStructure
TISSUE = SCT.Tissue
ABNORMAL = SCT.MorphologicallyAbnormalStructure
RIGHT, LEFT = SCT.Right, SCT.Left

LATERALITY: dict[str, Code] = {"right": RIGHT, "left": LEFT}


@dataclass(frozen=True)
class ClassCodes:
    """How one vocabulary class is coded in SEG segments and SR findings."""

    category: Code                      # SegmentedPropertyCategoryCodeSequence / SR finding category
    type: Code                          # SegmentedPropertyTypeCodeSequence / SR finding type
    type_modifier: Code | None = None   # laterality of a paired organ
    anatomic_region: Code | None = None  # where the structure lies (lesions, hepatic vessel)

    @property
    def site(self) -> Code:
        """The organ an SR finding site names: the region for lesions, the structure itself for organs."""
        return self.anatomic_region or self.type


def _organ(code: Code, side: Code | None = None) -> ClassCodes:
    return ClassCodes(ANATOMY, code, side)


def _lesion(kind: Code, region: Code) -> ClassCodes:
    return ClassCodes(ABNORMAL, kind, None, region)


CLASS_CODES: dict[int, ClassCodes] = {
    vocab.SPLEEN: _organ(SCT.Spleen),
    vocab.RIGHT_KIDNEY: _organ(SCT.Kidney, RIGHT),
    vocab.LEFT_KIDNEY: _organ(SCT.Kidney, LEFT),
    vocab.GALL_BLADDER: _organ(SCT.Gallbladder),
    vocab.ESOPHAGUS: _organ(SCT.Esophagus),
    vocab.LIVER: _organ(SCT.Liver),
    vocab.STOMACH: _organ(SCT.Stomach),
    vocab.AORTA: _organ(SCT.Aorta),
    vocab.POSTCAVA: _organ(SCT.InferiorVenaCava),
    vocab.PORTAL_SPLENIC_VEIN: _organ(SCT.PortalVein),
    vocab.PANCREAS: _organ(SCT.Pancreas),
    vocab.RIGHT_ADRENAL: _organ(SCT.AdrenalGland, RIGHT),
    vocab.LEFT_ADRENAL: _organ(SCT.AdrenalGland, LEFT),
    vocab.DUODENUM: _organ(SCT.Duodenum),
    vocab.HEPATIC_VESSEL: ClassCodes(TISSUE, SCT.BloodVessel, None, SCT.Liver),
    vocab.RIGHT_LUNG: _organ(SCT.Lung, RIGHT),
    vocab.LEFT_LUNG: _organ(SCT.Lung, LEFT),
    vocab.COLON: _organ(SCT.Colon),
    vocab.INTESTINE: _organ(SCT.SmallIntestine),
    vocab.RECTUM: _organ(SCT.Rectum),
    vocab.BLADDER: _organ(SCT.Bladder),
    vocab.PROSTATE: _organ(SCT.Prostate),
    vocab.LEFT_FEMUR_HEAD: _organ(SCT.HeadOfFemur, LEFT),
    vocab.RIGHT_FEMUR_HEAD: _organ(SCT.HeadOfFemur, RIGHT),
    vocab.CELIAC_TRUNK: _organ(SCT.CeliacAxis),
    vocab.KIDNEY_TUMOR: _lesion(SCT.Neoplasm, SCT.Kidney),
    vocab.LIVER_TUMOR: _lesion(SCT.Neoplasm, SCT.Liver),
    vocab.PANCREAS_TUMOR: _lesion(SCT.Neoplasm, SCT.Pancreas),
    vocab.HEPATIC_VESSEL_TUMOR: _lesion(SCT.Neoplasm, SCT.Liver),
    vocab.LUNG_TUMOR: _lesion(SCT.Neoplasm, SCT.Lung),
    vocab.COLON_TUMOR: _lesion(SCT.Neoplasm, SCT.Colon),
    vocab.KIDNEY_CYST: _lesion(SCT.Cyst, SCT.Kidney),
}
assert set(CLASS_CODES) == set(vocab.BY_INDEX), "every vocabulary class needs its codes"

#: Measurement concept names (TID 1419) and units, all from pydicom's dictionaries.
MEASUREMENTS: dict[str, Code] = {
    "volume": SCT.Volume,                 # 118565006
    "long_axis": SCT.LongAxis,            # 103339001
    "short_axis": SCT.ShortAxis,          # 103340004
    "diameter": SCT.Diameter,             # 81827009, with derivation Maximum for the 3-D maximum
    "maximum": SCT.Maximum,               # 56851009 (derivation)
    "mean": SCT.Mean,                     # 373098007 (derivation)
    "attenuation": DCM.AttenuationCoefficient,  # 112031, in HU
    "voxel_sum": DCM.SumOfSegmentedVoxelMethodForVolume,  # 126030 (method)
    "recist": DCM.RECIST1Point1,          # 126081 (method)
}
#: A structure the scan cuts (``scan_edges``): one qualitative evaluation per edge it reaches,
#: "Anatomy coverage incomplete" = the edge. The in-plane border has no standard code, so it
#: takes one of radmesh's own (a private "99" scheme, as DICOM PS3.16 §8 allows).
SCAN_EDGE_CONCEPT = DCM.AnatomyCoverageIncomplete  # 130576
SCAN_EDGES: dict[str, Code] = {
    "superior": SCT.Superior,            # 264217000
    "inferior": SCT.Inferior,            # 261089000
    "field of view": Code("FOV-EDGE", "99RADMESH", "Edge of the reconstructed field of view"),
}
UNITS: dict[str, Code] = {
    # UCUM "ml" is not in pydicom's UCUM table by attribute; the code and meaning follow DICOM's CID 7181 usage.
    "ml": Code("ml", "UCUM", "milliliter"),
    "mm": UCUM.Millimeter,
    "hu": UCUM.HounsfieldUnit,
}

#: Display colours (sRGB) per class, for viewers; organs muted, lesions saturated.
DISPLAY_RGB: dict[int, tuple[int, int, int]] = {
    1: (157, 108, 162), 2: (185, 102, 83), 3: (185, 102, 83), 4: (139, 150, 98), 5: (211, 171, 143),
    6: (221, 130, 101), 7: (216, 132, 105), 8: (224, 97, 76), 9: (0, 151, 206), 10: (0, 112, 165),
    11: (249, 180, 111), 12: (244, 214, 49), 13: (244, 214, 49), 14: (255, 253, 229), 15: (0, 151, 206),
    16: (197, 165, 145), 17: (197, 165, 145), 18: (204, 168, 143), 19: (205, 167, 142), 20: (182, 156, 160),
    21: (222, 154, 132), 22: (230, 158, 140), 23: (241, 214, 145), 24: (241, 214, 145), 25: (216, 101, 79),
    26: (255, 0, 0), 27: (255, 0, 255), 28: (255, 128, 0), 29: (128, 0, 255), 30: (0, 255, 0),
    31: (255, 255, 0), 32: (0, 255, 255),
}


def codes_for(class_index: int) -> ClassCodes:
    """The codes of a vocabulary class (UnknownClassError for an index outside 1..32)."""
    return CLASS_CODES[vocab.get(class_index).index]


def laterality_code(side: str | None) -> Code | None:
    """'left' / 'right' → SCT Left / Right; anything else → None."""
    return LATERALITY.get((side or "").strip().lower())
