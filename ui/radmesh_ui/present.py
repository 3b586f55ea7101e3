"""What the chat shows, from what the assistant sends: plain functions, no Gradio, no I/O.

- :class:`StageLog` turns the stream of :class:`~radmesh.assistant.core.Step` events into chat
  messages, one collapsible "thought" per stage (Gradio's message ``metadata``: ``title``,
  ``status`` "pending"/"done", ``duration`` in seconds), updated in place as events arrive;
- :func:`findings_table` gives the findings table's rows (one per lesion; organs with volume
  and HU) and, per row, where the viewer should jump (LPS mm);
- :func:`answer_message` gives the reply's text (refusals and questions back name the
  suggested structures); :func:`figure_caption` names a key image;
- :data:`PALETTE` colours the label map (the viewer's overlay and its legend).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radmesh.common import vocabulary as vocab
from radmesh.common.volume import Volume

# Label colours, by vocabulary index (RGB 0..255). Organs in muted tones, lesions bright.
PALETTE: dict[int, tuple[int, int, int]] = {
    1: (157, 108, 162),   # Spleen
    2: (185, 102, 83),    # Right Kidney
    3: (200, 130, 100),   # Left Kidney
    4: (111, 184, 210),   # Gall Bladder
    5: (230, 220, 70),    # Esophagus
    6: (221, 130, 101),   # Liver
    7: (216, 132, 200),   # Stomach
    8: (224, 52, 52),     # Aorta
    9: (0, 151, 206),     # Postcava
    10: (0, 112, 165),    # Portal Vein and Splenic Vein
    11: (241, 214, 145),  # Pancreas
    12: (244, 154, 76),   # Right Adrenal Gland
    13: (244, 186, 76),   # Left Adrenal Gland
    14: (255, 253, 170),  # Duodenum
    15: (30, 144, 255),   # Hepatic Vessel
    16: (170, 210, 240),  # Right Lung
    17: (140, 190, 230),  # Left Lung
    18: (204, 168, 143),  # Colon
    19: (255, 210, 180),  # Intestine
    20: (190, 140, 110),  # Rectum
    21: (222, 200, 50),   # Bladder
    22: (230, 160, 200),  # Prostate
    23: (200, 200, 235),  # Left Head of Femur
    24: (180, 180, 225),  # Right Head of Femur
    25: (250, 90, 90),    # Celiac Trunk
    26: (255, 0, 255),    # Kidney Tumor
    27: (0, 255, 0),      # Liver Tumor
    28: (0, 255, 255),    # Pancreas Tumor
    29: (255, 128, 0),    # Hepatic Vessel Tumor
    30: (255, 255, 0),    # Lung Tumor
    31: (128, 0, 255),    # Colon Tumor
    32: (0, 200, 120),    # Kidney Cyst
}

TABLE_HEADERS = ["Structure", "Location", "Volume (mL)", "Long × short axis (mm)",
                 "Max 3D diameter (mm)", "Mean HU", "Attenuation"]

STAGE_WORDS = {"parsing": "Understanding the question", "receiving": "Uploading the study",
               "inference": "Segmenting", "measuring": "Measuring", "reporting": "Drafting the report",
               "rendering": "Drawing key images", "sending": "Sending the results",
               "preparing": "Preparing the study"}


def class_name(index: int) -> str:
    try:
        return vocab.get(int(index)).name
    except Exception:  # noqa: BLE001 - an index this vocabulary does not know
        return f"class {index}"


def hex_colour(index: int) -> str:
    r, g, b = PALETTE.get(int(index), (200, 200, 200))
    return f"#{r:02x}{g:02x}{b:02x}"


def legend(classes: Sequence[int]) -> list[dict[str, Any]]:
    return [{"index": int(c), "name": class_name(c), "color": hex_colour(c)} for c in sorted(set(classes)) if c]


def human_bytes(n: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} GB"  # pragma: no cover


# ---- the steps of a plan -----------------------------------------------------------------

@dataclass
class _Stage:
    index: int  # position of its message in the chat
    first_elapsed: float
    lines: list[str] = field(default_factory=list)


class StageLog:
    """Chat messages for the stages of one answer, updated in place.

    ``messages`` is the chat history (a list of message dicts) this log appends to; each
    :meth:`step` updates (or appends) the message of the step's stage. ``Step.elapsed_s``
    counts from the start of the answer, so a stage's duration is the difference between its
    latest and first events."""

    def __init__(self, messages: list[dict[str, Any]], turn: int):
        self.messages = messages
        self.turn = turn
        self.stages: dict[str, _Stage] = {}

    def step(self, stage: str, state: str, message: str, elapsed_s: float = 0.0) -> None:
        s = self.stages.get(stage)
        if s is None:
            self.messages.append({"role": "assistant", "content": "",
                                  "metadata": {"title": message, "id": f"{self.turn}-{stage}", "status": "pending"}})
            s = self.stages[stage] = _Stage(len(self.messages) - 1, float(elapsed_s))
        # a progress message ("segmenting X: window 12 / 40") replaces the previous one of its kind
        head = message.split(":", 1)[0]
        if s.lines and ":" in message and s.lines[-1].split(":", 1)[0] == head:
            s.lines[-1] = message
        elif not s.lines or s.lines[-1] != message:
            s.lines.append(message)
        meta: dict[str, Any] = {"title": message, "id": f"{self.turn}-{stage}"}
        if state == "running":
            meta["status"] = "pending"
        else:
            meta["status"] = "done"
            if state == "skipped":
                meta["log"] = "skipped"
            elif state == "failed":
                meta["log"] = "failed"
            duration = float(elapsed_s) - s.first_elapsed
            if state != "skipped":
                meta["duration"] = round(max(duration, 0.0), 1)
        words = STAGE_WORDS.get(stage, stage.capitalize())
        self.messages[s.index] = {"role": "assistant", "content": f"{words}\n\n" + "\n".join(
            f"- {line}" for line in s.lines), "metadata": meta}

    def fail_running(self, why: str) -> None:
        """Close every stage still running (the answer ended with an error)."""
        for stage, s in self.stages.items():
            meta = dict(self.messages[s.index].get("metadata") or {})
            if meta.get("status") == "pending":
                meta.update(status="done", log="failed")
                msg = dict(self.messages[s.index], metadata=meta)
                msg["content"] = (msg.get("content") or "") + f"\n- stopped: {why}"
                self.messages[s.index] = msg


# ---- the answer ----------------------------------------------------------------------------

def answer_message(answer: Mapping[str, Any]) -> str:
    text = str(answer.get("text") or "").strip()
    kind = answer.get("kind")
    suggestions = [class_name(c) for c in answer.get("suggestions") or []]
    if kind in ("refusal", "question") and suggestions and not all(s in text for s in suggestions):
        text += ("\n\nDid you mean: " if kind == "question" else "\n\nYou could ask about: ") + ", ".join(suggestions) + "?"
    return text or "(the assistant sent an empty answer)"


def _num(v: Any, digits: int = 1) -> str:
    if v is None or v == "":
        return ""
    try:
        return f"{float(v):.{digits}f}"
    except (TypeError, ValueError):
        return str(v)


def _ml(v: Any) -> str:
    if v is None:
        return ""
    return _num(v, 2 if float(v) < 10 else 1)


def organ_centroid_lps(labels: Volume | None, index: int) -> list[float] | None:
    """The centroid (LPS mm) of the voxels of ``index`` in ``labels``; None when there are none."""
    if labels is None:
        return None
    a = np.asarray(labels.array)
    idx = np.argwhere(a == index)
    if idx.size == 0:
        return None
    return [float(v) for v in labels.geometry.to_lps(idx.mean(axis=0)[None, :])[0]]


@dataclass(frozen=True)
class Finding:
    row: list[str]
    label: str  # "jump to" choice text
    lps_mm: list[float] | None  # where the viewer jumps; None: nowhere to go
    lesion_volume_ml: float | None = None  # lesions only


def findings_table(answer: Mapping[str, Any], labels: Volume | None = None) -> list[Finding]:
    """One row per lesion, one per organ (volume and mean HU); a lesion class with no lesion
    found says so. Without measurements, the segmented structures with their volumes."""
    out: list[Finding] = []
    findings = answer.get("findings") or {}
    structures = findings.get("structures") or []
    if structures:
        for s in structures:
            name = str(s.get("name") or class_name(s.get("class_index", 0)))
            c = int(s.get("class_index", 0))
            if s.get("kind") == "lesion":
                lesions = s.get("lesions") or []
                if not lesions:
                    out.append(Finding([name, "none found", "0", "", "", "", ""], "", None))
                for lesion in lesions:
                    label = f"{name} {lesion.get('id', '')}".strip()
                    axes = ""
                    if lesion.get("long_axis_mm") is not None:
                        axes = f"{_num(lesion.get('long_axis_mm'))} × {_num(lesion.get('short_axis_mm'))}"
                    row = [label, str(lesion.get("location") or ""), _ml(lesion.get("volume_ml")), axes,
                           _num(lesion.get("max_diameter_mm")), _num(lesion.get("hu_mean"), 0),
                           str(lesion.get("attenuation") or "")]
                    where = lesion.get("centroid_mm")
                    text = f"{label} — {row[1]}, {axes} mm" if axes else label
                    out.append(Finding(row, text, [float(v) for v in where] if where else None,
                                       float(lesion.get("volume_ml") or 0.0)))
            else:
                row = [name, "", _ml(s.get("volume_ml")), "", "", _num(s.get("hu_mean"), 0), ""]
                out.append(Finding(row, name, organ_centroid_lps(labels, c)))
        return out
    for s in answer.get("segmented") or []:
        name = str(s.get("name") or class_name(s.get("class_index", 0)))
        row = [name, "", _ml(s.get("volume_ml")), "", "", "", ""]
        out.append(Finding(row, name, organ_centroid_lps(labels, int(s.get("class_index", 0)))))
    return out


def focus(findings: Sequence[Finding]) -> list[float] | None:
    """Where the viewer goes after an answer: the largest lesion, else the first structure."""
    lesions = [f for f in findings if f.lesion_volume_ml is not None and f.lps_mm]
    if lesions:
        return max(lesions, key=lambda f: f.lesion_volume_ml or 0.0).lps_mm
    return next((f.lps_mm for f in findings if f.lps_mm), None)


def jump_value(lps_mm: Sequence[float]) -> str:
    """The "jump to" dropdown's value for a position: "x,y,z" in LPS mm."""
    return ",".join(f"{float(v):.2f}" for v in lps_mm)


