"""Parse: the labelled prompt sets, the seed requests, refusals, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from radmesh.common.errors import InvalidInputError
from radmesh.text.evaluate import evaluate, load_prompts
from radmesh.text.parse import MAX_PROMPT_CHARS, Parser, edit_distance

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def parser():
    return Parser()  # the real MiniLM similarity


def _keys(intent):
    return sorted(t.key for t in intent.targets)


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("prompts*.jsonl")))
def test_labelled_set_exact_intent_at_least_95_percent(parser, name):
    rows = load_prompts(DATA / name)
    assert len(rows) >= 100
    ev = evaluate(rows, parser)
    report = ev.table() + "\n" + "\n".join(f"{f['prompt']!r}: {f['fields']} got {f['got']}" for f in ev.failures)
    assert ev.accuracy("exact_intent") >= 0.95, report


def test_seed_requests(parser):
    i = parser.parse("segment the pancreatic tumor and measure it")
    assert _keys(i) == [(28, "", "")] and i.actions == ("segment", "measure") and not i.if_any
    i = parser.parse("Please segment the tumor in the tail of the pancreas and then measure its size")
    assert _keys(i) == [(28, "", "tail")] and set(i.actions) == {"segment", "measure"}
    i = parser.parse("Segment pancreatic tumors, if any")
    assert _keys(i) == [(28, "", "")] and i.if_any
    i = parser.parse("Take a look at these CT scans and mark the suspected tumor region")
    assert [k[0] for k in _keys(i)] == [26, 27, 28, 29, 30, 31] and i.actions == ("locate",)
    i = parser.parse("Generate a report")
    assert i.targets == () and i.actions == ("report",) and not i.unsupported


@pytest.mark.parametrize("prompt, phrase", [
    ("segment the brain tumor", "brain tumor"),
    ("the heart", "heart"),
    ("what's the weather like tomorrow?", "weather"),
    ("thyroid nodule please", "thyroid nodule"),
])
def test_outside_the_vocabulary_is_refused_with_suggestions(parser, prompt, phrase):
    i = parser.parse(prompt)
    assert i.unsupported and i.targets == () and i.actions == ()
    assert phrase in i.unsupported_phrase
    assert len(i.suggestions) == 3 and all(1 <= c <= 32 for c in i.suggestions)


def test_mixed_request_keeps_the_supported_part_and_names_the_rest(parser):
    i = parser.parse("segment the liver and the heart")
    assert _keys(i) == [(6, "", "")] and not i.unsupported and i.unsupported_phrase == "heart"


@pytest.mark.parametrize("prompt, expected", [
    ("SEGMENT THE SPLEEN", [(1, "", "")]),
    ("segment the spleeen", [(1, "", "")]),           # typo, distance 1
    ("gallbladdr and pancreatc tumor", [(4, "", ""), (28, "", "")]),
    ("left kidney", [(3, "left", "")]),
    ("both kidneys", [(2, "right", ""), (3, "left", "")]),
    ("right lung nodule", [(30, "right", "")]),
    ("renal mass in the lower pole of the left kidney", [(26, "left", "lower pole")]),
    ("IVC", [(9, "", "")]),
    ("oesophageal tumour", None),                       # no oesophageal tumour class: refused
])
def test_phrasing(parser, prompt, expected):
    i = parser.parse(prompt)
    if expected is None:
        assert not i.targets and (i.unsupported or i.unsupported_phrase)
    else:
        assert _keys(i) == expected


def test_questions_map_to_actions(parser):
    assert parser.parse("how big is the spleen?").actions == ("measure",)
    assert parser.parse("how many liver lesions are there?").actions == ("count",)
    assert parser.parse("where is the tumour?").actions == ("locate",)


@pytest.mark.parametrize("bad, message", [
    ("", "empty"), ("   ", "empty"), ("x" * (MAX_PROMPT_CHARS + 1), "limit"), (42, "text"),
    ("segment\x00the liver", "control"), ("12345 !!!", "no words"), (b"\xff\xfe", "UTF-8"),
])
def test_bad_prompts_are_invalid(parser, bad, message):
    with pytest.raises(InvalidInputError, match=message):
        parser.parse(bad)


def test_edit_distance():
    assert edit_distance("kidny", "kidney", 2) == 1
    assert edit_distance("pancraes", "pancreas", 2) == 1  # transposition
    assert edit_distance("liver", "spleen", 2) == 3       # over the limit: limit + 1
