"""How the report words things: lesion sentences, counts, places, sizes and volumes.

Pure string functions over one lesion's measurement dict (the ``LesionMeasurement``
fields of ``radmesh.v1``: ``long_axis_mm``, ``short_axis_mm``, ``volume_ml``,
``hu_mean``, ``host_class_index``, ``host_hu_mean``, ``attenuation``, ``subregion``,
``laterality``, ``location``) and its image number. The wording follows how a
radiologist dictates a lesion::

    A 23 × 17 mm hypoattenuating mass in the pancreatic tail (image 45), volume 4.2 mL,
    mean attenuation 45 HU versus 110 HU in the pancreas.

    Three liver lesions, the largest a 31 × 24 mm hypoattenuating lesion in the right hepatic
    lobe (image 40), volume 12.1 mL, mean attenuation 40 HU versus 100 HU in the liver; the
    others measure 12 × 9 mm in the left hepatic lobe (image 52, 0.5 mL, hypoattenuating) and
    8 × 6 mm in the right hepatic lobe (image 60, 0.2 mL, isoattenuating).

Conventions:

- size: RECIST long × short axis on the axial image named, whole millimetres
  (halves up); an axis under 0.5 mm (a lesion one voxel wide) reads "<1";
- "the largest" is the first lesion of the class in the findings, which the
  measurement service numbers by decreasing volume;
- attenuation relative to the host organ only when the findings carry one (the
  measurement service leaves it empty when no host organ touches the lesion):
  no comparison is guessed; none for lung lesions (every soft-tissue nodule is
  denser than aerated lung); the lesion's own mean HU is always given;
- volumes: ≥ 100 mL whole, 1–100 mL one decimal, below 1 mL two decimals, below
  0.005 mL "<0.01";
- a lung lesion longer than 30 mm is a "mass", otherwise a "nodule" (Fleischner
  Society glossary, Hansell DM et al. Radiology 2008;246:697-722);
- a structure that reaches an edge of the scan (``scan_edges``, a partial field of
  view) is said to continue outside it, and its volume and sizes to be lower bounds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from radmesh.common import vocabulary as vocab
from radmesh.measurement.edges import edges_phrase
from radmesh.report.rules import LUNG_MASS_MIN_MM, whole

__all__ = ["LesionWords", "WORDS", "absent_sentence", "capitalise", "count_sentence", "impression_of_lesions",
           "lesion_sentence", "number_word", "place", "relative_attenuation", "size_text", "volume_text",
           "words_for"]

_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
#: In a count paragraph, at most this many other lesions are described one by one.
MAX_LISTED_OTHERS = 4


@dataclass(frozen=True)
class LesionWords:
    """Words for one lesion class.

    noun:   one lesion in a sentence ("A 23 × 17 mm hypoattenuating *mass* in ...").
    plural: several, in a count ("Three *liver lesions*, the largest ...").
    absent: what was looked for, in "No *pancreatic tumor* identified."
    """

    noun: str
    plural: str
    absent: str


WORDS: dict[int, LesionWords] = {
    vocab.KIDNEY_TUMOR: LesionWords("mass", "renal masses", "renal tumor"),
    vocab.LIVER_TUMOR: LesionWords("lesion", "liver lesions", "liver tumor"),
    vocab.PANCREAS_TUMOR: LesionWords("mass", "pancreatic masses", "pancreatic tumor"),
    vocab.HEPATIC_VESSEL_TUMOR: LesionWords("lesion", "hepatic vessel lesions", "hepatic vessel tumor"),
    vocab.LUNG_TUMOR: LesionWords("nodule", "lung nodules", "lung nodule"),
    vocab.COLON_TUMOR: LesionWords("mass", "colonic masses", "colonic tumor"),
    vocab.KIDNEY_CYST: LesionWords("cyst", "renal cysts", "renal cyst"),
}


def words_for(class_index: int, lesions: Sequence[Mapping[str, Any]] = ()) -> LesionWords:
    """The class's words; lung lesions over 30 mm are masses (and a mixed set is "lung lesions")."""
    w = WORDS.get(class_index) or LesionWords("lesion", f"{vocab.get(class_index).name.lower()}s",
                                              vocab.get(class_index).name.lower())
    if class_index == vocab.LUNG_TUMOR and any(float(x["long_axis_mm"]) > LUNG_MASS_MIN_MM for x in lesions):
        masses = all(float(x["long_axis_mm"]) > LUNG_MASS_MIN_MM for x in lesions)
        return LesionWords("mass", "lung masses" if masses else "lung lesions", w.absent)
    return w


