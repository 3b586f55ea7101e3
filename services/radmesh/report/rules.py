"""Recommendations from published thresholds: one function per rule, each with its citation.

Every rule takes the measured numbers it needs (units in the argument names) and
returns a :class:`Recommendation` — the sentence for the report, its source, the
structure it concerns and, where the rule also names a finding (an aneurysm,
splenomegaly), the phrase for the IMPRESSION — or None when its thresholds are not
reached. The report core calls a rule only when the findings hold its inputs: no
aortic rule without an aortic diameter, no nodule rule without a lung nodule.

Rounding: diameters are compared after rounding to the nearest whole millimetre
(halves up), as the guidelines' size bands are written in whole millimetres
(Fleischner: "average of long and short axes, rounded to the nearest millimeter");
attenuation after rounding to the nearest whole HU. Volumes are compared as measured.

| rule | input | thresholds | source |
| --- | --- | --- | --- |
| :func:`abdominal_aortic_aneurysm` | max abdominal aortic diameter, mm | 26–29 ectatic (rescreen 10 y); ≥ 30 aneurysm: 30–39 surveillance every 3 y, 40–49 every 12 mo, 50–54 every 6 mo; ≥ 55 vascular surgery referral | SVS 2018 (:data:`SVS_AAA_2018`) |
| :func:`fleischner_solid_nodules` | each lung nodule's long and short axis, mm; patient age, y | mean diameter < 6, 6–8, > 8 mm; single vs multiple; not under 35 y | Fleischner 2017 (:data:`FLEISCHNER_2017`) |
| :func:`bosniak_renal_cyst` | cyst mean attenuation, HU | −9 to 20 HU simple fluid (Bosniak I/II); 21–30 HU Bosniak II at portal venous phase; otherwise not characterised | Bosniak 2019 (:data:`BOSNIAK_2019`) |
| :func:`splenomegaly` | spleen volume, mL | > 314.5 mL | Prassopoulos 1997 (:data:`radmesh.report.normals.PRASSOPOULOS_1997`) |
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from radmesh.common import vocabulary as vocab
from radmesh.report.normals import NORMAL_VOLUMES, PRASSOPOULOS_1997

__all__ = [
    "BOSNIAK_2019", "FLEISCHNER_2017", "SVS_AAA_2018", "LUNG_MASS_MIN_MM", "Nodule", "Recommendation",
    "abdominal_aortic_aneurysm", "bosniak_renal_cyst", "fleischner_solid_nodules", "splenomegaly",
    "whole", "RULES",
]

SVS_AAA_2018 = ("Chaikof EL et al. The Society for Vascular Surgery practice guidelines on the care of "
                "patients with an abdominal aortic aneurysm. J Vasc Surg 2018;67:2-77 (SVS)")
FLEISCHNER_2017 = ("MacMahon H et al. Guidelines for management of incidental pulmonary nodules detected on "
                   "CT images: from the Fleischner Society 2017. Radiology 2017;284:228-243")
BOSNIAK_2019 = ("Silverman SG et al. Bosniak classification of cystic renal masses, version 2019: an update "
                "proposal and needs assessment. Radiology 2019;292:475-488")
#: Above this diameter a pulmonary opacity is a mass, not a nodule (Fleischner Society glossary:
#: Hansell DM et al. Radiology 2008;246:697-722); the nodule guideline does not cover masses.
LUNG_MASS_MIN_MM = 30.0
FLEISCHNER_MIN_AGE_YEARS = 35
FLEISCHNER_SCOPE = ("The Fleischner 2017 guideline applies to incidental nodules in adults aged 35 years or "
                    "older without known cancer or immunosuppression, not to lung cancer screening; "
                    "it assumes a solid nodule, to be confirmed at review")


@dataclass(frozen=True)
class Recommendation:
    """One rule's output.

    rule:        the rule's function name (stable id).
    text:        the recommendation, one or two sentences.
    source:      the citation.
    class_index: the structure it concerns (vocabulary index).
    lesion_id:   the lesion it concerns (1-based id within its class), 0 for a whole structure.
    impression:  the finding the rule names, for the IMPRESSION ("" when it names none).
    """

    rule: str
    text: str
    source: str
    class_index: int
    lesion_id: int = 0
    impression: str = ""

    def to_dict(self) -> dict:
        return {"rule": self.rule, "text": self.text, "source": self.source, "class_index": self.class_index,
                "lesion_id": self.lesion_id, "impression": self.impression}


def whole(x: float) -> int:
    """Round to the nearest integer, halves up (29.5 mm → 30 mm), unlike Python's round-half-even."""
    return int(math.floor(float(x) + 0.5))


