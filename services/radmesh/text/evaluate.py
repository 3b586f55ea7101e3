"""Accuracy of Parse on a labelled prompt set (``tests/data/prompts.jsonl``).

Each line: {"prompt", "targets": [{"class_index", "laterality", "subregion"}],
"actions": [...], "if_any", "unsupported"}. Targets and actions compare as sets.
A prompt is an *exact intent* when every field matches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radmesh.text.parse import Intent, Parser

FIELDS = ("classes", "targets", "actions", "if_any", "unsupported", "exact_intent")


def load_prompts(path: str | Path) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not JSON ({e})") from None
    return rows


def _truth(row: dict[str, Any]) -> dict[str, Any]:
    targets = {(int(t["class_index"]), t.get("laterality", ""), t.get("subregion", "")) for t in row["targets"]}
    return {"classes": {t[0] for t in targets}, "targets": targets, "actions": set(row["actions"]),
            "if_any": bool(row["if_any"]), "unsupported": bool(row["unsupported"])}


def _predicted(intent: Intent) -> dict[str, Any]:
    targets = {t.key for t in intent.targets}
    return {"classes": {t[0] for t in targets}, "targets": targets, "actions": set(intent.actions),
            "if_any": intent.if_any, "unsupported": intent.unsupported}


@dataclass
class Evaluation:
    n: int
    correct: dict[str, int]
    failures: list[dict[str, Any]] = field(default_factory=list)

    def accuracy(self, name: str) -> float:
        return self.correct[name] / self.n if self.n else 0.0

    def table(self) -> str:
        lines = [f"{'field':<14}{'correct':>9}{'accuracy':>10}"]
        for name in FIELDS:
            lines.append(f"{name:<14}{self.correct[name]:>5}/{self.n:<4}{self.accuracy(name):>9.1%}")
        return "\n".join(lines)


def evaluate(rows: list[dict[str, Any]], parser: Parser | None = None) -> Evaluation:
    parser = parser or Parser()
    correct = dict.fromkeys(FIELDS, 0)
    failures = []
    for row in rows:
        truth, got = _truth(row), _predicted(parser.parse(row["prompt"]))
        ok = {name: truth[name] == got[name] for name in FIELDS[:-1]}
        ok["exact_intent"] = all(ok.values())
        for name, good in ok.items():
            correct[name] += good
        if not ok["exact_intent"]:
            failures.append({"prompt": row["prompt"], "fields": [k for k, v in ok.items() if not v],
                             "expected": {k: sorted(v) if isinstance(v, set) else v for k, v in truth.items()},
                             "got": {k: sorted(v) if isinstance(v, set) else v for k, v in got.items()}})
    return Evaluation(len(rows), correct, failures)
