"""From a parsed sentence and the conversation so far to what this turn is about.

The text service parses one sentence on its own; this module reads it in the context
of the session: which structures a turn is about, what to do with them, and whether
the turn must be refused or answered with a question. It calls no service.

- Out of the vocabulary ("segment the brain tumor"): a refusal that says what radmesh
  can do and suggests the nearest classes.
- Classes the loaded model is not validated on: dropped with a note, or — when nothing
  else is left — a refusal naming them.
- "it" / "them" (``refers_back``): the structures of the last answer; "it" with several
  candidates is a question back ("the liver or the spleen?"), never a guess; with no
  earlier answer, a question asking what is meant.
- Follow-on fragments ("and the liver?", "what about the left kidney?"): new structures,
  the previous answer's actions.
- "compare with the spleen": the new structures beside the previous answer's.
- "now write the report" with nothing named: every structure asked about so far.
- A reply to a question back ("the liver") takes the actions of the question it answers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from radmesh.common import vocabulary as vocab
from radmesh.common.intent_wire import ACTIONS
from radmesh.assistant.sessions import TurnRecord

# "and the liver?", "what about the left kidney?", "same for the spleen"
_FOLLOW_ON = re.compile(r"^\W*(and|also|plus|then|now|what about|how about|same for|same with|likewise)\b", re.I)
# actions that need the measurement of the structures (segment alone does not)
MEASURING_ACTIONS = frozenset({"measure", "locate", "count", "compare", "report"})
# how the reply names an action in a question back
_VERBS = {"segment": "segment", "measure": "measure", "locate": "locate", "count": "count",
          "compare": "compare", "report": "report on"}


@dataclass
class TurnPlan:
    """What the assistant will do for one question.

    ``kind``: "answer" (carry it out), "refusal" or "question" (``text`` is then the whole reply);
    ``targets``: resolved targets (class_index, name, laterality, subregion), validated only;
    ``actions``: in :data:`ACTIONS` order; ``compare_with``: earlier targets to set beside them;
    ``suggestions``: class indices offered instead (refusals, questions); ``notes``: sentences
    the reply must carry (classes left out, what "it" was taken to mean).
    """

    kind: str
    targets: list[dict[str, Any]] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    compare_with: list[dict[str, Any]] = field(default_factory=list)
    text: str = ""
    suggestions: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def needs_measurement(self) -> bool:
        return bool(MEASURING_ACTIONS.intersection(self.actions))


def target_key(t: Mapping[str, Any]) -> tuple[int, str, str]:
    return int(t["class_index"]), str(t.get("laterality") or ""), str(t.get("subregion") or "")


def target_name(t: Mapping[str, Any]) -> str:
    """"the pancreatic tumour (tail)" style: the class in lower case with its narrowing."""
    name = vocab.get(int(t["class_index"])).name.lower()
    sub = str(t.get("subregion") or "")
    return f"the {name}" + (f" ({sub})" if sub else "")


def join_words(items: Sequence[str], last: str = "and") -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" {last} " + items[-1]


def _ordered(actions: Sequence[str]) -> list[str]:
    return [a for a in ACTIONS if a in set(actions)]


def _unique(targets: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out: dict[tuple[int, str, str], dict[str, Any]] = {}
    for t in targets:
        out.setdefault(target_key(t), {"class_index": int(t["class_index"]), "name": vocab.get(int(t["class_index"])).name,
                                       "laterality": str(t.get("laterality") or ""),
                                       "subregion": str(t.get("subregion") or "")})
    return list(out.values())


def capabilities(validated: Sequence[int]) -> str:
    """"organs (spleen, ...) and lesions (kidney tumor, ...)" of the loaded model."""
    organs = [vocab.get(c).name.lower() for c in sorted(validated) if not vocab.get(c).is_lesion]
    lesions = [vocab.get(c).name.lower() for c in sorted(validated) if vocab.get(c).is_lesion]
    parts = []
    if organs:
        parts.append(f"organs and vessels ({', '.join(organs)})")
    if lesions:
        parts.append(f"lesions ({', '.join(lesions)})")
    return join_words(parts) if parts else "nothing (the loaded model is validated on no class)"


def plan_turn(prompt: str, intent: Mapping[str, Any], turns: Sequence[TurnRecord], validated: Sequence[int],
              model_version: str) -> TurnPlan:
    """The plan for ``prompt`` (parsed as ``intent``) after ``turns`` (oldest first)."""
    validated_set = {int(c) for c in validated}
    answers = [t for t in turns if t.kind == "answer" and t.targets]
    last_answer = answers[-1] if answers else None
    last_turn = turns[-1] if turns else None
    actions = list(intent.get("actions") or [])

    if intent.get("unsupported"):
        phrase = str(intent.get("unsupported_phrase") or prompt)
        near = [int(s["class_index"]) for s in intent.get("suggestions") or []]
        near = [c for c in near if c in validated_set] or near
        text = (f"I can't help with “{phrase}”: it is not among the structures radmesh knows. "
                f"I can segment, measure, locate and count {capabilities(validated)}, and draft a report.")
        if near:
            text += f" Did you mean {join_words([vocab.get(c).name.lower() for c in near], 'or')}?"
        return TurnPlan("refusal", text=text, suggestions=near)

    targets = _unique(intent.get("targets") or [])
    notes: list[str] = []
    compare_with: list[dict[str, Any]] = []

    if not targets and intent.get("refers_back"):
        verb = _VERBS.get(actions[0], "look at") if actions else "look at"
        if last_answer is None:
            return TurnPlan("question", actions=_ordered(actions), text=(
                f"What should I {verb}? Nothing has been asked about this study yet; name a structure, for "
                "example “the liver” or “the pancreatic tumour”."))
        previous = last_answer.targets
        if len(previous) > 1 and not intent.get("refers_back_plural") and "count" not in actions:
            names = [target_name(t) for t in previous]
            return TurnPlan("question", actions=_ordered(actions or last_answer.actions),
                            suggestions=[int(t["class_index"]) for t in previous],
                            text=f"Which do you mean: {join_words(names, 'or')}?")
        targets = _unique(previous)
        actions = actions or [a for a in last_answer.actions if a != "report"]
    elif not targets and actions == ["report"]:
        covered = _unique([t for a in answers for t in a.targets])
        if not covered:
            return TurnPlan("question", actions=["report"], text=(
                "What should the report cover? Nothing has been asked about this study yet; ask about a "
                "structure first, for example “segment the pancreatic tumour and measure it”."))
        targets = covered
    elif targets and set(actions) <= {"segment"}:
        if last_turn is not None and last_turn.kind == "question" and last_turn.actions:
            actions = last_turn.actions  # "the liver" answers "which do you mean?"
        elif last_answer is not None and _FOLLOW_ON.match(prompt):
            actions = ["segment", *[a for a in last_answer.actions if a not in ("report", "compare")]]

    if "compare" in actions:
        keys = {target_key(t) for t in targets}
        compare_with = [t for t in (last_answer.targets if last_answer else []) if target_key(t) not in keys]
        if not compare_with and len(targets) < 2:
            return TurnPlan("question", actions=_ordered(actions), suggestions=[int(t["class_index"]) for t in targets],
                            text=f"Compare {join_words([target_name(t) for t in targets])} with what? Name the "
                                 "other structure, for example “compare the liver with the spleen”.")

    left_out = sorted({int(t["class_index"]) for t in targets + compare_with} - validated_set)
    targets = [t for t in targets if int(t["class_index"]) in validated_set]
    compare_with = [t for t in compare_with if int(t["class_index"]) in validated_set]
    if left_out:
        names = join_words([vocab.get(c).name.lower() for c in left_out])
        if not targets:
            same_kind = [c for c in sorted(validated_set)
                         if vocab.get(c).is_lesion == vocab.get(left_out[0]).is_lesion][:3]
            return TurnPlan("refusal", suggestions=same_kind, text=(
                f"The loaded model ({model_version}) is not validated on the {names}, so I will not segment "
                f"{'it' if len(left_out) == 1 else 'them'}: a result it was never tested on could not be trusted. "
                f"It is validated on {capabilities(validated)}."))
        notes.append(f"Not looked for: the {names} (the loaded model is not validated on "
                     f"{'it' if len(left_out) == 1 else 'them'}).")

    if not actions:
        actions = ["segment"]
    if "compare" in actions:
        actions = [*actions, "segment", "measure"]
    return TurnPlan("answer", targets=targets, actions=_ordered(actions), compare_with=compare_with, notes=notes)
