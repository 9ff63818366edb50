"""One tokeniser for every lexical retriever, so bm25s, rank-bm25 and Qdrant's sparse
vectors see exactly the same terms and their results are comparable.

Lower-cased Unicode word characters; English stopwords removed by default (configurable);
optional Snowball stemming when PyStemmer is installed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_TOKEN = re.compile(r"\w+", re.UNICODE)

ENGLISH_STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its itself
    just me more most my myself no nor not now of off on once only or other our ours ourselves out
    over own same she should so some such than that the their theirs them themselves then there
    these they this those through to too under until up very was we were what when where which
    while who whom why will with you your yours yourself yourselves""".split()
)


class Tokenizer:
    def __init__(self, stopwords: Iterable[str] | None = ENGLISH_STOPWORDS, stem: bool = False):
        self.stopwords = frozenset(s.lower() for s in stopwords) if stopwords else frozenset()
        self._stemmer = None
        if stem:
            try:
                import Stemmer  # PyStemmer
            except ImportError as e:
                from hoprank.tools.errors import MissingExtraError

                raise MissingExtraError("stemming needs PyStemmer (pip install PyStemmer)") from e
            self._stemmer = Stemmer.Stemmer("english")

    def __call__(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFKC", text).lower()
        toks = [t for t in _TOKEN.findall(text) if t not in self.stopwords]
        if self._stemmer is not None:
            toks = self._stemmer.stemWords(toks)
        return toks

    def config(self) -> dict:
        return {"stopwords": len(self.stopwords), "stem": self._stemmer is not None}