# ---- aorta -------------------------------------------------------------------------------

def abdominal_aortic_aneurysm(max_diameter_mm: float) -> Recommendation | None:
    """SVS 2018 on the maximal abdominal aortic diameter (mm, outer wall to outer wall).

    ≥ 30 mm is an abdominal aortic aneurysm; surveillance imaging every 3 years at
    30–39 mm, every 12 months at 40–49 mm, every 6 months at 50–54 mm; elective repair
    of a fusiform aneurysm ≥ 55 mm in a patient at low or acceptable surgical risk.
    26–29 mm (above 2.5 cm, below 3 cm): rescreening after 10 years. ≤ 25 mm: None.
    """
    d = whole(max_diameter_mm)
    aaa = f"Abdominal aortic aneurysm, maximal diameter {d} mm."
    if d >= 55:
        return Recommendation("abdominal_aortic_aneurysm",
                              f"Abdominal aortic aneurysm of {d} mm (55 mm or more): refer to vascular surgery; "
                              "the SVS recommends elective repair of a fusiform aneurysm of 55 mm or more in a "
                              "patient at low or acceptable surgical risk.",
                              SVS_AAA_2018, vocab.AORTA, 0, aaa)
    for low, interval in ((50, "6-month"), (40, "12-month"), (30, "3-year")):
        if d >= low:
            high = 54 if low == 50 else low + 9
            return Recommendation("abdominal_aortic_aneurysm",
                                  f"Abdominal aortic aneurysm of {d} mm ({low}–{high} mm): surveillance imaging "
                                  f"at {interval} intervals.", SVS_AAA_2018, vocab.AORTA, 0, aaa)
    if d > 25:
        return Recommendation("abdominal_aortic_aneurysm",
                              f"Abdominal aorta of {d} mm, above 25 mm but below the 30 mm aneurysm threshold: "
                              "rescreening after 10 years.", SVS_AAA_2018, vocab.AORTA, 0,
                              f"Ectatic abdominal aorta, maximal diameter {d} mm.")
    return None


# ---- lung nodules ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Nodule:
    """A lung lesion's id and RECIST axes (mm) on its axial slice."""

    lesion_id: int
    long_axis_mm: float
    short_axis_mm: float

    @property
    def mean_diameter_mm(self) -> int:
        """Fleischner size: average of long and short axes, rounded to the nearest millimetre."""
        return whole((self.long_axis_mm + self.short_axis_mm) / 2.0)


def fleischner_solid_nodules(nodules: Sequence[Nodule], patient_age_years: int | None) -> Recommendation | None:
    """Fleischner Society 2017, solid nodules, single or multiple (the largest guides management).

    Size = mean of long and short axis, whole mm. Single: < 6 mm no routine follow-up
    (high risk: optional CT at 12 months); 6–8 mm CT at 6–12 months, then consider
    (high risk: then) CT at 18–24 months; > 8 mm consider CT at 3 months, PET/CT or
    tissue sampling. Multiple: < 6 mm as single; ≥ 6 mm CT at 3–6 months, then consider
    (high risk: then) CT at 18–24 months. Lesions over 30 mm are masses and excluded;
    None when no nodule is left. Under 35 years the guideline does not apply and the
    recommendation says so.
    """
    nods = [n for n in nodules if n.long_axis_mm <= LUNG_MASS_MIN_MM]
    if not nods:
        return None
    guide = max(nods, key=lambda n: (n.mean_diameter_mm, n.long_axis_mm, -n.lesion_id))
    size = guide.mean_diameter_mm
    if patient_age_years is not None and patient_age_years < FLEISCHNER_MIN_AGE_YEARS:
        return Recommendation("fleischner_solid_nodules",
                              f"Patient aged {patient_age_years} years: the Fleischner 2017 guideline does not "
                              "apply under 35 years; follow-up of the lung nodule"
                              f"{'s' if len(nods) > 1 else ''} is a clinical decision.",
                              FLEISCHNER_2017, vocab.LUNG_TUMOR, guide.lesion_id)
    if len(nods) == 1:
        what = f"Single solid nodule of {size} mm"
        if size < 6:
            advice = "no routine follow-up (high-risk patient: optional CT at 12 months)"
        elif size <= 8:
            advice = ("CT at 6–12 months, then consider CT at 18–24 months "
                      "(high-risk patient: CT at 6–12 months, then CT at 18–24 months)")
        else:
            advice = "consider CT at 3 months, PET/CT or tissue sampling"
    else:
        what = f"Multiple solid nodules ({len(nods)}), the largest {size} mm, guiding management"
        if size < 6:
            advice = "no routine follow-up (high-risk patient: optional CT at 12 months)"
        else:
            advice = ("CT at 3–6 months, then consider CT at 18–24 months "
                      "(high-risk patient: CT at 3–6 months, then CT at 18–24 months)")
    band = "< 6 mm" if size < 6 else "6–8 mm" if size <= 8 else "> 8 mm"
    age = f" Patient aged {patient_age_years} years." if patient_age_years is not None else ""
    return Recommendation("fleischner_solid_nodules",
                          f"{what} (mean of long and short axes; {band}): {advice}.{age} {FLEISCHNER_SCOPE}.",
                          FLEISCHNER_2017, vocab.LUNG_TUMOR, guide.lesion_id)


