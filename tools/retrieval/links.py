"""An entity link graph over an index: chunk A links to chunk B when A mentions B's subject.

Why: in a bridge question the second document rarely resembles the question ("the town
where the founder of Osric Dynamics was born"), so no similarity search puts it next to
the first one; but the first document names it ("founded by Ingrid Holloway"). Following
such mentions is what hyperlink-following retrievers and HippoRAG do. Here the links are
computed from the text alone, so they work on any corpus:

* a chunk's *subject* is the name(s) its first sentence opens with (encyclopaedic and
  report-style text introduces its topic first), plus its title when the title reads like a
  name (not a file or report name such as ``minutes-2019-07.md``);
* each subject is indexed under its surface forms (whole name, without an honorific, a
  person's surname: "Dr. Maria Aldana" -> "maria aldana", "aldana"), and a single-word
  form that many chunks contain is dropped (it would link everything);
* a chunk mentions B when one of B's forms occurs in its text as whole words.

Built lazily once per index object (a few seconds per 100k chunks) and cached.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections import Counter
from collections.abc import Sequence
from typing import Any

from hoprank.tools.names import names, surface_forms

_WORDS = re.compile(r"[\w'’&.-]+")
_FILEISH = re.compile(r"(\.[a-z0-9]{1,5}$)|[/\\_]|^\S*\d{4}[-_]\d{2}|^[a-z0-9-]+$")
MAX_NGRAM = 6


def _norm_words(text: str) -> list[str]:
    return [w.strip(".,;:'’").lower() for w in _WORDS.findall(text)]


def title_is_name(title: str) -> bool:
    """'Ingrid Holloway' yes; 'minutes-2019-07.md', 'report_q3', 'notes' no."""
    t = title.strip()
    return bool(t) and not _FILEISH.search(t) and any(c.isupper() for c in t[:1])


def _first_sentence(text: str) -> str:
    m = re.match(r"(.{20,400}?[.!?])(\s|$)", text.strip(), re.S)
    return m.group(1) if m else text[:300]


class LinkGraph:
    """Subjects of chunks and the mention lookup that links them."""

    def __init__(self, chunks: Sequence[Any], max_df_share: float = 0.01, min_df_cap: int = 5):
        self.n = len(chunks)
        self.subjects: list[set[str]] = []
        for c in chunks:
            found = names(_first_sentence(c.text))[:2]
            title = getattr(c, "title", "") or ""
            if title_is_name(title):
                found.append(re.sub(r"\s*\([^)]*\)$", "", title))  # "Kiss and Tell (1945 film)"
            forms: set[str] = set()
            for name in found:
                forms |= surface_forms(name)
            self.subjects.append({f for f in forms if len(f) > 3})
        # how many chunks contain each single word: a form that common links everything
        df: Counter[str] = Counter()
        for c in chunks:
            df.update(set(_norm_words(c.text)))
        cap = max(min_df_cap, int(max_df_share * self.n))
        self.form_rows: dict[str, list[int]] = {}
        for row, forms in enumerate(self.subjects):
            for f in forms:
                if " " not in f and df.get(f, 0) > cap:
                    continue
                self.form_rows.setdefault(f, []).append(row)
        self.max_words = max((f.count(" ") + 1 for f in self.form_rows), default=1)

    def mentioned(self, text: str, exclude: int | None = None) -> list[int]:
        """Rows whose subject ``text`` mentions, in order of first mention."""
        words = _norm_words(text)
        out: dict[int, None] = {}
        for i in range(len(words)):
            for n in range(min(self.max_words, MAX_NGRAM), 0, -1):
                if i + n > len(words):
                    continue
                for row in self.form_rows.get(" ".join(words[i : i + n]), ()):
                    if row != exclude:
                        out.setdefault(row, None)
        return list(out)

    def linked(self, a_text: str, b_row: int) -> bool:
        """Does ``a_text`` mention the subject of chunk ``b_row``?"""
        low = " " + " ".join(_norm_words(a_text)) + " "
        return any(f" {f} " in low for f in self.subjects[b_row] if f in self.form_rows)


_GRAPHS: weakref.WeakKeyDictionary[Any, tuple[int, LinkGraph]] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def link_graph(index: Any) -> LinkGraph:
    """The (cached) link graph of an index; rebuilt when the index's chunk count changes."""
    with _LOCK:
        cached = _GRAPHS.get(index)
        if cached is not None and cached[0] == len(index.chunks):
            return cached[1]
        graph = LinkGraph(index.chunks)
        _GRAPHS[index] = (len(index.chunks), graph)
        return graph
