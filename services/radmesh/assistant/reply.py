"""The assistant's reply in plain words: what was found, sizes in mm and mL, where it sits.

Lesions read like the report's dictation (:mod:`radmesh.report.sentences`, the same
sentences): *"A 16 × 12 mm hypoattenuating mass in the pancreatic tail (image 45),
volume 1.0 mL, mean attenuation 47 HU versus 104 HU in the pancreas."* What the turn asked
decides what is said: a location for "where", a count for "how many", sizes for "measure",
the volumes side by side for "compare". Organs are named with their volume. Nothing here
is a guess: a structure not found is said not to be found.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from radmesh.common import vocabulary as vocab
from radmesh.assistant.conversation import TurnPlan, join_words
from radmesh.measurement.edges import edges_phrase
from radmesh.report import sentences as S
from radmesh.report.core import lesion_matches, narrowing

# (class index) → StructureMeasurement dict, or None when not measured this turn
Structures = Mapping[int, Mapping[str, Any]]


def _ml(volume_ml: float) -> str:
    return S.volume_text(volume_ml)


def _lesion_lines(c: int, target: Mapping[str, Any], structure: Mapping[str, Any], actions: Sequence[str],
                  image: Callable[[int], int]) -> list[str]:
    lesions = list(structure.get("lesions") or [])
    where = narrowing(c, target)
    hits = [x for x in lesions if lesion_matches(target, x)]
    if not hits:
        line = S.absent_sentence(c, where)
        others = [x for x in lesions if x not in hits]
        if others:
            line += f" Elsewhere: {S.count_sentence(c, others, [image(x['long_axis_slice']) for x in others])}"
        return [line]
    images = [image(x["long_axis_slice"]) for x in hits]
    words = S.words_for(c, hits)
    wants = set(actions)
    cut = [_cut_lesion(x, n, len(hits)) for x, n in zip(hits, images) if x.get("scan_edges")]
    if wants & {"measure", "compare", "report"}:
        line = S.count_sentence(c, hits, images)
        if len(hits) == 1:
            line += f" Largest 3D diameter {hits[0]['max_diameter_mm']:.0f} mm."
        return [line, *cut]
    if "locate" in wants:
        spots = [f"{S.place(c, x) or 'an unstated place'} (image {n})" for x, n in zip(hits, images)]
        noun = words.noun if len(hits) == 1 else words.plural
        lead = f"The {words.absent}" if len(hits) == 1 else f"{S.capitalise(S.number_word(len(hits)))} {noun}"
        return [f"{lead} {'lies' if len(hits) == 1 else 'lie'} in the {join_words(spots)}.", *cut]
    if "count" in wants:
        noun = words.plural if len(hits) != 1 else f"{words.absent}"
        return [f"{S.capitalise(S.number_word(len(hits)))} {noun}{where}, the largest "
                f"{S.size_text(hits[0]['long_axis_mm'], hits[0]['short_axis_mm'])} in the "
                f"{S.place(c, hits[0]) or 'scan'} (image {images[0]}).", *cut]
    # segment only: say it was outlined and how much of it there is
    total = sum(float(x["volume_ml"]) for x in hits)
    what = f"a {words.absent}" if len(hits) == 1 else f"{S.number_word(len(hits))} {words.plural}"
    return [S.capitalise(f"{what}{where} outlined ({_ml(total)}), in the "
                         f"{join_words([S.place(c, x) or 'scan' for x in hits])}."), *cut]


def _cut_lesion(lesion: Mapping[str, Any], image_number: int, count: int) -> str:
    """A lesion the scan cuts: its sizes are what the scan holds, not the whole lesion."""
    return S.cut_lesion_sentence(lesion["scan_edges"], "It" if count == 1 else f"The one on image {image_number}")


def _organ_line(c: int, structure: Mapping[str, Any] | None, voxel_count: int, volume_ml: float,
                actions: Sequence[str], edges: Sequence[str] = ()) -> str:
    name = vocab.get(c).name
    if voxel_count == 0:
        return f"{name}: not found on this scan."
    line = f"{name}: {_ml(volume_ml)}"
    if structure is not None and set(actions) & {"measure", "compare", "report"}:
        line += f", mean attenuation {structure['hu_mean']:.0f} HU"
    if edges:
        line += S.cut_organ_clause(name, edges)
    return line + "."


def compose(plan: TurnPlan, intent: Mapping[str, Any], structures: Structures,
            counts: Mapping[int, tuple[int, float]], image: Callable[[int], int],
            report_drafted: bool = False, edges: Mapping[int, Sequence[str]] | None = None) -> str:
    """The reply of an ``answer`` plan.

    ``structures``: measurements of this turn's classes (may be empty when only segmenting);
    ``counts``: class → (voxels, mL) on the CT's grid; ``image``: slice index → image number;
    ``edges``: class → the scan edges its voxels reach (a partial scan cuts it: said, never hidden).
    """
    edges = edges or {}
    lines: list[str] = []
    for t in plan.targets:
        c = int(t["class_index"])
        n, ml = counts.get(c, (0, 0.0))
        if vocab.get(c).is_lesion:
            if c in structures:
                lines += _lesion_lines(c, t, structures[c], plan.actions, image)
            elif n:
                cut = (f" It reaches {edges_phrase(edges[c])}: the scan holds only part of it."
                       if edges.get(c) else "")
                lines.append(f"{vocab.get(c).name}: {_ml(ml)} outlined.{cut}")
            else:
                lines.append(S.absent_sentence(c, narrowing(c, t)))
        else:
            lines.append(_organ_line(c, structures.get(c), n, ml, plan.actions, edges.get(c, ())))
    if plan.compare_with:
        lines.append(_comparison(plan, counts))
    lines += plan.notes
    if report_drafted:
        lines.append("The draft report is ready (for review by a radiologist; not for diagnostic use).")
    return " ".join(lines) if lines else "Nothing to report."


def _comparison(plan: TurnPlan, counts: Mapping[int, tuple[int, float]]) -> str:
    """"Spleen 210 mL versus liver 1520 mL (the liver is 7.2 times the spleen's volume)."""
    parts = []
    for t in [*plan.targets, *plan.compare_with]:
        c = int(t["class_index"])
        parts.append((vocab.get(c).name, counts.get(c, (0, 0.0))[1]))
    text = "Side by side: " + "; ".join(f"{name} {_ml(ml) if ml else 'not found'}" for name, ml in parts) + "."
    found = [(name, ml) for name, ml in parts if ml > 0]
    if len(found) >= 2:
        big, small = max(found, key=lambda p: p[1]), min(found, key=lambda p: p[1])
        text += f" The {big[0].lower()} is {big[1] / small[1]:.1f} times the volume of the {small[0].lower()}."
    return text
