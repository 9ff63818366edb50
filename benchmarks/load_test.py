"""Load test of ``hoprank serve``: concurrent chat conversations through the OpenAI client.

Why: a chat server that mixes up conversations is worse than a slow one. Each conversation
asks about a different person of the bundled sample corpus, with pronoun follow-ups that
only make sense with that conversation's own history; we check every reply's thread id,
that no follow-up's rewritten question names another conversation's person, and that each
checkpointed thread holds only its own questions. Latency p50/p95 and errors are measured
with the same conversations run concurrently and one after another (the ratio says what
concurrency buys on this machine: the embedded llama.cpp model serialises LLM calls).

Run: ``.venv/bin/python benchmarks/load_test.py [--conversations 4] [--turns 2] [--duration 600]``
Data: agent/sample_corpus (bundled; people with distinct birthplaces). Embedded models only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import openai  # noqa: E402

SAMPLE = common.REPO_ROOT / "agent" / "sample_corpus"
PEOPLE = [  # (name, pronoun, birthplace in the sample corpus)
    ("Ingrid Holloway", "she", "Saltmere"),
    ("Tobias Wren", "he", "Brindlecombe"),
    ("Hester Quill", "she", "Ostbury"),
    ("Casimir Dunne", "he", "Kelderwick"),
    ("Mirabel Sato", "she", "Marrowfield"),
    ("Odile Ferrant", "she", "Marrowfield"),
]
FOLLOW_UPS = ["What is {p} best known for?", "Where did {p} study or work?", "When was {p} born?"]
CONFIG = {
    "llm": {"max_tokens": 96, "cache": False},
    "agent": {"decompose": "rules", "max_hops": 1},
    "rerank": {"method": "embedding"},
}


def questions(person: tuple[str, str, str], turns: int) -> list[str]:
    name, pron, _ = person
    return [f"Where was {name} born?"] + [f.format(p=pron) for f in FOLLOW_UPS][: max(0, turns - 1)]


def run_phase(
    url: str, people: list[tuple[str, str, str]], turns: int, concurrent: bool, duration_s: float, tag: str
) -> dict[str, Any]:
    """Run each person's conversation (streaming on even turns); returns per-request records."""
    records: list[dict[str, Any]] = []
    lock = threading.Lock()
    t_end = time.monotonic() + duration_s

    def conversation(i: int, person: tuple[str, str, str]) -> None:
        cid = f"{tag}-{i}-{person[0].split()[0].lower()}"
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="load", max_retries=0, timeout=900)
        for turn, q in enumerate(questions(person, turns)):
            if time.monotonic() > t_end:
                break
            rec: dict[str, Any] = {
                "conversation": cid,
                "person": person[0],
                "turn": turn,
                "question": q,
                "stream": turn % 2 == 0,
            }
            t0 = time.perf_counter()
            try:
                if rec["stream"]:
                    first_step = None
                    final = None
                    text = ""
                    for ch in client.chat.completions.create(
                        model="hoprank",
                        messages=[{"role": "user", "content": q}],
                        stream=True,
                        extra_body={"conversation_id": cid},
                    ):
                        extra = (ch.model_extra or {}).get("hoprank") or {}
                        if extra.get("step") and first_step is None:
                            first_step = time.perf_counter() - t0
                        text += ch.choices[0].delta.content or "" if ch.choices else ""
                        if "citations" in extra:
                            final = extra
                    rec["first_step_s"] = first_step
                    if final is None:
                        raise RuntimeError("stream ended without a final hoprank chunk")
                else:
                    r = client.chat.completions.create(
                        model="hoprank", messages=[{"role": "user", "content": q}], extra_body={"conversation_id": cid}
                    )
                    final, text = r.model_extra["hoprank"], r.choices[0].message.content or ""
                rec.update(
                    latency_s=time.perf_counter() - t0,
                    ok=True,
                    thread_id=final.get("thread_id"),
                    status=final.get("status"),
                    answer=text,
                    standalone=(final.get("trace") or {}).get("standalone"),
                    evidence=[h["id"] for h in final.get("evidence", [])],
                )
            except Exception as e:  # noqa: BLE001 - counted, reported
                rec.update(latency_s=time.perf_counter() - t0, ok=False, error=f"{type(e).__name__}: {e}")
            with lock:
                records.append(rec)
            print(
                f"  [{tag}] {cid} turn {turn}: {rec['latency_s']:.1f}s {'ok' if rec['ok'] else rec['error']}",
                flush=True,
            )

    t0 = time.perf_counter()
    if concurrent:
        threads = [threading.Thread(target=conversation, args=(i, p)) for i, p in enumerate(people)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        for i, p in enumerate(people):
            conversation(i, p)
    return {"records": records, "wall_s": time.perf_counter() - t0}


def cross_talk(
    records: list[dict[str, Any]], agent: Any, people: list[tuple[str, str, str]], turns: int
) -> dict[str, Any]:
    """Thread ids, rewritten follow-ups and checkpointed histories must stay per conversation."""
    problems: list[str] = []
    names = {p[0] for p in people}
    by_conv: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_conv.setdefault(r["conversation"], []).append(r)
        if not r["ok"]:
            continue
        if r["thread_id"] != r["conversation"]:
            problems.append(f"{r['conversation']} turn {r['turn']}: reply carried thread {r['thread_id']}")
        others = [n for n in names - {r["person"]} if n.lower() in (r.get("standalone") or "").lower()]
        if r["turn"] > 0 and others:
            problems.append(
                f"{r['conversation']} turn {r['turn']}: follow-up mentions another conversation's person {others}"
            )
    for conv, recs in by_conv.items():
        person = next(p for p in people if p[0] == recs[0]["person"])
        own = set(questions(person, turns))
        state = agent._graph.get_state({"configurable": {"thread_id": conv}}).values
        history = [m.get("content", "") for m in state.get("history") or [] if m.get("role") == "user"]
        foreign = [h for h in history if h not in own]
        if foreign:
            problems.append(f"{conv}: checkpointed history holds questions of another conversation: {foreign}")
    return {"problems": problems, "conversations_checked": len(by_conv)}


def summarise(phase: dict[str, Any], people: list[tuple[str, str, str]]) -> dict[str, Any]:
    recs = phase["records"]
    ok = [r for r in recs if r["ok"]]
    lat = (
        common.latency_summary([r["latency_s"] for r in ok])
        if ok
        else {"n": 0, "p50_ms": float("nan"), "p95_ms": float("nan"), "mean_ms": float("nan")}
    )
    fs = [r["first_step_s"] for r in ok if r.get("first_step_s") is not None]
    births = {p[0]: p[2] for p in people}
    first = [r for r in ok if r["turn"] == 0]
    birth_ok = sum(births[r["person"]].lower() in (r["answer"] or "").lower() for r in first)
    own_doc = sum(any(i.startswith(r["person"].lower().replace(" ", "-")) for i in r["evidence"]) for r in first)
    return {
        "requests": len(recs),
        "errors": len(recs) - len(ok),
        "latency": lat,
        "first_step_p50_ms": round(statistics.median(fs) * 1000, 1) if fs else None,
        "wall_s": round(phase["wall_s"], 2),
        "throughput_rpm": round(60 * len(ok) / phase["wall_s"], 2) if phase["wall_s"] else None,
        "birthplace_correct": f"{birth_ok}/{len(first)}",
        "own_doc_in_evidence": f"{own_doc}/{len(first)}",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--conversations", "--limit", type=int, default=4, help="concurrent conversations (one person each, max 6)"
    )
    ap.add_argument("--turns", type=int, default=2, help="questions per conversation (1 + follow-ups, max 4)")
    ap.add_argument("--duration", type=float, default=600, help="seconds per phase after which no new turn starts")
    ap.add_argument("--skip-sequential", action="store_true", help="only the concurrent phase")
    a = ap.parse_args()
    people = PEOPLE[: max(1, min(a.conversations, len(PEOPLE)))]
    turns = max(1, min(a.turns, 4))

    from hoprank import Agent
    from hoprank.agent.app.server import create_app, serve_in_thread
    from hoprank.tools.ingest.index import Index

    env = common.environment()
    with tempfile.TemporaryDirectory() as tmp:
        idx, _ = Index.build(Path(tmp) / "index", sources=[SAMPLE], qdrant=False, show_progress=False)
        agent = Agent.from_config(CONFIG, index=idx)
        agent.ask("Where was Ingrid Holloway born?", thread_id="warmup")  # load the models outside the timings
        with serve_in_thread(create_app(agent)) as url:
            print(f"server at {url}; {len(people)} conversations x {turns} turns", flush=True)
            phases = {"concurrent": run_phase(url, people, turns, True, a.duration, "conc")}
            if not a.skip_sequential:
                phases["sequential"] = run_phase(url, people, turns, False, a.duration, "seq")
            checks = {k: cross_talk(v["records"], agent, people, turns) for k, v in phases.items()}

    summary = {k: summarise(v, people) for k, v in phases.items()}
    rows = []
    for k, s in summary.items():
        rows.append(
            [
                k,
                s["requests"],
                s["errors"],
                s["latency"]["p50_ms"] / 1000,
                s["latency"]["p95_ms"] / 1000,
                (s["first_step_p50_ms"] or 0) / 1000,
                s["wall_s"],
                s["throughput_rpm"],
                len(checks[k]["problems"]),
                s["birthplace_correct"],
            ]
        )
    table = common.markdown_table(
        [
            "phase",
            "requests",
            "errors",
            "p50 s",
            "p95 s",
            "first step p50 s",
            "wall s",
            "answers/min",
            "cross-talk",
            "birthplace right (turn 1)",
        ],
        rows,
        digits=2,
    )
    sections = [("Latency, errors and cross-talk", table)]
    if "sequential" in summary:
        conc, seq = summary["concurrent"], summary["sequential"]
        sections.append(
            (
                "Concurrent vs sequential (ratios)",
                common.markdown_table(
                    ["p50 latency (conc / seq)", "wall time (conc / seq)", "throughput (conc / seq)"],
                    [
                        [
                            common.ratio(conc["latency"]["p50_ms"], seq["latency"]["p50_ms"]),
                            common.ratio(conc["wall_s"], seq["wall_s"]),
                            common.ratio(conc["throughput_rpm"] or 0, seq["throughput_rpm"] or 0),
                        ]
                    ],
                    digits=2,
                ),
            )
        )
    problems = [p for c in checks.values() for p in c["problems"]]
    notes = [
        (
            f"agent config: {CONFIG} (embedded SmolLM2-135M via llama.cpp, MiniLM embeddings, hybrid retrieval); "
            "server = hoprank serve's app under uvicorn on loopback, clients = the official openai package"
        ),
        (
            "turn 1 is streamed (SSE), turn 2 is not; follow-ups use a pronoun, so they only make sense with the "
            "conversation's own history"
        ),
        (
            "cross-talk = replies with another thread id + follow-ups whose rewritten question names another "
            "conversation's person + checkpointed threads holding another conversation's question"
        ),
        (
            "the embedded llama.cpp model runs one generation at a time (a lock), so concurrency overlaps "
            "retrieval/reranking with generation but cannot parallelise the LLM"
        ),
        "the 2 CPU cores were shared with other work during the run (see load average)",
    ] + [f"PROBLEM: {p}" for p in problems]
    runs = f"1 run: {len(people)} conversations x {turns} turns per phase, phases: {', '.join(phases)}"
    results = {
        "summary": summary,
        "cross_talk": checks,
        "records": {k: v["records"] for k, v in phases.items()},
        "config": CONFIG,
    }
    jp, mp = common.write_results(
        "load_test",
        results,
        sections,
        env=env,
        runs=runs,
        data=[SAMPLE],
        command="python " + " ".join(sys.argv),
        notes=notes,
    )
    print(mp.read_text())
    if any(s["errors"] for s in summary.values()) or problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
