"""Parse: a clinician's sentence → targets, actions, conditionality — or a refusal.

Rules where rules are exact, the text encoder where phrasing varies:

1. normalise (Unicode, case, British spellings, plurals) and correct typos within
   edit distance 1 (words of 4–5 letters) or 2 (6+ letters) to a word the lexicon
   knows;
2. match the lexicon's phrases, longest first: organs, named lesions, lesion
   words, sub-regions, sides, actions, conditional phrases, anatomy outside the
   vocabulary;
3. compose: a side goes to the organ or lesion after it; a lesion word takes its
   host organ from the words before it ("pancreatic head mass", "left renal
   mass") or after a preposition ("tumor in the tail of the pancreas"); a
   sub-region goes to the nearest target of its organ;
4. words left over (not lexicon, not filler) are compared, as a phrase, with every
   class's name and synonyms through the text encoder: a cosine similarity of at
   least ``SIMILARITY_THRESHOLD`` names that class; below it, and with nothing
   else understood, the request is ``unsupported`` with the nearest classes as
   suggestions. Anatomy outside the vocabulary ("brain", "heart") is never
   mapped to a class.

The threshold is calibrated by ``bench/calibrate_parse.py`` on phrases kept apart
from the labelled prompt set (docs/benchmarks.md gives the figures).
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from radmesh.common import vocabulary as V
from radmesh.common.errors import InvalidInputError
from radmesh.common.intent_wire import ACTIONS
from radmesh.text import lexicon as L

MAX_PROMPT_CHARS = 1000
# Cosine similarity (MiniLM, L2-normalised) at which a left-over phrase names a class.
SIMILARITY_THRESHOLD = 0.57
# Words that point back at earlier findings ("measure it", "where are they?"); the plural ones
# make the reference plural.
_BACK_SINGULAR = {"it", "its", "this", "that"}
_BACK_PLURAL = {"them", "they", "their", "these", "those"}
# Actions that, with no target and nothing else left over, are a question about earlier
# findings ("how big?", "where exactly?", "how many are there?") rather than a request for nothing.
_QUESTION_ACTIONS = {"measure", "locate", "count", "compare"}
_MAX_PHRASE = 5
_PREPOSITIONS = {"in", "of", "within", "involving", "on", "at", "from", "inside", "arising", "affecting",
                 "along", "near", "into", "off", "abutting", "adjacent"}
_SKIPPABLE = L.FILLER | {"and", "its", "their"}
_COPULA = {"are", "is", "was", "were", "located", "situated", "seen", "lying", "that", "which", "sitting", "burden",
           "load"}
# The organ concept a lesion class belongs to (for sub-regions and sides).
_LESION_CONCEPT = {**{c: k for k, c in L.TUMOR_OF.items() if k != "rectum"}, **{c: k for k, c in L.CYST_OF.items()}}


@dataclass(frozen=True)
class Target:
    class_index: int
    laterality: str = ""   # "left" | "right" | ""
    subregion: str = ""    # vocabulary sub-region or ""
    phrase: str = ""       # the words that selected it
    score: float = 1.0     # 1 exact, < 1 fuzzy or by similarity

    @property
    def key(self) -> tuple[int, str, str]:
        return (self.class_index, self.laterality, self.subregion)


@dataclass(frozen=True)
class Intent:
    targets: tuple[Target, ...] = ()
    actions: tuple[str, ...] = ()
    if_any: bool = False
    confidence: float = 1.0
    unsupported: bool = False
    unsupported_phrase: str = ""
    suggestions: tuple[int, ...] = ()
    refers_back: bool = False  # names no class but points at earlier findings ("measure it")
    refers_back_plural: bool = False  # ... plurally ("them", "they")

    def to_dict(self) -> dict[str, Any]:
        return {
            "targets": [{"class_index": t.class_index, "name": V.get(t.class_index).name,
                         "laterality": t.laterality, "subregion": t.subregion} for t in self.targets],
            "actions": list(self.actions),
            "if_any": self.if_any,
            "confidence": round(float(self.confidence), 4),
            "unsupported": self.unsupported,
            "unsupported_phrase": self.unsupported_phrase,
            "suggestions": [{"class_index": c, "name": V.get(c).name} for c in self.suggestions],
            "refers_back": self.refers_back,
            "refers_back_plural": self.refers_back_plural,
            "matched_phrases": [t.phrase for t in self.targets],
        }


# ---- tokens ------------------------------------------------------------------------

@dataclass
class _Token:
    word: str          # normalised
    plural: bool = False
    corrected: bool = False


@dataclass
class _Mention:
    kind: str          # organ, lesion, lesion_word, subregion, side, oov, everything, all_organs,
                       # action, if_any, pronoun
    start: int
    end: int           # exclusive token index
    value: Any
    words: str
    side: str = ""
    used: bool = False
    plural: bool = False
    corrected: bool = False
    host: "_Mention | None" = None
    subregion: str = ""
    extra: dict = field(default_factory=dict)


def _phrase_tables() -> list[tuple[str, dict]]:
    lesion_synonyms = {}
    for c in V.CLASSES:
        if c.is_lesion:
            for s in (c.name.lower(), *c.synonyms):
                words = tuple(_normalise_words(s)[0])
                if len(words) > 1:  # single words ("nodule", "bosniak") are composed or named below
                    lesion_synonyms[words] = c.index
    # Order decides ties between equally long matches. Keys go through the same
    # normalisation as prompts ("all structures" → ("all", "structure")).
    def norm(table):
        return {tuple(_normalise_words(" ".join(k))[0]): v for k, v in table.items()}

    return [(kind, norm(table)) for kind, table in [
        ("oov", {p: " ".join(p) for p in L.OUT_OF_VOCABULARY}),
        ("lesion", {**lesion_synonyms, **L.LESION_PHRASES}),
        ("everything", {p: True for p in L.EVERYTHING_PHRASES}),
        ("all_organs", {p: True for p in L.ALL_ORGANS_PHRASES}),
        ("subregion", L.SUBREGION_PHRASES),
        ("organ", L.ORGAN_PHRASES),
        ("action", L.ACTION_PHRASES),
        ("if_any", {p: True for p in L.IF_ANY_PHRASES}),
        ("lesion_word", {(w,): w for w in L.TUMOR_WORDS | L.ALL_LESION_WORDS | L.CYST_WORDS | L.NODULE_WORDS}),
        ("side", {(w,): s for w, s in L.SIDES.items()}),
        ("pronoun", {("its",): "its", ("their",): "their", ("it",): "it", ("them",): "them"}),
    ]]


def _normalise_words(text: str) -> tuple[list[str], list[bool]]:
    t = unicodedata.normalize("NFKC", text).lower().replace("’", "'").replace("'s ", " ").replace("'s", "")
    out, plural = [], []
    for w in re.findall(r"[a-z0-9]+", t):
        w, p = _norm_word(w)
        out.append(w)
        plural.append(p)
    return out, plural


def _norm_word(w: str) -> tuple[str, bool]:
    """(American singular form, whether it was plural)."""
    w = L.SPELLING.get(w, w)
    if w in L.PLURALS:
        return L.SPELLING.get(L.PLURALS[w], L.PLURALS[w]), True
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss") and w[:-1] in _known_stems():
        return w[:-1], True
    return w, False


@lru_cache(maxsize=1)
def _known_stems() -> frozenset[str]:
    words: set[str] = set()
    for table in (L.ORGAN_PHRASES, L.SUBREGION_PHRASES, L.ACTION_PHRASES, L.LESION_PHRASES):
        for p in table:
            words.update(p)
    for group in (L.OUT_OF_VOCABULARY, L.EVERYTHING_PHRASES, L.ALL_ORGANS_PHRASES, L.IF_ANY_PHRASES):
        for p in group:
            words.update(p)
    words |= L.TUMOR_WORDS | L.ALL_LESION_WORDS | L.CYST_WORDS | L.NODULE_WORDS | set(L.SIDES)
    for c in V.CLASSES:
        for s in (c.name.lower(), *c.synonyms):
            words.update(re.findall(r"[a-z0-9]+", s))
    return frozenset(words)


@lru_cache(maxsize=1)
def _fuzzy_targets() -> tuple[tuple[str, int], ...]:
    """(word, largest edit distance) a typo may be corrected to: organ, lesion and OOV anatomy
    words of 5+ letters (distance 2 from 6 letters on), action verbs (distance 1), "cyst"."""
    words: set[str] = set()
    for table in (L.ORGAN_PHRASES, L.LESION_PHRASES):
        for p in table:
            words.update(p)
    for p in L.OUT_OF_VOCABULARY:
        words.update(p)
    words |= L.TUMOR_WORDS | L.ALL_LESION_WORDS | L.CYST_WORDS | L.NODULE_WORDS
    for c in V.CLASSES:
        for s in (c.name.lower(), *c.synonyms):
            words.update(re.findall(r"[a-z]+", s))
    out = {_norm_word(w)[0]: 2 for w in words if len(w) >= 5}
    out.update({w: 1 for w in ("segment", "measure", "outline", "contour", "delineate", "locate", "report",
                               "diameter", "volume", "bilateral", "everything")})
    out["cyst"] = 1
    return tuple(sorted(out.items()))


def edit_distance(a: str, b: str, limit: int) -> int:
    """Damerau–Levenshtein (adjacent transpositions) distance, or limit + 1 once it exceeds limit."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2, prev = None, list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if prev2 is not None and i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]


