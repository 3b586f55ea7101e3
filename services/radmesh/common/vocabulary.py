"""The class vocabulary: the one list every radmesh service imports.

The 32 classes and their 1-based indices are those of the published CLIP-Driven
Universal Model (Liu et al., ICCV 2023), so its checkpoints, label files and
``organ_embedding`` rows map one-to-one onto ``CLASSES`` (row ``i`` of that table is
class index ``i + 1``). Label maps everywhere in radmesh are uint8 arrays holding
these indices, 0 being background.

Beside the names this module owns what the rest of the mesh reasons with:
synonyms and abbreviations clinicians type, which organ hosts each lesion class,
left/right pairs, and the sub-regions a location can be reported in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from radmesh.common.errors import InvalidInputError


class Kind(str, Enum):
    ORGAN = "organ"
    VESSEL = "vessel"
    LESION = "lesion"


class Laterality(str, Enum):
    NONE = "none"
    LEFT = "left"
    RIGHT = "right"


@dataclass(frozen=True)
class ClassInfo:
    """One vocabulary class.

    ``index`` is the label value in every label map; ``host`` is, for lesions, the
    index of the organ(s) that contain them (kidney tumors live in either kidney).
    """

    index: int
    name: str
    kind: Kind
    laterality: Laterality = Laterality.NONE
    host: tuple[int, ...] = ()
    synonyms: tuple[str, ...] = ()
    subregions: tuple[str, ...] = field(default=())

    @property
    def is_lesion(self) -> bool:
        return self.kind is Kind.LESION

    @property
    def slug(self) -> str:
        """A file- and metric-safe name, e.g. ``pancreas_tumor``."""
        return self.name.lower().replace(" ", "_")


SPLEEN, RIGHT_KIDNEY, LEFT_KIDNEY, GALL_BLADDER, ESOPHAGUS, LIVER = 1, 2, 3, 4, 5, 6
STOMACH, AORTA, POSTCAVA, PORTAL_SPLENIC_VEIN, PANCREAS = 7, 8, 9, 10, 11
RIGHT_ADRENAL, LEFT_ADRENAL, DUODENUM, HEPATIC_VESSEL = 12, 13, 14, 15
RIGHT_LUNG, LEFT_LUNG, COLON, INTESTINE, RECTUM, BLADDER, PROSTATE = 16, 17, 18, 19, 20, 21, 22
LEFT_FEMUR_HEAD, RIGHT_FEMUR_HEAD, CELIAC_TRUNK = 23, 24, 25
KIDNEY_TUMOR, LIVER_TUMOR, PANCREAS_TUMOR, HEPATIC_VESSEL_TUMOR = 26, 27, 28, 29
LUNG_TUMOR, COLON_TUMOR, KIDNEY_CYST = 30, 31, 32

L, R, N = Laterality.LEFT, Laterality.RIGHT, Laterality.NONE
_O, _V, _T = Kind.ORGAN, Kind.VESSEL, Kind.LESION

PANCREAS_SUBREGIONS = ("head", "body", "tail")
LIVER_SUBREGIONS = ("right lobe", "left lobe")
KIDNEY_SUBREGIONS = ("upper pole", "mid", "lower pole")
LUNG_SUBREGIONS = ("right", "left")

CLASSES: tuple[ClassInfo, ...] = (
    ClassInfo(1, "Spleen", _O, synonyms=("splenic",)),
    ClassInfo(2, "Right Kidney", _O, R, synonyms=("right renal",), subregions=KIDNEY_SUBREGIONS),
    ClassInfo(3, "Left Kidney", _O, L, synonyms=("left renal",), subregions=KIDNEY_SUBREGIONS),
    ClassInfo(4, "Gall Bladder", _O, synonyms=("gallbladder", "gb", "cholecyst")),
    ClassInfo(5, "Esophagus", _O, synonyms=("oesophagus", "esophageal", "oesophageal", "gullet")),
    ClassInfo(6, "Liver", _O, synonyms=("hepatic", "hepar"), subregions=LIVER_SUBREGIONS),
    ClassInfo(7, "Stomach", _O, synonyms=("gastric",)),
    ClassInfo(8, "Aorta", _V, synonyms=("aortic", "abdominal aorta")),
    ClassInfo(9, "Postcava", _V, synonyms=("inferior vena cava", "ivc", "vena cava", "cava")),
    ClassInfo(10, "Portal Vein and Splenic Vein", _V,
              synonyms=("portal vein", "splenic vein", "portal venous system", "pv")),
    ClassInfo(11, "Pancreas", _O, synonyms=("pancreatic",), subregions=PANCREAS_SUBREGIONS),
    ClassInfo(12, "Right Adrenal Gland", _O, R, synonyms=("right adrenal", "right suprarenal gland")),
    ClassInfo(13, "Left Adrenal Gland", _O, L, synonyms=("left adrenal", "left suprarenal gland")),
    ClassInfo(14, "Duodenum", _O, synonyms=("duodenal",)),
    ClassInfo(15, "Hepatic Vessel", _V, synonyms=("hepatic vessels", "hepatic veins", "liver vessels")),
    ClassInfo(16, "Right Lung", _O, R, synonyms=("right lung base", "right lower lobe")),
    ClassInfo(17, "Left Lung", _O, L, synonyms=("left lung base", "left lower lobe")),
    ClassInfo(18, "Colon", _O, synonyms=("large bowel", "large intestine", "colonic")),
    ClassInfo(19, "Intestine", _O, synonyms=("small bowel", "small intestine", "bowel", "ileum", "jejunum")),
    ClassInfo(20, "Rectum", _O, synonyms=("rectal",)),
    ClassInfo(21, "Bladder", _O, synonyms=("urinary bladder", "vesical")),
    ClassInfo(22, "Prostate", _O, synonyms=("prostate gland", "prostatic")),
    ClassInfo(23, "Left Head of Femur", _O, L, synonyms=("left femoral head", "left hip")),
    ClassInfo(24, "Right Head of Femur", _O, R, synonyms=("right femoral head", "right hip")),
    ClassInfo(25, "Celiac Trunk", _V, synonyms=("coeliac trunk", "celiac artery", "celiac axis")),
    ClassInfo(26, "Kidney Tumor", _T, host=(RIGHT_KIDNEY, LEFT_KIDNEY),
              synonyms=("renal tumor", "renal mass", "kidney mass", "renal cell carcinoma", "rcc",
                        "kidney cancer", "renal lesion", "kidney tumour", "renal tumour"),
              subregions=KIDNEY_SUBREGIONS),
    ClassInfo(27, "Liver Tumor", _T, host=(LIVER,),
              synonyms=("hepatic tumor", "hepatic lesion", "liver lesion", "liver mass", "hcc",
                        "hepatocellular carcinoma", "liver metastasis", "liver tumour",
                        "hepatic tumour"),
              subregions=LIVER_SUBREGIONS),
    ClassInfo(28, "Pancreas Tumor", _T, host=(PANCREAS,),
              synonyms=("pancreatic tumor", "pancreatic mass", "pancreatic lesion", "pdac",
                        "pancreatic cancer", "pancreatic adenocarcinoma", "pancreas tumour",
                        "pancreatic tumour"),
              subregions=PANCREAS_SUBREGIONS),
    ClassInfo(29, "Hepatic Vessel Tumor", _T, host=(HEPATIC_VESSEL, LIVER),
              synonyms=("hepatic vessel tumour", "vascular liver tumor", "tumor thrombus")),
    ClassInfo(30, "Lung Tumor", _T, host=(RIGHT_LUNG, LEFT_LUNG),
              synonyms=("lung nodule", "pulmonary nodule", "lung mass", "lung cancer", "lung lesion",
                        "pulmonary mass", "lung tumour", "nodule"),
              subregions=LUNG_SUBREGIONS),
    ClassInfo(31, "Colon Tumor", _T, host=(COLON,),
              synonyms=("colon cancer", "colorectal tumor", "colonic mass", "colon tumour",
                        "colorectal cancer")),
    ClassInfo(32, "Kidney Cyst", _T, host=(RIGHT_KIDNEY, LEFT_KIDNEY),
              synonyms=("renal cyst", "kidney cysts", "renal cysts", "bosniak"),
              subregions=KIDNEY_SUBREGIONS),
)

NUM_CLASSES = len(CLASSES)
BY_INDEX: dict[int, ClassInfo] = {c.index: c for c in CLASSES}
LESION_INDICES: tuple[int, ...] = tuple(c.index for c in CLASSES if c.is_lesion)

# Left/right pairs, right first: (right, left).
LEFT_RIGHT_PAIRS: tuple[tuple[int, int], ...] = (
    (RIGHT_KIDNEY, LEFT_KIDNEY),
    (RIGHT_ADRENAL, LEFT_ADRENAL),
    (RIGHT_LUNG, LEFT_LUNG),
    (RIGHT_FEMUR_HEAD, LEFT_FEMUR_HEAD),
)

# The Universal Model's text template for class prompts.
UNIVERSAL_MODEL_TEMPLATE = "A computerized tomography of a {name}"


class UnknownClassError(InvalidInputError):
    """A class index or name that is not in the vocabulary."""


def get(index: int) -> ClassInfo:
    """The class with vocabulary index ``index`` (1..32), or UnknownClassError."""
    try:
        return BY_INDEX[int(index)]
    except (KeyError, ValueError, TypeError):
        raise UnknownClassError(
            f"class index {index!r} is not in the vocabulary (valid: 1..{NUM_CLASSES})"
        ) from None


def by_name(name: str) -> ClassInfo:
    """Exact (case-insensitive) match on a class name, slug or synonym."""
    key = " ".join(name.lower().replace("_", " ").split())
    for c in CLASSES:
        if key == c.name.lower() or key in c.synonyms:
            return c
    raise UnknownClassError(f"{name!r} is not a class name or synonym in the vocabulary")


def hosted_lesions(organ_index: int) -> tuple[int, ...]:
    """Lesion classes whose host includes ``organ_index``."""
    return tuple(c.index for c in CLASSES if organ_index in c.host)


def counterpart(index: int) -> int | None:
    """The other side of a left/right pair, or None."""
    for right, left in LEFT_RIGHT_PAIRS:
        if index == right:
            return left
        if index == left:
            return right
    return None
