"""A fictional two-hop corpus whose titles are file names and whose entities change their
surface form: where title-based entity linking has nothing to hold on to.

Each chain is an organisation document ("minutes-1962-03.md": the Vell River Cooperative,
founded by "Dr. Aldana") and a person document ("profile-0007.txt": "Maria Aldana was born
in Tarrow ..."), plus look-alike distractors (other cooperatives founded by other people,
other people born elsewhere). The question names the organisation only: "In which town was
the founder of the Vell River Cooperative born?" — the second document shares no words with
it except through the founder's surname. Deterministic for a seed; everything is invented.
Used by the tests (a handful of chains) and by ``benchmarks/multihop.py`` (more chains).
"""

from __future__ import annotations

import random

from hoprank.evals.datasets import QAExample
from hoprank.tools.types import Document

_FIRST = [
    "Maria",
    "Tomas",
    "Ines",
    "Oskar",
    "Lena",
    "Piet",
    "Ada",
    "Rui",
    "Mira",
    "Jonas",
    "Vera",
    "Emil",
    "Nora",
    "Felix",
    "Ilse",
    "Hugo",
    "Clara",
    "Anton",
    "Rosa",
    "Karel",
]
_LAST = [
    "Aldana",
    "Brevik",
    "Castellan",
    "Dunmore",
    "Eskola",
    "Falkner",
    "Gravell",
    "Holloway",
    "Ibarra",
    "Jessop",
    "Kovalen",
    "Lindqvist",
    "Marchetti",
    "Norrland",
    "Osterby",
    "Pellworth",
    "Quarrie",
    "Rasmussen",
    "Stellan",
    "Thorvald",
]
_TOWNS = [
    "Tarrow",
    "Saltmere",
    "Kelbrook",
    "Ostwick",
    "Marrow Bay",
    "Fennick",
    "Larkspur",
    "Dunhaven",
    "Grisholm",
    "Arnfield",
    "Blackmere",
    "Coldharbour",
    "Elmstead",
    "Harrowgate",
    "Wexley",
    "Yarrowby",
]
_KINDS = ["Cooperative", "Foundry", "Guild", "Press", "Observatory", "Trust", "Works", "Society"]
_RIVERS = [
    "Vell",
    "Amber",
    "Corran",
    "Dray",
    "Esk",
    "Fallow",
    "Glen",
    "Hollin",
    "Isen",
    "Jarrow",
    "Kell",
    "Lune",
    "Mere",
    "Nidd",
    "Orrin",
    "Pell",
]
_JOBS = ["chemist", "engineer", "printer", "astronomer", "weaver", "surveyor", "botanist", "cartographer"]
_FORMS = ["Dr. {last}", "{first} {last}", "{last}", "Ms. {last}", "Mr. {last}"]


def fiction_corpus(n_chains: int = 8, seed: int = 0) -> tuple[list[Document], list[QAExample]]:
    """``n_chains`` organisation -> founder -> birthplace chains, shuffled with their documents."""
    rng = random.Random(seed)
    people = [(f, last) for f, last in zip(rng.sample(_FIRST, len(_FIRST)), rng.sample(_LAST, len(_LAST)))]
    n = min(n_chains, len(people), len(_RIVERS), len(_TOWNS))
    towns = rng.sample(_TOWNS, len(_TOWNS))
    docs: list[Document] = []
    examples: list[QAExample] = []
    for i in range(n):
        first, last = people[i]
        river, kind, town = _RIVERS[i], _KINDS[i % len(_KINDS)], towns[i]
        job = _JOBS[i % len(_JOBS)]
        org = f"{river} River {kind}"
        form = _FORMS[i % len(_FORMS)].format(first=first, last=last)
        year = 1900 + rng.randrange(90)
        org_id, person_id = f"minutes-{year}-{i:02d}.md", f"profile-{i:04d}.txt"
        docs.append(
            Document(
                id=org_id,
                title=org_id,
                text=(
                    f"The {org} was founded in {year} by {form}, who ran it for {rng.randrange(5, 30)} years. "
                    f"The {org} keeps its records in a stone hall by the {river} River and publishes a yearly report "
                    f"on its members and their work."
                ),
            )
        )
        docs.append(
            Document(
                id=person_id,
                title=person_id,
                text=(
                    f"{first} {last} was a {job} born in {town} in {year - rng.randrange(25, 45)}. "
                    f"{first} {last} studied at the academy of {towns[(i + 5) % len(towns)]} and later wrote two books "
                    f"on the craft of the {job}."
                ),
            )
        )
        # a look-alike of the organisation document (same river and kind words, other founder)
        other_first, other_last = people[(i + n) % len(people)]
        docs.append(
            Document(
                id=f"notes-{i:03d}.txt",
                title=f"notes-{i:03d}.txt",
                text=(
                    f"A yearly report of the {river} River association: its members met in the stone hall, and "
                    f"{other_first} {other_last} read the records of the {kind.lower()} aloud."
                ),
            )
        )
        examples.append(
            QAExample(
                id=f"fiction-{i}",
                question=f"In which town was the founder of the {org} born?",
                answer=town,
                type="bridge",
                gold_doc_ids=[org_id, person_id],
            )
        )
    rng.shuffle(docs)
    return docs, examples
