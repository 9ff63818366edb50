"""Names and titles found in text, kept whole: the units that multi-hop queries are built of.

Why not single capitalised words: "Kiss and Tell", "Big Stone Gap", "University of Kansas"
and "The Hork-Bajir Chronicles" are one entity each, and a sub-query or hop query made of
one of their words ("Tell", "Gap") retrieves noise. Why not every capitalised span: years,
nationality adjectives ("American"), sentence-initial capitals ("However", "The film")
and citation markers ("[1]") are not names, and a hop query built from one of them leads
nowhere. No model needed: the rules run on any corpus, whatever its titles look like.
"""

from __future__ import annotations

import re

MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
# demonyms and other capitalised adjectives that describe rather than name
DEMONYMS = frozenset(
    """american british english french german italian spanish portuguese dutch belgian swiss austrian
    irish scottish welsh canadian mexican brazilian argentine argentinian chilean colombian peruvian
    cuban australian chinese japanese korean indian pakistani bangladeshi russian ukrainian polish czech
    slovak hungarian romanian bulgarian greek turkish iranian persian iraqi israeli egyptian arab arabic
    african nigerian kenyan ethiopian swedish norwegian danish finnish icelandic european asian latin
    catholic christian muslim jewish hindu buddhist protestant democratic republican
    roman byzantine ottoman soviet victorian""".split()
)
# capitalised words that start sentences or titles but are not names on their own
_NOT_NAMES = frozenset(
    """the a an this that these those he she it they his her its their our we i you there here
    however although though after before during when while since because if as at in on of for from to
    by with without also then thus yet but and or nor so both either neither not no yes one two three
    who what which where why how whose whom is are was were be been has have had do does did
    mr mrs ms dr sir st mt jr sr founded born located based known called named following according
    many most some several other another each every all any such only first second last later early""".split()
)
_CONNECT = r"(?:of|the|de|du|da|di|del|der|van|von|upon|la|le|y)"
_CAP = r"(?:[A-Z][\w'’.&-]*|\d+[A-Za-z][\w'’-]*)"
_SPAN = re.compile(rf"{_CAP}(?:\s+(?:{_CONNECT}\s+){{0,2}}{_CAP})*")
_MARKER = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]")
_QUOTED = re.compile(r"[\"“”]([^\"“”]{2,80})[\"“”]")
_SENT_START = re.compile(r"(?:^|[.!?:;]\s+|\n\s*|[\"“(]\s*)$")
# a full stop that ends a sentence, not an abbreviation ("Dr. Aldana", "St. Louis", "J. R.")
_BREAK = re.compile(r"(?<![A-Z])(?<!\bDr)(?<!\bMr)(?<!\bMrs)(?<!\bMs)(?<!\bSt)(?<!\bMt)(?<!\bJr)(?<!\bSr)\.\s+")
_TITLES = re.compile(r"^(?:dr|mr|mrs|ms|prof|sir|st|lord|lady|king|queen|president|general)\.?\s+", re.I)


def _clean(span: str) -> str:
    span = span.strip(" .,;:'’\"“”()-")
    words = span.split()
    # leading words that only open a sentence ("The", "In", "However"), trailing connectors
    while words and words[0].lower() in _NOT_NAMES and len(words) > 1:
        words = words[1:]
    while words and words[-1].lower() in {"of", "on", "the", "de", "and", "for", "in", "y", "la", "le"}:
        words = words[:-1]
    return " ".join(words)


def is_name(span: str, sentence_initial: bool = False) -> bool:
    """A span that can stand for an entity: not a year, a demonym or a lone function word."""
    words = span.split()
    if not words:
        return False
    low = span.lower()
    if not re.search(r"[^\W\d_]", span):  # "1931", "3,677"
        return False
    if len(words) == 1:
        w = low.strip(".")
        if w in _NOT_NAMES or w in DEMONYMS or w in (m.lower() for m in MONTHS):
            return False
        if len(w) < 2:
            return False
    if all(w.lower().strip(".") in DEMONYMS | _NOT_NAMES for w in words):
        return False
    return True


def names(text: str) -> list[str]:
    """Names and titles in ``text``, in order of first appearance, each kept whole.

    Quoted titles count as names whatever their case. A single capitalised word at the start
    of a sentence counts only when it is not a common word ("However", "Their")."""
    text = _MARKER.sub(" ", text)
    out: list[str] = []
    for q in _QUOTED.findall(text):
        q = q.strip(" .,")
        if q and q not in out and re.search(r"[^\W\d_]", q):
            out.append(q)
    for m in _SPAN.finditer(text):
        raw = m.group(0)
        start = m.start()
        initial = bool(_SENT_START.search(text[:start]))
        # a sentence break inside the span: "... in Paris. The city" -> two spans
        for k, part in enumerate(_BREAK.split(raw)):
            span = _clean(part)
            if not span:
                continue
            lone_initial = (initial or k > 0) and len(span.split()) == 1 and span == part.strip(" .,")
            if lone_initial and span.lower() in _NOT_NAMES:
                continue
            if is_name(span, sentence_initial=lone_initial) and span not in out:
                out.append(span)
    return out


def surface_forms(name: str) -> set[str]:
    """Lower-cased forms a later mention may use: the whole name, without an honorific, and
    the last word of a person-like name ("Dr. Maria Aldana" -> "maria aldana", "aldana")."""
    base = _TITLES.sub("", name.strip()).strip()
    forms = {name.lower(), base.lower()}
    words = base.split()
    if 2 <= len(words) <= 4 and all(w[:1].isupper() for w in words):
        last = words[-1].strip(".,").lower()
        if len(last) > 3 and last not in _NOT_NAMES:
            forms.add(last)
    return {f for f in forms if f}