def _correct(word: str) -> str | None:
    """The unique closest fuzzy target within the allowed distance, or None."""
    if len(word) < 4 or word in _known_stems() or word in L.FILLER or word in L.COMMON_WORDS or word.isdigit():
        return None
    word_limit = 1 if len(word) <= 5 else 2
    best, best_d, tie = None, 3, False
    for cand, cand_limit in _fuzzy_targets():
        limit = min(word_limit, cand_limit)
        d = edit_distance(word, cand, limit)
        if d > limit:
            continue
        if d < best_d:
            best, best_d, tie = cand, d, False
        elif d == best_d:
            tie = True
    return None if best is None or tie else best


# ---- the parser ----------------------------------------------------------------------

Embedder = Callable[[Sequence[str]], np.ndarray]


class Parser:
    """Parse sentences. ``embed`` maps texts to L2-normalised rows (MiniLM by default),
    loaded on first need: requests the lexicon fully explains never touch it."""

    def __init__(self, embed: Embedder | None = None, threshold: float = SIMILARITY_THRESHOLD):
        self._embed = embed
        self.threshold = threshold
        self._tables = _phrase_tables()
        self._lock = threading.Lock()
        self._bank: tuple[np.ndarray, list[int]] | None = None

    # -- the encoder, lazily
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self._embed is None:
            from radmesh.text.encoders import get_encoder

            self._embed = get_encoder("minilm").encode
        return self._embed(texts)

    def class_bank(self) -> tuple[np.ndarray, list[int]]:
        """Embeddings of every class name and synonym, with their class indices."""
        with self._lock:
            if self._bank is None:
                phrases, owners = [], []
                for c in V.CLASSES:
                    for s in (c.name.lower(), *c.synonyms):
                        phrases.append(s)
                        owners.append(c.index)
                self._bank = (self.embed(phrases), owners)
        return self._bank

    def nearest(self, phrase: str, k: int = 3) -> list[tuple[int, float]]:
        """The k classes most similar to ``phrase``, best first, with cosine similarity."""
        bank, owners = self.class_bank()
        sims = bank @ self.embed([phrase])[0]
        best: dict[int, float] = {}
        for i in np.argsort(-sims):
            c = owners[int(i)]
            if c not in best:
                best[c] = float(sims[i])
            if len(best) == k:
                break
        return list(best.items())

    # -- parsing
    def parse(self, prompt: Any) -> Intent:
        text = validate_prompt(prompt)
        words, plural = _normalise_words(text)
        tokens = [_Token(w, p) for w, p in zip(words, plural)]
        for t in tokens:
            fixed = _correct(t.word)
            if fixed is None and t.word.endswith("s"):  # "cists": correct the singular
                fixed = _correct(t.word[:-1])
                t.plural = t.plural or fixed is not None
            if fixed is not None:
                t.word, was_plural = _norm_word(fixed)
                t.plural, t.corrected = t.plural or was_plural, True
        mentions, leftovers = self._match(tokens)
        return self._compose(tokens, mentions, leftovers)

    def _match(self, tokens: list[_Token]) -> tuple[list[_Mention], list[list[int]]]:
        words = [t.word for t in tokens]
        mentions: list[_Mention] = []
        leftovers: list[list[int]] = []
        i = 0
        while i < len(words):
            found = None
            for n in range(min(_MAX_PHRASE, len(words) - i), 0, -1):
                key = tuple(words[i:i + n])
                for kind, table in self._tables:
                    if key in table:
                        found = (kind, n, table[key])
                        break
                if found:
                    break
            if found:
                kind, n, value = found
                key = tuple(words[i:i + n])
                span = tokens[i:i + n]
                mentions.append(_Mention(kind, i, i + n, value, " ".join(words[i:i + n]),
                                         side=L.IMPLIED_SIDE.get(key, "") if kind == "organ" else "",
                                         plural=any(t.plural for t in span),
                                         corrected=any(t.corrected for t in span)))
                i += n
                continue
            w = words[i]
            if w not in _SKIPPABLE and not w.isdigit():
                if leftovers and leftovers[-1][-1] == i - 1:
                    leftovers[-1].append(i)
                else:
                    leftovers.append([i])
            i += 1
        return mentions, leftovers

    def _compose(self, tokens: list[_Token], mentions: list[_Mention], leftovers: list[list[int]]) -> Intent:
        words = [t.word for t in tokens]
        def negated(m: _Mention) -> bool:
            return any(tuple(words[max(0, m.start - len(n)):m.start]) == n for n in L.NEGATIONS)

        def couinaud(m: _Mention) -> bool:  # "segment 7" of the liver is a place, not an action
            return m.words == "segment" and m.end < len(words) and (words[m.end].isdigit() or words[m.end] in
                                                                   ("i", "ii", "iii", "iv", "v", "vi", "vii", "viii"))

        citing = {"says", "say", "said", "mentions", "mentioned", "describes", "described", "notes", "noted",
                  "states", "stated", "reported", "seen", "shows", "showed"}

        def cited(m: _Mention) -> bool:  # "the report says ...", "mentioned in the report": a source
            if m.value != "report" or m.start == 0 or words[m.start - 1] != "the":
                return False
            return (m.end < len(words) and words[m.end] in citing) or (
                m.start >= 3 and words[m.start - 2] in ("in", "from", "per") and words[m.start - 3] in citing)

        actions = {m.value for m in mentions if m.kind == "action" and not negated(m) and not couinaud(m)
                   and not cited(m)}
        # "how many ... are there?" asks for a count, not whether any exist
        count_at = min((m.start for m in mentions if m.kind == "action" and m.value == "count"), default=None)
        if_any = any(m.kind == "if_any" and not (count_at is not None and m.start > count_at
                                                  and tuple(m.words.split()) in L.PRESENCE_QUESTIONS)
                     for m in mentions)
        things = [m for m in mentions if m.kind in ("organ", "lesion", "lesion_word", "oov")]

        def gap_ok(a: int, b: int, allow: set[str] = _SKIPPABLE, also: tuple[_Mention, ...] = ()) -> bool:
            """Tokens between a and b are all skippable words, numbers, sides, sub-regions,
            lesion words folded into a named lesion, or the mentions in ``also``."""
            inner = [m for m in mentions if a <= m.start and m.end <= b]
            covered = {k for m in inner if m.kind in ("side", "subregion") or "same_as" in m.extra
                       or any(m is x for x in also) for k in range(m.start, m.end)}
            return all(words[k] in allow or k in covered or any(ch.isdigit() for ch in words[k])
                       for k in range(a, b))

        # sides → the next thing within three tokens, else the thing just before
        for m in mentions:
            if m.kind != "side":
                continue
            nxt = next((t for t in things if t.start >= m.end and t.start - m.end <= 3 and gap_ok(m.end, t.start)),
                       None)
            on_side = m.start >= 1 and words[m.start - 1] in ("on", "the") and (nxt is None)
            prv = next((t for t in reversed(things) if t.end <= m.start
                        and m.start - t.end <= (4 if on_side else 1)), None)
            target = nxt or prv
            if target is not None and not target.side:
                target.side = m.value

        # lesion words → host organ (before, or after a preposition), or consumed by OOV anatomy
        last_organ: _Mention | None = None
        for idx, m in enumerate(things):
            if m.kind == "organ":
                last_organ = m
            if m.kind != "lesion_word":
                continue
            prev = things[idx - 1] if idx else None
            # "Bosniak cyst", "HCC lesion": the lesion word belongs to the named lesion before it
            if prev is not None and prev.kind == "lesion" and (m.start == prev.end or (
                    m.start == prev.end + 1 and any(ch.isdigit() for ch in words[prev.end]))):
                m.extra["same_as"] = prev
                continue
            # "the left kidney with the mass in it": the organ stays a target and hosts the lesion
            it = next((p for p in mentions if p.kind == "pronoun" and p.start > m.start and p.start - m.end <= 2
                       and words[p.start - 1] in _PREPOSITIONS), None)
            if it is not None and last_organ is not None:
                m.host, m.extra["pronoun"] = last_organ, True
                continue
            if prev is not None and prev.kind in ("organ", "oov") and m.start - prev.end <= 3 \
                    and gap_ok(prev.end, m.start, _SKIPPABLE - {"and", "or"}):
                m.host = prev
                continue
            pron = next((p for p in mentions if p.kind == "pronoun" and p.end <= m.start and m.start - p.end <= 2
                         and p.value in ("its", "their")), None)
            if pron is not None and last_organ is not None:
                m.host, m.extra["pronoun"] = last_organ, True
                continue
            # "right hepatic lobe lesion", "pancreatic tail mass" without the organ word
            sub_before = next((x for x in mentions if x.kind == "subregion" and x.end <= m.start
                               and m.start - x.end <= 1), None)
            if sub_before is not None and self._fits(m, sub_before.value[0]):
                m.extra["implied_concept"] = sub_before.value[0]
                continue
            after = next((t for t in things[idx + 1:] if t.kind in ("organ", "oov")), None)
            k = m.end
            # "lesions are in the liver", "tumour volume in the liver"
            while k < len(words) and k - m.end < 4 and (words[k] in _COPULA or any(
                    x.kind in ("action", "if_any") and x.start <= k < x.end for x in mentions)):
                k += 1
            if after is not None and k < len(words) and words[k] in _PREPOSITIONS \
                    and after.start - k <= 8 and gap_ok(k, after.start):
                m.host = after
                # "lesions in the liver and lungs": every coordinated organ hosts one
                more, last = [], after
                for t in (things[things.index(after) + 1:] if m.plural else []):
                    if t.kind == "organ" and t.value in L.TUMOR_OF and t.start - last.end <= 3 \
                            and "and" in words[last.end:t.start] and gap_ok(last.end, t.start):
                        more.append(t)
                        last = t
                    else:
                        break
                m.extra["more_hosts"] = more
                continue
            sub = next((x for x in mentions if x.kind == "subregion" and x.start >= k and x.start - k <= 3), None)
            if sub is not None and k < len(words) and words[k] in _PREPOSITIONS and self._fits(m, sub.value[0]):
                m.extra["implied_concept"] = sub.value[0]  # "the tumor in the tail" is pancreatic
                continue

        # "the mass" / "the nodule" after a named one is the same lesion
        seen: _Mention | None = None
        for m in things:
            if m.kind == "lesion" or (m.kind == "lesion_word" and (m.host is not None or "implied_concept" in m.extra)):
                seen = m
            elif m.kind == "lesion_word" and m.host is None and seen is not None and "same_as" not in m.extra \
                    and m.start > 0 and words[m.start - 1] in ("the", "this", "that", "these", "those") \
                    and (m.value in L.TUMOR_WORDS or self._concept(seen) == self._word_concept(m.value)):
                m.extra["same_as"] = seen

        # a lesion followed by its own organ ("RCC right kidney", "cyst in the lower pole of the
        # left kidney", "the cancer ... which part of the pancreas") names one target, not two
        hosts_used = {id(h) for m in things if m.kind == "lesion_word" and not m.extra.get("pronoun")
                      for h in ([m.host] if m.host is not None else []) + m.extra.get("more_hosts", [])}
        for idx, m in enumerate(things):
            concept = (m.host.value if m.host is not None and m.host.kind == "organ" else
                       m.extra.get("implied_concept")) if m.kind == "lesion_word" else \
                _LESION_CONCEPT.get(m.value) if m.kind == "lesion" else None
            if concept is None:
                continue
            for t in things[idx + 1:]:
                if t.kind != "organ" or id(t) in hosts_used or t.value != concept:
                    continue
                between = words[m.end:t.start]
                asked_where = any(w in ("which", "where") for w in words[max(0, t.start - 4):t.start])
                own_host = (m.host,) if m.kind == "lesion_word" and m.host is not None else ()
                if (t.start - m.end <= 8 and "and" not in between and "or" not in between
                        and gap_ok(m.end, t.start, also=own_host)) or asked_where:
                    hosts_used.add(id(t))
                    if not m.side and t.side:
                        m.side = t.side
                break

        # "which lobe of the liver is the HCC in?": the organ only says where to look
        for t in things:
            if t.kind != "organ" or id(t) in hosts_used:
                continue
            if any(w in ("which", "where") for w in words[max(0, t.start - 4):t.start]) and any(
                    self._concept(m) == t.value for m in things if m.start > t.end and m.kind in ("lesion", "lesion_word")):
                hosts_used.add(id(t))

        targets: list[Target] = []
        oov_phrases: list[str] = []

        def add(classes: Sequence[int], m: _Mention, side: str = "") -> None:
            score = 0.9 if m.corrected else 1.0
            for c in classes:
                info = V.get(c)
                lat = info.laterality.value if info.laterality is not V.Laterality.NONE else side
                lat = "" if lat in ("both", "none") else lat
                targets.append(Target(c, lat, "", m.words, score))
            m.extra["targets"] = (len(targets) - len(classes), len(targets))

        for m in things:
            if m.kind == "oov":
                if id(m) not in hosts_used:
                    oov_phrases.append(m.words)
                continue
            if m.kind == "organ":
                if id(m) in hosts_used:
                    continue
                concept = m.value
                if concept in L.PAIRED and m.side in ("left", "right"):
                    add((L.PAIRED[concept][m.side],), m)
                else:
                    add(L.CONCEPT_CLASSES[concept], m)
            elif m.kind == "lesion":
                add((m.value,), m, m.side)
            elif m.kind == "lesion_word":
                if "same_as" in m.extra:
                    continue
                host = m.host
                if host is not None and host.kind == "oov":
                    oov_phrases.append(f"{host.words} {m.words}")
                    continue
                if host is not None:
                    table = L.CYST_OF if m.value in L.CYST_WORDS else L.TUMOR_OF
                    cls = table.get(host.value)
                    if cls is None or (m.value in L.NODULE_WORDS and host.value != "lung"):
                        oov_phrases.append(f"{host.words} {m.words}")
                        continue
                    m.extra["concept"] = host.value
                    add((cls,), m, m.side or host.side)
                    for other in m.extra.get("more_hosts", []):
                        add((L.TUMOR_OF[other.value],), other, other.side)
                elif "implied_concept" in m.extra:
                    m.extra["concept"] = m.extra["implied_concept"]
                    table = L.CYST_OF if m.value in L.CYST_WORDS else L.TUMOR_OF
                    add((table[m.extra["concept"]],), m, m.side)
                elif m.value in L.CYST_WORDS:
                    add((V.KIDNEY_CYST,), m, m.side)
                elif m.value in L.NODULE_WORDS:
                    add((V.LUNG_TUMOR,), m, m.side)
                elif m.value in L.ALL_LESION_WORDS:
                    add(V.LESION_INDICES, m, m.side)
                else:
                    add(L.ALL_TUMORS, m, m.side)
        for m in mentions:
            if m.kind == "everything":
                add(tuple(c.index for c in V.CLASSES), m)
            elif m.kind == "all_organs":
                add(tuple(c.index for c in V.CLASSES if not c.is_lesion), m)

        # sub-regions → the nearest target mention of their organ concept
        for m in mentions:
            if m.kind != "subregion":
                continue
            concept, sub = m.value
            owners = [t for t in things if "targets" in t.extra and self._concept(t) == concept]
            if not owners:
                continue
            # "right lobe of the liver": the owner follows "of"; "pancreatic tail": it precedes
            follows_of = m.end < len(words) and words[m.end] == "of"
            after = [t for t in owners if t.start >= m.end and t.start - m.end <= 3]
            owner = after[0] if follows_of and after else \
                min(owners, key=lambda t: min(abs(t.start - m.end), abs(m.start - t.end)))
            a, b = owner.extra["targets"]
            for k in range(a, b):
                t = targets[k]
                if t.subregion:  # "the right lobe and left lobe": one target per sub-region
                    targets.append(Target(t.class_index, t.laterality, sub, t.phrase, t.score))
                else:
                    targets[k] = Target(t.class_index, t.laterality, sub, t.phrase, t.score)

        # left-over phrases: the encoder's similarity, then a refusal if nothing was understood
        suggestions: tuple[int, ...] = ()
        # a left-over next to out-of-vocabulary anatomy belongs to it ("carotid arteries")
        oov_spans = [(m.start, m.end) for m in mentions if m.kind == "oov"]
        leftovers = [c for c in leftovers if not any(c[0] == e or c[-1] + 1 == s for s, e in oov_spans)]
        content = [" ".join(words[k] for k in chunk) for chunk in leftovers
                   if any(len(words[k]) >= 4 and words[k] not in L.COMMON_WORDS for k in chunk)]
        for phrase in content:
            best = self.nearest(phrase, k=1)
            if best and best[0][1] >= self.threshold:
                c, sim = best[0]
                info = V.get(c)
                targets.append(Target(c, info.laterality.value if info.laterality is not V.Laterality.NONE else "",
                                      "", phrase, sim))

        unique: dict[tuple[int, str, str], Target] = {}
        for t in targets:
            unique.setdefault(t.key, t)
        final = tuple(sorted(unique.values(), key=lambda t: t.key))

        unsupported_phrase = " ".join(oov_phrases)
        if not final and not oov_phrases and not content:
            # Nothing named and nothing left unexplained: "measure it", "how big is it?", "and them?"
            # point back at earlier findings; a conversation resolves them (the text service cannot).
            plural = any(w in _BACK_PLURAL for w in words)
            if plural or any(w in _BACK_SINGULAR for w in words) or actions & _QUESTION_ACTIONS:
                ordered = tuple(a for a in ACTIONS if a in actions)
                return Intent((), ordered, if_any, 1.0, refers_back=True, refers_back_plural=plural)
        if not final and not (actions == {"report"} and not oov_phrases):
            unsupported_phrase = unsupported_phrase or " ".join(content) or " ".join(words)
            suggestions = tuple(c for c, _ in self.nearest(unsupported_phrase)) if unsupported_phrase else ()
            sims = self.nearest(unsupported_phrase, k=1) if unsupported_phrase else []
            confidence = 1.0 - max(0.0, sims[0][1]) if sims else 1.0
            return Intent((), (), False, round(confidence, 4), True, unsupported_phrase, suggestions)
        if oov_phrases:
            suggestions = tuple(c for c, _ in self.nearest(unsupported_phrase))
        if final and not actions:
            actions = {"segment"}
        ordered = tuple(a for a in ACTIONS if a in actions)
        confidence = min((t.score for t in final), default=1.0)
        return Intent(final, ordered, if_any, round(confidence, 4), False, unsupported_phrase, suggestions)

    @staticmethod
    def _word_concept(word: str) -> str | None:
        """The only organ a bare lesion word can mean: nodules are pulmonary, cysts renal."""
        return "lung" if word in L.NODULE_WORDS else "kidney" if word in L.CYST_WORDS else None

    def _fits(self, m: _Mention, concept: str) -> bool:
        """Whether lesion word ``m`` can be a lesion of organ ``concept``."""
        if m.value in L.CYST_WORDS:
            return concept in L.CYST_OF
        if m.value in L.NODULE_WORDS:
            return concept == "lung"
        return concept in L.TUMOR_OF

    @staticmethod
    def _concept(m: _Mention) -> str | None:
        if m.kind == "organ":
            return m.value
        if "concept" in m.extra:
            return m.extra["concept"]
        if m.kind == "lesion_word" and m.host is not None and m.host.kind == "organ":
            return m.host.value
        if "implied_concept" in m.extra:
            return m.extra["implied_concept"]
        if m.kind == "lesion":
            return _LESION_CONCEPT.get(m.value)
        if m.kind == "lesion_word" and m.value in L.NODULE_WORDS:
            return "lung"
        if m.kind == "lesion_word" and m.value in L.CYST_WORDS:
            return "kidney"
        return None


def validate_prompt(prompt: Any) -> str:
    """The prompt as text, or InvalidInputError naming what is wrong with it."""
    if isinstance(prompt, bytes):
        try:
            prompt = prompt.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInputError("prompt is not UTF-8 text") from None
    if not isinstance(prompt, str):
        raise InvalidInputError(f"prompt must be text, got {type(prompt).__name__}")
    if not prompt.strip():
        raise InvalidInputError("prompt is empty; say what to segment, measure or report")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidInputError(f"prompt has {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
    bad = sum(1 for ch in prompt if unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn") and ch not in "\t\n\r")
    if bad:
        raise InvalidInputError(f"prompt holds {bad} control or non-text character(s); send plain text")
    if not re.search(r"[A-Za-z]", unicodedata.normalize("NFKD", prompt)):
        raise InvalidInputError("prompt holds no words")
    return prompt


_DEFAULT: Parser | None = None
_DEFAULT_LOCK = threading.Lock()


def parse(prompt: Any) -> Intent:
    """Parse with the shared default parser (MiniLM similarity)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = Parser()
    return _DEFAULT.parse(prompt)
