"""Published normal ranges of organ volumes, and what the report says about a volume.

A range is stated only where a published one exists that applies to the numbers
radmesh has: a CT volume in mL, without the patient's height, weight or body
surface area (the report never receives them). Each entry names its source.

| structure | normal volume | population and method | source |
| --- | --- | --- | --- |
| Spleen (1) | 107.2–314.5 mL | 140 adults, CT for indications unrelated to the spleen, volume from contours on every slice; did not vary with age, sex, height, weight or BMI | Prassopoulos P et al. Eur Radiol 1997;7:246-248 |
| Liver (6) | none stated | liver volume scales with body surface area (e.g. Urata K et al. Hepatology 1995;21:1317-1321; Vauthey JN et al. Liver Transpl 2002;8:233-240), which the report does not receive | — |
| Kidneys (2, 3) | none stated | published volumetric references are sex-, age- and body-size-specific and mostly MRI (e.g. Dabers T et al. J Clin Med 2024;13:769) | — |

``assess(class_index, volume_ml)`` returns the :class:`VolumeAssessment` for a
structure: the range and its source when one applies, and whether the volume is
below, within or above it (limits inclusive: a volume equal to a limit is within).
"""

from __future__ import annotations

from dataclasses import dataclass

from radmesh.common import vocabulary as vocab

__all__ = ["NormalRange", "NORMAL_VOLUMES", "VolumeAssessment", "assess"]


@dataclass(frozen=True)
class NormalRange:
    """A published normal volume range, mL, with its citation and the population it describes."""

    class_index: int
    low_ml: float
    high_ml: float
    source: str
    short_source: str  # for the report text, e.g. "Prassopoulos et al. 1997"
    population: str

    def to_dict(self) -> dict:
        return {"low_ml": self.low_ml, "high_ml": self.high_ml, "source": self.source,
                "population": self.population}


PRASSOPOULOS_1997 = ("Prassopoulos P, Daskalogiannaki M, Raissaki M, Hatjidakis A, Gourtsoyiannis N. "
                     "Determination of normal splenic volume on computed tomography in relation to age, "
                     "gender and body habitus. Eur Radiol 1997;7:246-248")

NORMAL_VOLUMES: dict[int, NormalRange] = {
    vocab.SPLEEN: NormalRange(
        vocab.SPLEEN, 107.2, 314.5, PRASSOPOULOS_1997, "Prassopoulos et al. 1997",
        "140 adults at CT for indications unrelated to the spleen (range of measured volumes)"),
}


@dataclass(frozen=True)
class VolumeAssessment:
    """A structure's volume against its normal range: ``state`` is "below", "within" or "above";
    ``normal`` is None (and ``state`` None) where no published range applies."""

    volume_ml: float
    normal: NormalRange | None
    state: str | None


def assess(class_index: int, volume_ml: float) -> VolumeAssessment:
    """Compare ``volume_ml`` (mL) with the published range for ``class_index``, if there is one."""
    normal = NORMAL_VOLUMES.get(int(class_index))
    if normal is None:
        return VolumeAssessment(float(volume_ml), None, None)
    if volume_ml < normal.low_ml:
        state = "below"
    elif volume_ml > normal.high_ml:
        state = "above"
    else:
        state = "within"
    return VolumeAssessment(float(volume_ml), normal, state)