def lesion_noun(class_index: int, lesion: Mapping[str, Any]) -> str:
    return words_for(class_index, [lesion]).noun


def capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def number_word(n: int) -> str:
    """"three" for 3; digits above ten."""
    return _NUMBERS[n] if 0 <= n < len(_NUMBERS) else str(n)


def _article(next_word: str) -> str:
    """"an" before a vowel sound: "an 8 × 6 mm", "an 11 mm", "an isoattenuating"; "a" otherwise."""
    w = next_word.lstrip("<")
    if w[:1].isdigit():
        digits = w.split()[0].split("×")[0].strip()
        number = digits.split(".")[0]
        return "an" if number.startswith("8") or number in ("11", "18") else "a"
    return "an" if w[:1].lower() in "aeiou" else "a"


def _mm(value_mm: float) -> str:
    v = whole(value_mm)
    return "<1" if v < 1 else str(v)


def size_text(long_axis_mm: float, short_axis_mm: float) -> str:
    """"23 × 17 mm" (RECIST long × short axis, whole mm)."""
    return f"{_mm(long_axis_mm)} × {_mm(short_axis_mm)} mm"


def volume_text(volume_ml: float) -> str:
    """"1520 mL", "12.1 mL", "0.18 mL", "<0.01 mL"."""
    v = float(volume_ml)
    if v >= 100:
        return f"{whole(v)} mL"
    if v >= 1:
        return f"{v:.1f} mL"
    if v >= 0.005:
        return f"{v:.2f} mL"
    return "<0.01 mL"


_KIDNEY_PART = {"upper pole": "upper pole", "mid": "interpolar region", "lower pole": "lower pole"}


def place(class_index: int, lesion: Mapping[str, Any]) -> str:
    """Where the lesion is, for "in the …": "pancreatic tail", "upper pole of the left kidney",
    "right hepatic lobe", "right lung"; the host organ's name for other classes; "" when unknown."""
    sub = str(lesion.get("subregion") or "")
    side = str(lesion.get("laterality") or "")
    if class_index == vocab.PANCREAS_TUMOR:
        return f"pancreatic {sub}" if sub in vocab.PANCREAS_SUBREGIONS else "pancreas"
    if class_index in (vocab.KIDNEY_TUMOR, vocab.KIDNEY_CYST):
        kidney = f"{side} kidney" if side in ("left", "right") else "kidney"
        part = _KIDNEY_PART.get(sub)
        return f"{part} of the {kidney}" if part else kidney
    if class_index == vocab.LIVER_TUMOR:
        return f"{sub.split()[0]} hepatic lobe" if sub in vocab.LIVER_SUBREGIONS else "liver"
    if class_index == vocab.LUNG_TUMOR:
        return f"{side} lung" if side in ("left", "right") else "lung"
    host = int(lesion.get("host_class_index") or 0)
    if host:
        return vocab.get(host).name.lower()
    location = str(lesion.get("location") or "")
    return "" if location in ("", "unknown") else location


def _in_place(class_index: int, lesion: Mapping[str, Any]) -> str:
    where = place(class_index, lesion)
    return f" in the {where}" if where else ""


def relative_attenuation(class_index: int, lesion: Mapping[str, Any]) -> str:
    """The measurement's hypo-/iso-/hyperattenuating relative to the host organ, or "".

    "" when the findings give none (no host organ) and for lung lesions: any soft-tissue
    lesion is "hyperattenuating" to aerated lung, which tells a reader nothing.
    """
    word = str(lesion.get("attenuation") or "")
    if class_index == vocab.LUNG_TUMOR or not int(lesion.get("host_class_index") or 0):
        return ""
    return word


def _hu(class_index: int, lesion: Mapping[str, Any]) -> str:
    """"mean attenuation 45 HU versus 110 HU in the pancreas" — the comparison only with a host HU."""
    text = f"mean attenuation {whole(lesion['hu_mean'])} HU"
    host = int(lesion.get("host_class_index") or 0)
    if relative_attenuation(class_index, lesion):
        text += f" versus {whole(lesion['host_hu_mean'])} HU in the {vocab.get(host).name.lower()}"
    return text


