#!/usr/bin/env python
"""Calibrate Parse's similarity threshold: when does a left-over phrase name a class?

Parse maps a phrase the lexicon does not know to the most similar vocabulary
class (MiniLM cosine similarity against every class name and synonym) only when
the similarity reaches ``SIMILARITY_THRESHOLD``; below it the phrase is
refused. This script scores two lists kept apart from the labelled prompt sets:
paraphrases of vocabulary classes the lexicon does not contain (should map, to
the right class) and anatomy or requests outside the vocabulary (should be
refused), sweeps the threshold, and prints the one with the fewest errors — a
wrong class counts as an error at any threshold it passes.

    python bench/calibrate_parse.py
"""

from __future__ import annotations

import sys

import numpy as np

from radmesh.common import vocabulary as V
from radmesh.text.parse import SIMILARITY_THRESHOLD, Parser

PARAPHRASES = [
    ("main abdominal artery", V.AORTA), ("big artery", V.AORTA), ("large vein behind the liver", V.POSTCAVA),
    ("inferior cava", V.POSTCAVA), ("bile sac", V.GALL_BLADDER), ("gall sac", V.GALL_BLADDER),
    ("food pipe", V.ESOPHAGUS), ("swallowing tube", V.ESOPHAGUS), ("large gut", V.COLON),
    ("small gut", V.INTESTINE), ("urinary vesicle", V.BLADDER),
    ("liver blood vessels", V.HEPATIC_VESSEL), ("pancreatic gland", V.PANCREAS), ("spleen organ", V.SPLEEN),
    ("suprarenal", V.RIGHT_ADRENAL), ("renal tumour mass", V.KIDNEY_TUMOR), ("liver neoplasm", V.LIVER_TUMOR),
    ("pulmonary mass lesion", V.LUNG_TUMOR), ("colonic neoplasm", V.COLON_TUMOR), ("kidney cystic lesion", V.KIDNEY_CYST),
    ("celiac artery trunk", V.CELIAC_TRUNK), ("portal venous vessel", V.PORTAL_SPLENIC_VEIN),
]
OUTSIDE = [
    "windpipe", "voice box", "womb", "collarbone", "skull base", "cerebellum lesion", "heart chambers",
    "thyroid gland", "breast lump", "knee cartilage", "spinal canal", "lymph nodes", "tonsils", "sinuses",
    "retina", "tooth root", "parotid gland", "aortic valve", "coronary arteries", "carotid plaque",
    "weather forecast", "tell me a joke", "book a taxi", "lunch menu", "football score", "insurance claim",
    "print the invoice", "patient's phone number", "schedule an appointment", "translate to french",
]


def main() -> int:
    parser = Parser()
    pos = [(phrase, cls, *parser.nearest(phrase, k=1)[0]) for phrase, cls in PARAPHRASES]
    neg = [(phrase, *parser.nearest(phrase, k=1)[0]) for phrase in OUTSIDE]
    best_t, best_err = None, None
    for t in np.arange(0.30, 0.91, 0.01):
        err = sum(1 for _, cls, got, sim in pos if sim < t or got != cls) + sum(1 for _, _, sim in neg if sim >= t)
        if best_err is None or err < best_err:
            best_t, best_err = float(t), err
    print(f"{'phrase':<30}{'expected':<28}{'nearest':<28}{'cosine':>7}")
    for phrase, cls, got, sim in pos:
        print(f"{phrase:<30}{V.get(cls).name:<28}{V.get(got).name:<28}{sim:7.3f}")
    for phrase, got, sim in neg:
        print(f"{phrase:<30}{'(refuse)':<28}{V.get(got).name:<28}{sim:7.3f}")
    print(f"\nfewest errors: threshold {best_t:.2f} → {best_err} of {len(pos) + len(neg)} phrases wrong")
    t = SIMILARITY_THRESHOLD
    wrong = sum(1 for _, cls, got, sim in pos if sim < t or got != cls) + sum(1 for _, _, sim in neg if sim >= t)
    print(f"current SIMILARITY_THRESHOLD {t:.2f} → {wrong} wrong")
    return 0


if __name__ == "__main__":
    sys.exit(main())
