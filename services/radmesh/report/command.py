"""``radmesh report``: a CT, a label map and a request in; a report folder out.

    radmesh report --ct CT --mask LABELS --prompt "segment the pancreatic tumor and measure it" --out DIR

writes DIR/report.json, DIR/report.txt and, by default, DIR/seg.dcm, DIR/sr.dcm and
DIR/labels.nii.gz (``--formats`` picks among seg, sr, nifti). The prompt is parsed
(:func:`radmesh.text.parse.parse`) and the label map measured
(:func:`radmesh.measurement.core.measure`: every class present plus every class
the prompt names) in this process in both modes; with ``--server HOST:PORT`` the
report and files are then made by the report service instead of in-process —
the same report and the same files.

Model provenance comes from ``--model-info FILE``: a ``segmentation.json`` written by
``radmesh segment`` or a JSON object with ModelInfo fields (``model_id``,
``model_version``, ``embedding_backend``, ``class_table_sha256``) and optionally
``validated_class_indices``. Without the flag, a ``segmentation.json`` beside the
label map is used; without either the report says the model is not stated.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from radmesh.common import vocabulary as vocab
from radmesh.common.errors import InvalidInputError

if TYPE_CHECKING:
    import numpy as np

# The CLI builds its parser from add_arguments on every run, so this module imports
# nothing heavy at the top; numpy, the measurement core and the writers load in run().
DEFAULT_MIN_LESION_MM3 = 10.0  # = radmesh.measurement.core.DEFAULT_MIN_LESION_MM3

__all__ = ["load_model_info", "run"]


def load_model_info(path: str | os.PathLike | None,
                    mask_path: str | os.PathLike) -> tuple[dict[str, str], list[int] | None]:
    """(ModelInfo fields, validated class indices or None) from ``path``, or a segmentation.json beside the mask."""
    if path is None:
        beside = Path(mask_path).parent / "segmentation.json"
        if not beside.is_file():
            return {}, None
        path = beside
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInputError(f"{p}: no such model information file") from None
    except (OSError, ValueError) as e:
        raise InvalidInputError(f"{p}: not a JSON model description ({e})") from None
    m = doc.get("model") if isinstance(doc, dict) and isinstance(doc.get("model"), dict) else doc
    if not isinstance(m, dict):
        raise InvalidInputError(f"{p}: expected a JSON object with ModelInfo fields")
    encoder_id = str(m.get("encoder_id") or "")
    weights = str(m.get("weights") or "")
    info = {
        # radmesh segment records the weights file; the segmentation service names the model after it too
        "model_id": str(m.get("model_id") or (Path(weights).stem.replace("_", "-") if weights else "")),
        "model_version": str(m.get("model_version") or ""),
        "embedding_backend": str(m.get("embedding_backend") or encoder_id.split(":", 1)[0]),
        "class_table_sha256": str(m.get("class_table_sha256") or ""),
    }
    validated = m.get("validated_class_indices", m.get("validated_classes"))
    if validated is None and weights and Path(weights).is_file():
        from radmesh.model.runtime import load  # the weights file states what it is validated on

        meta = load(weights)[1]
        validated = meta["classes"]
        info["class_table_sha256"] = info["class_table_sha256"] or str(meta.get("table_sha256", ""))
    if validated is not None:
        try:
            validated = [vocab.get(int(c)).index for c in validated]
        except (TypeError, ValueError):
            raise InvalidInputError(f"{p}: validated classes must be class indices, got {validated!r}") from None
    return info, (validated or None)


def classes_to_measure(labels: np.ndarray, intent: dict[str, Any]) -> list[int]:
    """Every class present in the label map, plus every class the request names (absent ones measure as 0)."""
    import numpy as np

    counts = np.bincount(labels.ravel(), minlength=vocab.NUM_CLASSES + 1)
    present = {c for c in range(1, vocab.NUM_CLASSES + 1) if counts[c]}
    return sorted(present | {int(t["class_index"]) for t in intent.get("targets") or []})


def run(ct_path: str, mask_path: str, prompt: str, out_dir: str, formats: str | None = None,
        server: str | None = None, model_info: str | None = None,
        min_lesion_mm3: float = DEFAULT_MIN_LESION_MM3,
        timeout_s: float = 300.0, announce: Callable[[str], None] | None = None
        ) -> tuple[dict[str, Any], str, list[Path]]:
    """Make the report of ``prompt`` on the CT and label map and write ``out_dir``.

    Returns (report JSON document, report text, written paths).
    """
    from radmesh.common.imageio import read_ct_and_study, read_volume
    from radmesh.common.volume import Volume
    from radmesh.measurement.core import measure
    from radmesh.report.artifacts import build_artifacts, parse_formats, report_files, write_report_folder
    from radmesh.report.core import generate, label_array, normalise_intent
    from radmesh.text.parse import parse

    wanted = parse_formats(formats)
    intent = parse(prompt).to_dict()
    normalise_intent(intent)  # refuse a request outside the vocabulary before reading any volume
    model, validated = load_model_info(model_info, mask_path)
    ct, source, study = read_ct_and_study(ct_path, announce)
    raw = read_volume(mask_path)
    ct.geometry.require_match(raw.geometry, what="label map", ref="CT")
    labels = Volume(label_array(raw), raw.geometry)
    findings = measure(ct, labels, classes=classes_to_measure(labels.array, intent),
                       min_lesion_mm3=min_lesion_mm3).to_dict()
    if server:
        from radmesh.report.client import generate_remote

        report, artifacts = generate_remote(server, findings, intent, study, model, validated, labels, wanted,
                                            timeout_s=timeout_s)
        files = {**report_files(text=report.text, json_text=report.json), **artifacts}
        data, text = json.loads(report.json), report.text
    else:
        local = generate(findings, intent, study, model, validated_classes=validated, labels=labels)
        files = {**report_files(local), **build_artifacts(wanted, labels, findings, study, source, model)}
        data, text = local.data, local.text
    written = write_report_folder(out_dir, files)
    return data, text, written


def main_args(args: Any) -> int:
    """The ``radmesh report`` subcommand (argparse namespace from radmesh.cli)."""
    from radmesh.cli import announce_dicom

    data, text, written = run(args.ct, args.mask, args.prompt, args.out, formats=args.formats,
                              server=args.server, model_info=args.model_info,
                              min_lesion_mm3=args.min_lesion_mm3, timeout_s=args.timeout_s,
                              announce=announce_dicom)
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        print(text, end="")
        print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


def add_arguments(p: Any, formats_help: Sequence[str] = ("seg", "sr", "nifti")) -> None:
    """The flags of ``radmesh report`` (called by radmesh.cli)."""
    p.add_argument("--ct", required=True, help="CT: NIfTI file or DICOM folder")
    p.add_argument("--mask", required=True, help="label map (NIfTI, vocabulary indices) on the CT's grid")
    p.add_argument("--prompt", required=True, help='the request, e.g. "segment the pancreatic tumor and measure it"')
    p.add_argument("--out", required=True, help="output folder: report.json, report.txt and the --formats files")
    p.add_argument("--formats", help=f"files besides the report, comma-separated from {','.join(formats_help)} "
                                     "(default: all; 'none' for the report only)")
    p.add_argument("--model-info", help="segmentation.json of radmesh segment, or a JSON object with ModelInfo "
                                        "fields (default: segmentation.json beside --mask, if any)")
    p.add_argument("--min-lesion-mm3", type=float, default=DEFAULT_MIN_LESION_MM3,
                   help="smallest lesion reported, mm³ (default 10)")
    p.add_argument("--json", action="store_true", help="print the report JSON instead of the text")
    p.add_argument("--server", help="HOST:PORT of a running report service (default: in-process); the prompt "
                                    "is parsed and the label map measured in this process either way")
    p.add_argument("--timeout-s", type=float, default=300.0, help="deadline of the remote call, s")
