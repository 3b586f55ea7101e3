"""The report core: findings, the clinician's request and the study → a draft structured report.

``generate(findings, intent, study, model, ...)`` is plain Python (no gRPC) and
returns a :class:`Report`: the report as text (FINDINGS, IMPRESSION,
RECOMMENDATIONS, PROVENANCE) and as a JSON document (schema in docs/report.md),
the recommendations with their sources, and the provenance line. The CLI calls it
in-process; ``server.py`` adapts it to ``ReportService.Generate``; both hand it the
same dicts, so both produce the same report.

Inputs, each a plain dict with the proto's field names:

- ``findings``: ``radmesh.measurement.core.measure(...).to_dict()`` (= ``MeasureResponse``);
- ``intent``: ``radmesh.text.parse.parse(prompt).to_dict()`` (= ``Intent``, with
  actions and sides as lower-case words);
- ``study``: ``StudyMetadata`` fields (all optional; ``source_dicom_headers`` as bytes);
- ``model``: ``ModelInfo`` fields (all optional), with ``validated_classes`` given apart;
- ``labels``: the label map the findings were measured on (optional). With it the
  findings are checked against it (grid and every structure's voxel count) and
  the abdominal aortic diameter is measured (:mod:`radmesh.report.aorta`); without
  it the aortic rule cannot run and the report says so.

What it says:

- every structure in the findings, grouped by organ (liver, pancreas, spleen,
  kidneys, aorta, lungs, colon, then the other segmented structures), each lesion
  as a radiologist's sentence (:mod:`radmesh.report.sentences`), several lesions of a
  class as a count with the largest in full; a lesion class measured without a
  lesion as "No … identified." — in particular every lesion class the request
  named and the findings lack a lesion of (narrowed to the requested side or
  sub-region when the request was);
- organ volumes, against a published normal range where one exists
  (:mod:`radmesh.report.normals`);
- recommendations from published thresholds (:mod:`radmesh.report.rules`), only
  where the findings hold a rule's inputs;
- image numbers: the 1-based position of the long-axis slice in the volume as
  stored (slice index + 1), or — when the study carries the source DICOM headers
  and they cover the findings' grid — the Instance Number of that source slice;
  the report states which;
- provenance: model id and version, embedding backend, the classes the model is
  validated on (and any reported class outside them), radmesh's version, the
  generation time (UTC, ISO 8601), and that the report is a draft for review by a
  radiologist, not for diagnostic use until validated on real CT.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

import numpy as np
from google.protobuf import json_format

from radmesh import __version__
from radmesh.common import vocabulary as vocab
from radmesh.common.errors import InvalidInputError
from radmesh.common.intent_wire import ACTIONS
from radmesh.common.protojson import from_plain, to_plain
from radmesh.common.transport import geometry_from_proto
from radmesh.common.volume import Geometry, GeometryError, Volume
from radmesh.report import aorta as aorta_mod
from radmesh.report import rules
from radmesh.report import sentences as S
from radmesh.report.normals import assess
from radmesh.v1 import common_pb2, measurement_pb2, report_pb2

__all__ = ["DRAFT_NOTICE", "SCHEMA", "Report", "generate", "label_array", "normalise_findings",
           "normalise_intent", "normalise_model", "normalise_study"]

SCHEMA = "radmesh.report/1"
DRAFT_NOTICE = ("DRAFT for review by a radiologist; not for diagnostic use until validated on real CT.")
_SIDES = ("", "left", "right", "both")
STUDY_FIELDS = tuple(f.name for f in report_pb2.StudyMetadata.DESCRIPTOR.fields)
MODEL_FIELDS = tuple(f.name for f in common_pb2.ModelInfo.DESCRIPTOR.fields)

#: FINDINGS paragraphs in dictation order: (heading, organs whose volume is stated, lesion classes).
SECTIONS: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = (
    ("Liver", (vocab.LIVER,), (vocab.LIVER_TUMOR, vocab.HEPATIC_VESSEL_TUMOR)),
    ("Pancreas", (vocab.PANCREAS,), (vocab.PANCREAS_TUMOR,)),
    ("Spleen", (vocab.SPLEEN,), ()),
    ("Kidneys", (vocab.RIGHT_KIDNEY, vocab.LEFT_KIDNEY), (vocab.KIDNEY_TUMOR, vocab.KIDNEY_CYST)),
    ("Aorta", (), ()),  # the diameter, when measured
    ("Lungs", (), (vocab.LUNG_TUMOR,)),
    ("Colon", (), (vocab.COLON_TUMOR,)),
)
_SECTION_ORGANS = {c for _, organs, _ in SECTIONS for c in organs}
_LESION_ORDER = [c for _, _, lesions in SECTIONS for c in lesions]


def _assessment(a: Any, edges: Sequence[str]) -> str | None:
    """The volume against its normal range; for an organ the scan cuts (a lower bound) only "above"."""
    if a is None or (edges and a.state != "above"):
        return None
    return a.state


def _dictation_rank(class_index: int) -> tuple[int, int]:
    """Lesion classes in FINDINGS order (liver, pancreas, kidneys, lungs, colon), then by index."""
    return (_LESION_ORDER.index(class_index), 0) if class_index in _LESION_ORDER else (len(_LESION_ORDER), class_index)


@dataclass(frozen=True)
class Report:
    """A generated report: ``text``, ``data`` (the JSON document), its recommendations and provenance line."""

    text: str
    data: dict[str, Any]
    recommendations: tuple[rules.Recommendation, ...]
    provenance: str

    @property
    def json_text(self) -> str:
        """``data`` as the JSON written to report.json and sent in ``Report.json``."""
        return json.dumps(self.data, indent=2, ensure_ascii=False) + "\n"


# ---- inputs -----------------------------------------------------------------------------------

def normalise_findings(findings: Any) -> dict[str, Any]:
    """Findings (a MeasureResponse or its dict) as a plain dict with every proto field, checked."""
    if isinstance(findings, measurement_pb2.MeasureResponse):
        msg = findings
    elif isinstance(findings, Mapping):
        try:
            msg = from_plain(dict(findings), measurement_pb2.MeasureResponse())
        except (json_format.ParseError, TypeError, ValueError) as e:
            raise InvalidInputError(f"findings are not a MeasureResponse: {e}") from None
    else:
        raise InvalidInputError(f"findings must be a MeasureResponse dict, got {type(findings).__name__}")
    out = to_plain(msg)
    if not out["structures"]:
        raise InvalidInputError("findings hold no structures: measure the label map first")
    seen: set[int] = set()
    for s in out["structures"]:
        info = vocab.get(s["class_index"])  # UnknownClassError names the index
        if info.index in seen:
            raise InvalidInputError(f"findings list {info.name} (class {info.index}) twice")
        seen.add(info.index)
        s["name"], s["kind"] = info.name, info.kind.value
        if s["lesions"] and not info.is_lesion:
            raise InvalidInputError(f"findings give lesions for {info.name}, which is not a lesion class")
        for lesion in s["lesions"]:
            for key in ("volume_ml", "long_axis_mm", "short_axis_mm", "max_diameter_mm", "hu_mean", "host_hu_mean"):
                if not math.isfinite(lesion[key]):
                    raise InvalidInputError(f"findings: {info.name} lesion {lesion['id']} has {key} = {lesion[key]}")
            if lesion["host_class_index"]:
                vocab.get(lesion["host_class_index"])
    grid = out.get("grid")
    if not grid or len(grid["shape_zyx"]) != 3:
        raise InvalidInputError("findings lack the grid they were measured on (grid.shape_zyx)")
    nz = grid["shape_zyx"][0]
    for s in out["structures"]:
        for lesion in s["lesions"]:
            if not 0 <= lesion["long_axis_slice"] < nz:
                raise InvalidInputError(f"findings: {s['name']} lesion {lesion['id']} has long_axis_slice "
                                        f"{lesion['long_axis_slice']}, outside the grid's {nz} slices")
    return out


def normalise_intent(intent: Any) -> dict[str, Any]:
    """The request as ``{"targets": [{class_index, name, laterality, subregion}], "actions", "if_any"}``.

    Accepts ``Intent.to_dict()`` (actions and sides as words). An unsupported request
    (nothing in the vocabulary) is refused, naming the phrase.
    """
    if not isinstance(intent, Mapping):
        raise InvalidInputError(f"intent must be a dict (Intent.to_dict()), got {type(intent).__name__}")
    if intent.get("unsupported"):
        near = ", ".join(str(s.get("name", s.get("class_index"))) for s in intent.get("suggestions") or [])
        raise InvalidInputError(f"nothing to report: {intent.get('unsupported_phrase') or 'the request'!r} is not in "
                                "the vocabulary" + (f" (nearest: {near})" if near else ""))
    targets = []
    for t in intent.get("targets") or []:
        if not isinstance(t, Mapping) or "class_index" not in t:
            raise InvalidInputError(f"intent target {t!r} has no class_index")
        info = vocab.get(t["class_index"])
        side = str(t.get("laterality") or "")
        if side not in _SIDES:
            raise InvalidInputError(f"intent target {info.name}: laterality {side!r} is not one of left, right, both")
        sub = str(t.get("subregion") or "")
        targets.append({"class_index": info.index, "name": info.name, "laterality": side, "subregion": sub})
    actions = [str(a) for a in intent.get("actions") or []]
    bad = [a for a in actions if a not in ACTIONS]
    if bad:
        raise InvalidInputError(f"intent actions {bad} are not among {', '.join(ACTIONS)}")
    if_any = intent.get("if_any", False)
    if not isinstance(if_any, bool):
        raise InvalidInputError(f"intent if_any must be true or false, got {if_any!r}")
    return {"targets": targets, "actions": actions, "if_any": if_any}


def normalise_study(study: Mapping[str, Any] | None) -> dict[str, Any]:
    """StudyMetadata fields with "" / [] for the missing ones; unknown keys and bad dates refused."""
    study = dict(study or {})
    unknown = sorted(set(study) - set(STUDY_FIELDS))
    if unknown:
        raise InvalidInputError(f"study has unknown fields {unknown}; known: {', '.join(STUDY_FIELDS)}")
    out: dict[str, Any] = {}
    for name in STUDY_FIELDS:
        v = study.get(name)
        if name == "source_dicom_headers":
            headers = list(v or [])
            if not all(isinstance(h, (bytes, bytearray)) for h in headers):
                raise InvalidInputError("study.source_dicom_headers must be DICOM files as bytes")
            out[name] = [bytes(h) for h in headers]
        else:
            if v is not None and not isinstance(v, str):
                raise InvalidInputError(f"study.{name} must be text, got {type(v).__name__}")
            out[name] = v or ""
    for name in ("patient_birth_date", "study_date"):
        if out[name]:
            _parse_da(out[name], f"study.{name}")
    return out


def normalise_model(model: Mapping[str, Any] | None) -> dict[str, str]:
    """ModelInfo fields with "" for the missing ones; unknown keys refused."""
    model = dict(model or {})
    unknown = sorted(set(model) - set(MODEL_FIELDS))
    if unknown:
        raise InvalidInputError(f"model has unknown fields {unknown}; known: {', '.join(MODEL_FIELDS)}")
    return {name: str(model.get(name) or "") for name in MODEL_FIELDS}


def _parse_da(text: str, what: str) -> date:
    try:
        if len(text) != 8 or not text.isdigit():
            raise ValueError
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise InvalidInputError(f"{what} must be a DICOM date YYYYMMDD, got {text!r}") from None


def patient_age_years(study: Mapping[str, Any]) -> int | None:
    """Whole years between birth date and study date (DICOM DA), or None if either is missing."""
    if not study.get("patient_birth_date") or not study.get("study_date"):
        return None
    born = _parse_da(study["patient_birth_date"], "study.patient_birth_date")
    seen = _parse_da(study["study_date"], "study.study_date")
    years = seen.year - born.year - ((seen.month, seen.day) < (born.month, born.day))
    if years < 0:
        raise InvalidInputError("study.patient_birth_date is after study.study_date")
    return years


def label_array(labels: Volume) -> np.ndarray:
    """The label map as uint8 class indices, refused exactly as the measurement service refuses it."""
    from radmesh.common import labels as label_maps

    return label_maps.label_array(labels.array)


def check_labels(findings: Mapping[str, Any], labels: Volume) -> np.ndarray:
    """uint8 labels after checking the findings were measured on them (grid, every voxel count)."""
    grid = geometry_from_proto(from_plain(findings["grid"], common_pb2.Geometry()))
    try:
        grid.require_match(labels.geometry, what="label map", ref="findings")
    except GeometryError as e:
        raise InvalidInputError(f"findings do not match the label map: {e}") from None
    lab = label_array(labels)
    counts = np.bincount(lab.ravel(), minlength=vocab.NUM_CLASSES + 1)
    for s in findings["structures"]:
        if int(counts[s["class_index"]]) != int(s["voxel_count"]):
            raise InvalidInputError(
                f"findings do not match the label map: {s['name']} has {s['voxel_count']} voxels in the "
                f"findings but {int(counts[s['class_index']])} in the label map")
    return lab


# ---- image numbers -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageNumbering:
    """Image number of each axial slice k; ``scheme`` "slice_index" (k + 1) or "instance_number"."""

    numbers: tuple[int, ...]
    scheme: str
    description: str

    def __call__(self, k: int) -> int:
        return self.numbers[k]


def image_numbering(study: Mapping[str, Any], grid: Geometry) -> ImageNumbering:
    """Slice index + 1, or the source slices' Instance Numbers when the study's DICOM headers cover the grid."""
    nz = grid.shape_zyx[0]
    default = ImageNumbering(tuple(range(1, nz + 1)), "slice_index",
                             "image numbers are the 1-based position of the axial slice in the volume as stored "
                             "(image 1 = first stored slice)")
    headers = study.get("source_dicom_headers") or []
    if not headers:
        return default
    import pydicom

    positions, numbers = [], []
    for n, raw in enumerate(headers):
        try:
            ds = pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True, force=True)
            positions.append([float(v) for v in ds.ImagePositionPatient])
            numbers.append(int(ds.InstanceNumber) if "InstanceNumber" in ds and ds.InstanceNumber != "" else None)
        except Exception as e:  # noqa: BLE001 - any unreadable header is the caller's input error
            raise InvalidInputError(f"study.source_dicom_headers[{n}] is not a readable CT slice header "
                                    f"({type(e).__name__}: {e})") from None
    if len(headers) != nz:
        raise InvalidInputError(f"study carries {len(headers)} source DICOM headers but the findings' grid has "
                                f"{nz} slices")
    # Match each grid slice to the header at its position (not by list order): the first voxel
    # centre of slice k is the slice's Image Position (Patient).
    first = grid.to_lps(np.array([[k, 0, 0] for k in range(nz)], dtype=np.float64))
    dist = np.linalg.norm(first[:, None, :] - np.asarray(positions)[None, :, :], axis=2)
    match = dist.argmin(axis=1)
    tol = 0.5 * min(grid.spacing_xyz_mm)
    if len(set(match.tolist())) != nz or float(dist[np.arange(nz), match].max()) > tol:
        raise InvalidInputError("study.source_dicom_headers do not lie on the findings' grid (Image Position "
                                "(Patient) differs from the slice positions)")
    inst = [numbers[m] for m in match]
    if any(v is None for v in inst):
        return default
    return ImageNumbering(tuple(int(v) for v in inst), "instance_number",
                          "image numbers are the Instance Number (0020,0013) of the source CT slice")


# ---- the report -------------------------------------------------------------------------------------

def _utc_iso(now: datetime | None) -> str:
    t = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return t.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _da_text(da: str) -> str:
    return f"{da[:4]}-{da[4:6]}-{da[6:]}" if da else ""


def lesion_matches(target: Mapping[str, Any], lesion: Mapping[str, Any]) -> bool:
    """Whether a lesion lies where a narrowed request asked (side, sub-region)."""
    side = target["laterality"]
    if side in ("left", "right") and lesion["laterality"] != side:
        return False
    return not target["subregion"] or lesion["subregion"] == target["subregion"]


def narrowing(class_index: int, target: Mapping[str, Any]) -> str:
    """" in the pancreatic tail" for a request narrowed to a side or sub-region; "" otherwise."""
    if not target["subregion"] and target["laterality"] not in ("left", "right"):
        return ""
    where = S.place(class_index, {"subregion": target["subregion"], "laterality": target["laterality"],
                                  "host_class_index": 0, "location": ""})
    return f" in the {where}" if where else ""


class _Builder:
    """Assembles one report from normalised inputs (one instance per call)."""

    def __init__(self, findings: dict[str, Any], intent: dict[str, Any], study: dict[str, Any],
                 model: dict[str, str], validated: tuple[int, ...] | None, lab: np.ndarray | None,
                 generated_at: str):
        self.f, self.intent, self.study, self.model, self.validated = findings, intent, study, model, validated
        self.grid = geometry_from_proto(from_plain(findings["grid"], common_pb2.Geometry()))
        self.by_class = {s["class_index"]: s for s in findings["structures"]}
        self.requested = {t["class_index"] for t in intent["targets"]}
        missing = [t["name"] for t in intent["targets"] if t["class_index"] not in self.by_class]
        if missing:
            raise InvalidInputError(
                f"the request names {', '.join(dict.fromkeys(missing))} but the findings do not cover "
                f"{'it' if len(set(missing)) == 1 else 'them'}; measure every requested class (an absent class "
                "is measured as volume 0)")
        self.images = image_numbering(study, self.grid)
        self.age = patient_age_years(study)
        self.lab = lab
        self.generated_at = generated_at
        self.recs: list[rules.Recommendation] = []
        self.aorta = self._aorta()

    # facts
    def _aorta(self) -> dict[str, Any] | None:
        s = self.by_class.get(vocab.AORTA)
        if s is None or not s["voxel_count"]:
            return None
        if self.lab is None:
            return {"measured": False, "note": "no label map was sent, so the diameter was not measured",
                    "max_diameter_mm": None, "slice_index": None, "image_number": None, "region": None,
                    "method": None}
        d = aorta_mod.abdominal_aortic_diameter(self.lab, self.grid)
        if d is None:
            return {"measured": False, "note": "no aortic section lies below the lung bases",
                    "max_diameter_mm": None, "slice_index": None, "image_number": None, "region": None,
                    "method": None}
        return {"measured": True, "note": "", "max_diameter_mm": d.diameter_mm, "slice_index": d.slice_index,
                "image_number": self.images(d.slice_index), "region": d.region,
                "method": "largest minimum caliper width (voxel edges) of the axial sections"}

    def _lesion_entry(self, c: int, lesion: dict[str, Any], targets: list[dict[str, Any]]) -> dict[str, Any]:
        image = self.images(lesion["long_axis_slice"])
        host = lesion["host_class_index"]
        return {
            "id": lesion["id"],
            "noun": S.lesion_noun(c, lesion),
            "place": S.place(c, lesion),
            "location": lesion["location"],
            "subregion": lesion["subregion"],
            "laterality": lesion["laterality"],
            "long_axis_mm": lesion["long_axis_mm"],
            "short_axis_mm": lesion["short_axis_mm"],
            "size_text": S.size_text(lesion["long_axis_mm"], lesion["short_axis_mm"]),
            "slice_index": lesion["long_axis_slice"],
            "image_number": image,
            "max_diameter_mm": lesion["max_diameter_mm"],
            "volume_ml": lesion["volume_ml"],
            "hu_mean": lesion["hu_mean"],
            "host_class_index": host,
            "host": vocab.get(host).name if host else "",
            "host_hu_mean": lesion["host_hu_mean"] if host else None,
            "attenuation": S.relative_attenuation(c, lesion) or None,
            "matches_request": any(lesion_matches(t, lesion) for t in targets),
            "sentence": S.lesion_sentence(c, lesion, image),
            "scan_edges": list(lesion["scan_edges"]),
        }

    def structures(self) -> list[dict[str, Any]]:
        out = []
        for s in self.f["structures"]:
            c = s["class_index"]
            targets = [t for t in self.intent["targets"] if t["class_index"] == c]
            entry: dict[str, Any] = {
                "class_index": c, "name": s["name"], "kind": s["kind"], "requested": bool(targets),
                "voxel_count": s["voxel_count"], "volume_ml": s["volume_ml"],
                "hu_mean": s["hu_mean"] if s["voxel_count"] else None,
                "scan_edges": list(s["scan_edges"]),
            }
            if s["kind"] == vocab.Kind.LESION.value:
                lesions = [self._lesion_entry(c, x, targets) for x in s["lesions"]]
                entry.update(found=bool(lesions), count=len(lesions), lesions=lesions,
                             below_size_threshold=bool(s["voxel_count"]) and not lesions)
            else:
                a = assess(c, s["volume_ml"]) if s["voxel_count"] else None
                entry.update(found=bool(s["voxel_count"]),
                             normal_range=a.normal.to_dict() if a and a.normal else None,
                             volume_assessment=_assessment(a, s["scan_edges"]))
            out.append(entry)
        return out

    # wording
    def _organ_text(self, c: int, entry: dict[str, Any], with_name: bool) -> str:
        name = entry["name"].lower() if with_name else ""
        if not entry["found"]:
            return f"{name + ' ' if name else ''}not identified in the label map"
        text = f"{name + ' ' if name else ''}volume {S.volume_text(entry['volume_ml'])}"
        a = assess(c, entry["volume_ml"])
        state = entry["volume_assessment"]  # structures() already weighed the scan's edges
        if a.normal is not None and state:
            rng = f"{a.normal.low_ml:g}–{a.normal.high_ml:g} mL, {a.normal.short_source}"
            text += {"within": f", within the normal range ({rng})",
                     "above": f", above the normal range ({rng})",
                     "below": f", below the normal range ({rng})"}[state]
        if entry["scan_edges"]:
            text += S.cut_organ_clause(entry["name"], entry["scan_edges"])
        return text

    def _lesion_statements(self, c: int, entry: dict[str, Any]) -> list[str]:
        lesions = self.by_class[c]["lesions"]
        out = []
        if lesions:
            images = [self.images(x["long_axis_slice"]) for x in lesions]
            out.append(S.count_sentence(c, lesions, images))
            out += [S.cut_lesion_sentence(x["scan_edges"], "It" if len(lesions) == 1 else
                                          f"The {S.lesion_noun(c, x)} on image {n}")
                    for x, n in zip(lesions, images) if x["scan_edges"]]
        else:
            out.append(S.absent_sentence(c))
            if entry["below_size_threshold"]:
                out[-1] = out[-1][:-1] + (f" (labelled voxels of {entry['name']} form no component of "
                                          f"{self.f['min_lesion_mm3']:g} mm³ or more).")
        for t in self.intent["targets"]:
            where = narrowing(c, t)
            if t["class_index"] == c and where and lesions and not any(lesion_matches(t, x) for x in lesions):
                out.append(S.absent_sentence(c, where))
        return out

    def findings_paragraphs(self, entries: dict[int, dict[str, Any]]) -> list[dict[str, str]]:
        paragraphs = []
        for heading, organs, lesion_classes in SECTIONS:
            parts: list[str] = []
            present_organs = [c for c in organs if c in entries]
            if heading == "Kidneys" and present_organs:
                parts.append(S.capitalise("; ".join(self._organ_text(c, entries[c], True)
                                                    for c in present_organs)) + ".")
            elif present_organs:
                parts.append(S.capitalise(self._organ_text(present_organs[0], entries[present_organs[0]],
                                                           False)) + ".")
            if heading == "Aorta" and self.aorta is not None:
                a = self.aorta
                if a["measured"]:
                    parts.append(f"Maximal abdominal aortic diameter {rules.whole(a['max_diameter_mm'])} mm "
                                 f"(image {a['image_number']}; minimum caliper width of the axial section, "
                                 f"{a['region']}).")
                else:
                    parts.append(f"Diameter not measured: {a['note']}.")
            for c in lesion_classes:
                if c in entries:
                    parts.extend(self._lesion_statements(c, entries[c]))
            if parts:
                paragraphs.append({"heading": heading, "text": " ".join(parts)})
        others = [e for c, e in entries.items()
                  if e["kind"] != vocab.Kind.LESION.value and c not in _SECTION_ORGANS]
        if others:
            listed = [f"{e['name'].lower()} {S.volume_text(e['volume_ml'])}" if e["found"]
                      else f"{e['name'].lower()} not identified" for e in others]
            paragraphs.append({"heading": "Other segmented structures",
                               "text": S.capitalise(", ".join(listed)) + " (volumes)."})
        return paragraphs

    def impression(self, entries: dict[int, dict[str, Any]]) -> list[str]:
        items: list[str] = []
        said: set[int] = set()
        for t in self.intent["targets"]:  # what was asked, in the order asked
            c = t["class_index"]
            e = entries[c]
            if e["kind"] == vocab.Kind.LESION.value:
                hits = [x for x in self.by_class[c]["lesions"] if lesion_matches(t, x)]
                if hits:
                    items.append(S.impression_of_lesions(c, hits, [self.images(x["long_axis_slice"]) for x in hits]))
                else:
                    items.append(S.absent_sentence(c, narrowing(c, t)))
            elif c == vocab.AORTA and self.aorta and self.aorta["measured"]:
                # A radiologist's impression of the aorta is its calibre, not its volume; an
                # aneurysm is stated by the rule's own impression below.
                d_mm = self.aorta["max_diameter_mm"]
                if not rules.abdominal_aortic_aneurysm(d_mm):
                    items.append(f"Abdominal aorta not aneurysmal (maximal diameter {d_mm:.0f} mm).")
            else:
                items.append(S.capitalise(self._organ_text(c, e, True)) + ".")
            said.add(c)
        for c in sorted(entries, key=_dictation_rank):  # lesions the request did not cover, but present
            targets = [t for t in self.intent["targets"] if t["class_index"] == c]
            lesions = [x for x in self.by_class[c]["lesions"] if not any(lesion_matches(t, x) for t in targets)]
            if lesions:
                items.append(S.impression_of_lesions(c, lesions, [self.images(x["long_axis_slice"]) for x in lesions]))
        for r in self.recs:  # findings the rules name (aneurysm, splenomegaly), unless the request covered them
            if r.impression and not (r.class_index in said and r.class_index != vocab.AORTA):
                items.append(r.impression)
        if not items:
            items.append("No lesion identified in the segmented structures.")
        return list(dict.fromkeys(items))

    def run_rules(self) -> None:
        if self.aorta and self.aorta["measured"]:
            r = rules.abdominal_aortic_aneurysm(self.aorta["max_diameter_mm"])
            if r:
                self.recs.append(r)
        lung = self.by_class.get(vocab.LUNG_TUMOR)
        if lung and lung["lesions"]:
            r = rules.fleischner_solid_nodules(
                [rules.Nodule(x["id"], x["long_axis_mm"], x["short_axis_mm"]) for x in lung["lesions"]], self.age)
            if r:
                self.recs.append(r)
        cysts = self.by_class.get(vocab.KIDNEY_CYST)
        for x in (cysts["lesions"] if cysts else []):
            self.recs.append(rules.bosniak_renal_cyst(x["id"], x["hu_mean"]))
        spleen = self.by_class.get(vocab.SPLEEN)
        if spleen and spleen["voxel_count"]:
            r = rules.splenomegaly(spleen["volume_ml"])
            if r:
                self.recs.append(r)

    def provenance(self, entries: dict[int, dict[str, Any]]) -> tuple[dict[str, Any], str]:
        m = self.model
        reported = [c for c, e in entries.items() if e["found"]]
        outside = [vocab.get(c).name for c in reported if self.validated is not None and c not in self.validated]
        data = {
            "model_id": m["model_id"], "model_version": m["model_version"],
            "embedding_backend": m["embedding_backend"], "class_table_sha256": m["class_table_sha256"],
            "validated_class_indices": list(self.validated) if self.validated is not None else None,
            "validated_classes": [vocab.get(c).name for c in self.validated] if self.validated is not None else None,
            "reported_classes_not_validated": outside if self.validated is not None else None,
            "software": "radmesh", "software_version": __version__,
            "generated_at": self.generated_at,
            "draft_notice": DRAFT_NOTICE,
        }
        if m["model_id"] or m["model_version"]:
            who = f"Model {m['model_id'] or 'unnamed'} version {m['model_version'] or 'not stated'}"
        else:
            who = "Model not stated (label map from an unidentified source, e.g. a manual or reference segmentation)"
        parts = [who, f"embedding backend {m['embedding_backend'] or 'not stated'}"]
        if self.validated is not None:
            parts.append("classes validated: " + (", ".join(data["validated_classes"]) or "none"))
            if outside:
                parts.append("reported but not validated for this model: " + ", ".join(outside))
        else:
            parts.append("classes validated: not stated")
        line = "; ".join(parts) + f". Software radmesh {__version__}. Generated {self.generated_at}. {DRAFT_NOTICE}"
        return data, line

    def build(self) -> Report:
        entries_list = self.structures()
        entries = {e["class_index"]: e for e in entries_list}
        self.run_rules()
        paragraphs = self.findings_paragraphs(entries)
        impression = self.impression(entries)
        prov, prov_line = self.provenance(entries)
        study = {k: v for k, v in self.study.items() if k != "source_dicom_headers"}
        study["patient_age_years"] = self.age
        g = self.grid
        technique = {
            "shape_zyx": list(g.shape_zyx), "spacing_xyz_mm": list(g.spacing_xyz_mm),
            "min_lesion_mm3": self.f["min_lesion_mm3"],
            "image_numbering": {"scheme": self.images.scheme, "description": self.images.description},
            "sizes": "RECIST 1.1 long × short axis on the axial image of the longest in-plane diameter, mm",
        }
        data = {
            "schema": SCHEMA,
            "draft_notice": DRAFT_NOTICE,
            "study": study,
            "request": self.intent,
            "technique": technique,
            "structures": entries_list,
            "aorta": self.aorta,
            "findings": paragraphs,
            "impression": impression,
            "recommendations": [r.to_dict() for r in self.recs],
            "provenance": prov,
        }
        text = render_text(data, prov_line)
        return Report(text=text, data=data, recommendations=tuple(self.recs), provenance=prov_line)


def render_text(data: Mapping[str, Any], provenance_line: str) -> str:
    """The plain-text report of a report document."""
    st, req, tech = data["study"], data["request"], data["technique"]
    lines = [f"RADMESH STRUCTURED REPORT — {DRAFT_NOTICE}", ""]
    patient = [x for x in (st["patient_name"], f"ID {st['patient_id']}" if st["patient_id"] else "",
                           f"sex {st['patient_sex']}" if st["patient_sex"] else "",
                           f"age {st['patient_age_years']} years" if st["patient_age_years"] is not None else "") if x]
    if patient:
        lines.append("PATIENT: " + ", ".join(patient))
    exam = [x for x in (st["study_description"], f"date {_da_text(st['study_date'])}" if st["study_date"] else "",
                        f"accession {st['accession_number']}" if st["accession_number"] else "") if x]
    if exam:
        lines.append("STUDY: " + ", ".join(exam))
    targets = []
    for t in req["targets"]:
        narrow = ", ".join(x for x in (t["laterality"], t["subregion"]) if x)
        targets.append(t["name"] + (f" ({narrow})" if narrow else ""))
    request = ", ".join(targets) or "all segmented structures"
    if req["if_any"]:
        request += ", if any"
    if req["actions"]:
        request += " — " + ", ".join(req["actions"])
    lines.append(f"REQUEST: {request}")
    nz, ny, nx = tech["shape_zyx"]
    sx, sy, sz = tech["spacing_xyz_mm"]
    lines.append(f"TECHNIQUE: automated segmentation and measurement of {nz} axial images ({nx} × {ny}, "
                 f"spacing {sx:.2f} × {sy:.2f} × {sz:.2f} mm). Sizes are RECIST long × short axis on the "
                 f"image named; {tech['image_numbering']['description']}.")
    lines += ["", "FINDINGS:"]
    lines += [f"{p['heading']}: {p['text']}" for p in data["findings"]]
    lines += ["", "IMPRESSION:"]
    lines += [f"{n}. {item}" for n, item in enumerate(data["impression"], start=1)]
    if data["recommendations"]:
        lines += ["", "RECOMMENDATIONS:"]
        lines += [f"{n}. {r['text']} [Source: {r['source']}]" for n, r in enumerate(data["recommendations"], 1)]
    lines += ["", f"PROVENANCE: {provenance_line}"]
    return "\n".join(lines) + "\n"


def generate(findings: Any, intent: Any, study: Mapping[str, Any] | None = None,
             model: Mapping[str, Any] | None = None, validated_classes: Sequence[int] | None = None,
             labels: Volume | None = None, now: datetime | None = None) -> Report:
    """The draft report of ``findings`` for the request ``intent`` (see the module docstring).

    ``validated_classes``: vocabulary indices the model is validated on (None: not stated).
    ``labels``: the label map the findings were measured on, or None.
    ``now``: the generation time (default: the current time, UTC).
    Raises InvalidInputError naming the problem: malformed findings, intent, study or model;
    an unsupported request; a requested class the findings do not cover; findings that do
    not match ``labels``.
    """
    f = normalise_findings(findings)
    i = normalise_intent(intent)
    st = normalise_study(study)
    m = normalise_model(model)
    validated = None if validated_classes is None else tuple(vocab.get(c).index for c in validated_classes)
    lab = check_labels(f, labels) if labels is not None else None
    return _Builder(f, i, st, m, validated, lab, _utc_iso(now)).build()