# ---- renal cysts ---------------------------------------------------------------------------------

def bosniak_renal_cyst(lesion_id: int, hu_mean: float) -> Recommendation:
    """Bosniak 2019 by the cyst's mean attenuation (HU, whole).

    −9 to 20 HU (simple fluid): Bosniak I or II when homogeneous with a thin smooth
    wall and no septa, calcification or enhancing component — no follow-up. 21–30 HU:
    Bosniak II when homogeneous at portal venous phase — no follow-up. Otherwise the
    attenuation does not meet those criteria: renal mass protocol CT or MRI.
    """
    h = whole(hu_mean)
    if -9 <= h <= 20:
        text = (f"Renal cyst of mean attenuation {h} HU, in the simple-fluid range (−9 to 20 HU): Bosniak I or II "
                "if homogeneous with a thin (2 mm or less) smooth wall and no septa, calcification or enhancing "
                "component at review; no follow-up is needed.")
    elif 21 <= h <= 30:
        text = (f"Renal cyst of mean attenuation {h} HU (21–30 HU): Bosniak II if this is a portal venous phase "
                "study and the mass is homogeneous with a thin smooth wall, needing no follow-up; otherwise "
                "characterise with renal mass protocol CT or MRI.")
    else:
        text = (f"Renal cystic lesion of mean attenuation {h} HU, outside the attenuation of a Bosniak I or II "
                "mass at portal venous CT (−9 to 30 HU): characterise with renal mass protocol CT or MRI.")
    return Recommendation("bosniak_renal_cyst", text, BOSNIAK_2019, vocab.KIDNEY_CYST, int(lesion_id))


# ---- spleen -----------------------------------------------------------------------------------------

def splenomegaly(spleen_volume_ml: float) -> Recommendation | None:
    """Splenomegaly when the splenic volume (mL) exceeds the upper limit of the normal range, 314.5 mL."""
    upper = NORMAL_VOLUMES[vocab.SPLEEN].high_ml
    if not spleen_volume_ml > upper:
        return None
    v = whole(spleen_volume_ml)
    return Recommendation("splenomegaly",
                          f"Splenic volume {v} mL, above the upper limit of the normal range ({upper:g} mL): "
                          "splenomegaly; correlate clinically (for example portal hypertension, haematological "
                          "or infectious disease).", PRASSOPOULOS_1997, vocab.SPLEEN, 0,
                          f"Splenomegaly (splenic volume {v} mL).")


#: rule id → (function, citation), for documentation and checks.
RULES = {
    "abdominal_aortic_aneurysm": (abdominal_aortic_aneurysm, SVS_AAA_2018),
    "fleischner_solid_nodules": (fleischner_solid_nodules, FLEISCHNER_2017),
    "bosniak_renal_cyst": (bosniak_renal_cyst, BOSNIAK_2019),
    "splenomegaly": (splenomegaly, PRASSOPOULOS_1997),
}