_FIG = re.compile(r"^(?P<cls>.+?)-(?P<id>\d+)-(?P<plane>axial|coronal|sagittal)\.png$", re.I)


def figure_caption(name: str) -> str:
    """"pancreas_tumor-1-axial.png" → "Pancreas Tumor 1 · axial" (class given by name or index)."""
    m = _FIG.match(name)
    if not m:
        return name.rsplit(".", 1)[0]
    cls = m.group("cls")
    title = class_name(int(cls)) if cls.isdigit() else re.sub(r"[-_]+", " ", cls).strip().title()
    return f"{title} {m.group('id')} · {m.group('plane').lower()}"


PLANE_ORDER = {"axial": 0, "coronal": 1, "sagittal": 2}


def figure_sort_key(name: str) -> tuple:
    m = _FIG.match(name)
    if not m:
        return (name, 0, 9)
    return (m.group("cls"), int(m.group("id")), PLANE_ORDER.get(m.group("plane").lower(), 9))


DOWNLOAD_ORDER = ("labels.nii.gz", "seg.dcm", "sr.dcm", "report.txt", "report.json")


def download_names(files: Mapping[str, bytes]) -> list[str]:
    """The files offered for download, in a fixed order (key images go to the gallery)."""
    first = [n for n in DOWNLOAD_ORDER if n in files]
    rest = sorted(n for n in files if n not in DOWNLOAD_ORDER and not n.lower().endswith(".png"))
    return first + rest


def details(answer: Mapping[str, Any], files: Mapping[str, bytes]) -> dict[str, Any]:
    """The diagnostic summary of an answer (the Details panel; what API clients read)."""
    model = answer.get("model") or {}
    return {
        "kind": answer.get("kind"),
        "session_id": answer.get("session_id"),
        "study_handle": answer.get("study_handle"),
        "uploaded_bytes": int(answer.get("uploaded_bytes") or 0),
        "elapsed_s": answer.get("elapsed_s"),
        "targets": [t.get("name") or class_name(t.get("class_index", 0)) for t in answer.get("targets") or []],
        "segmented": [s.get("name") for s in answer.get("segmented") or []],
        "lesions": sum(len(s.get("lesions") or []) for s in ((answer.get("findings") or {}).get("structures") or [])),
        "files": sorted(files),
        "model_version": model.get("model_version"),
    }
