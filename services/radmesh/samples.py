"""The sample studies the product comes with: phantoms made on the spot, identical everywhere.

Nothing is downloaded and no CT is committed: a sample is a phantom seed and config
(:mod:`radmesh.phantom.generator`), generated once into a folder with ``ct.nii.gz``,
``labels.nii.gz`` and ``truth.json`` (the analytic truth) and a ``sample.json`` the UI
lists (title, description).

The default sample shows what radmesh is for: a pancreatic tail tumour, with a liver
lesion and a lung nodule. It is phantom seed 92 (forced lesions pancreas tumour, liver
tumour, lung tumour; axis-aligned grid; 512 × 512 × 223 at 0.78 × 0.78 × 0.8 mm). How it
was chosen: of seeds 40–99 (reserved for evaluation and demos; never trained on) with
those lesions, seeds 46, 92 and 95 put a pancreatic tumour of at least 15 mm in the tail.
The shipped weights under-segment the tumours of 46 and 95 (0.15 of 2.37 mL; 0.22 of
1.30 mL) and find 92's (1.03 of 1.48 mL, long axis 16.2 mm against 15.1 mm measured on the
true mask); 92 was taken so the sample shows the product working. It says nothing about
the model's quality; docs/model_card.md does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from radmesh.common import vocabulary as vocab
from radmesh.common.fileio import write_text_atomic

SAMPLE_VERSION = 1  # bump when a sample's definition changes, so old copies are regenerated


@dataclass(frozen=True)
class Sample:
    name: str  # folder name
    seed: int
    lesions: tuple[int, ...]
    title: str
    description: str
    question: str  # the question the sample is meant to answer


SAMPLES: tuple[Sample, ...] = (
    Sample("pancreatic-tail-tumour", 92, (vocab.PANCREAS_TUMOR, vocab.LIVER_TUMOR, vocab.LUNG_TUMOR),
           "Phantom abdomen: pancreatic tail tumour",
           "Synthetic portal-venous CT (phantom seed 92, 512 × 512 × 223, 0.78 × 0.78 × 0.8 mm) with a tumour "
           "in the pancreatic tail, a liver lesion and a lung nodule. Not a patient.",
           "segment the tumor in the tail of the pancreas and measure its size"),
)
DEFAULT_SAMPLE = SAMPLES[0]


def ensure_sample(sample: Sample, root: str | Path, progress: bool = False) -> Path:
    """``root/<sample.name>`` with the sample's files, generated unless already there."""
    from radmesh.phantom.generator import PhantomConfig, generate, write_phantom

    folder = Path(root) / sample.name
    stamp = folder / "sample.json"
    if stamp.is_file():
        try:
            if json.loads(stamp.read_text()).get("version") == SAMPLE_VERSION and (folder / "ct.nii.gz").is_file():
                return folder
        except ValueError:
            pass  # a damaged stamp: make the sample again
    phantom = generate(sample.seed, PhantomConfig(lesions=sample.lesions, oblique=False), progress=progress)
    write_phantom(phantom, folder)
    write_text_atomic(stamp, json.dumps({"version": SAMPLE_VERSION, "title": sample.title,
                                         "description": sample.description, "seed": sample.seed,
                                         "question": sample.question}, indent=1) + "\n")
    return folder


def ensure_samples(root: str | Path, progress: bool = False) -> Path:
    """Every sample under ``root``; returns ``root``."""
    for sample in SAMPLES:
        ensure_sample(sample, root, progress)
    return Path(root)