def _described(class_index: int, lesion: Mapping[str, Any], image: int) -> str:
    """"23 × 17 mm hypoattenuating mass in the pancreatic tail (image 45), volume 4.2 mL, mean ..." (no article)."""
    att = relative_attenuation(class_index, lesion)
    return (f"{size_text(lesion['long_axis_mm'], lesion['short_axis_mm'])} {att + ' ' if att else ''}"
            f"{lesion_noun(class_index, lesion)}{_in_place(class_index, lesion)} (image {image}), "
            f"volume {volume_text(lesion['volume_ml'])}, {_hu(class_index, lesion)}")


def lesion_sentence(class_index: int, lesion: Mapping[str, Any], image: int) -> str:
    """One lesion as a full sentence: "A 23 × 17 mm hypoattenuating mass in the pancreatic tail (image 45), ..."."""
    body = _described(class_index, lesion, image)
    return f"{capitalise(_article(body))} {body}."


def _other_clause(class_index: int, lesion: Mapping[str, Any], image: int) -> str:
    att = relative_attenuation(class_index, lesion)
    return (f"{size_text(lesion['long_axis_mm'], lesion['short_axis_mm'])}{_in_place(class_index, lesion)} "
            f"(image {image}, {volume_text(lesion['volume_ml'])}{', ' + att if att else ''})")


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def count_sentence(class_index: int, lesions: Sequence[Mapping[str, Any]], images: Sequence[int]) -> str:
    """Several lesions of one class: the count, the largest in full, the others briefly."""
    if len(lesions) == 1:
        return lesion_sentence(class_index, lesions[0], images[0])
    words = words_for(class_index, lesions)
    first = _described(class_index, lesions[0], images[0])
    others = [_other_clause(class_index, x, n) for x, n in
              zip(lesions[1:1 + MAX_LISTED_OTHERS], images[1:1 + MAX_LISTED_OTHERS])]
    rest = len(lesions) - 1 - len(others)
    if rest:
        others.append(f"{number_word(rest)} smaller")
    return (f"{capitalise(number_word(len(lesions)))} {words.plural}, the largest {_article(first)} {first}; "
            f"the other{'s measure' if len(lesions) > 2 else ' measures'} {_join(others)}.")


def absent_sentence(class_index: int, where: str = "") -> str:
    """"No pancreatic tumor identified." (``where``: " in the pancreatic tail" for a narrowed request)."""
    return f"No {words_for(class_index).absent} identified{where}."


def impression_of_lesions(class_index: int, lesions: Sequence[Mapping[str, Any]], images: Sequence[int]) -> str:
    """The IMPRESSION line: "23 × 17 mm hypoattenuating mass in the pancreatic tail (image 45)." or
    "Three liver lesions, the largest 31 × 24 mm in the right hepatic lobe (image 40)."."""
    first = lesions[0]
    if len(lesions) == 1:
        att = relative_attenuation(class_index, first)
        return capitalise(f"{size_text(first['long_axis_mm'], first['short_axis_mm'])} {att + ' ' if att else ''}"
                          f"{lesion_noun(class_index, first)}{_in_place(class_index, first)} (image {images[0]}).")
    words = words_for(class_index, lesions)
    return (f"{capitalise(number_word(len(lesions)))} {words.plural}, the largest "
            f"{size_text(first['long_axis_mm'], first['short_axis_mm'])}{_in_place(class_index, first)} "
            f"(image {images[0]}).")


def cut_lesion_sentence(edges: Sequence[str], which: str = "It") -> str:
    """A lesion the scan cuts: "It reaches the superior edge of the scan and continues outside it: ..."."""
    return (f"{which} reaches {edges_phrase(edges)} and continues outside it: "
            "its size and volume are lower bounds.")


def cut_organ_clause(name: str, edges: Sequence[str]) -> str:
    """An organ the scan cuts, as a parenthesis after its volume."""
    return (f" (the {name.lower()} reaches {edges_phrase(edges)} and continues outside it, "
            "so this volume is a lower bound)")
