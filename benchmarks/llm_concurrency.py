"""Does client-side concurrency speed up LLM calls to a local llama.cpp server? And how
fast is the embedded model?

Starts llama-cpp-python's own OpenAI-compatible server (``python -m llama_cpp.server``) on
127.0.0.1 with the bundled SmolLM2-135M GGUF, sends the same N short prompts (HotpotQA
questions from ../shared/data) through :class:`OpenAICompatLLM` sequentially and with
bounded concurrency (cache off), alternating the two modes run by run, and measures the
embedded :class:`LlamaCppLLM` on the same prompts. Results: benchmarks/results/
llm_concurrency.json and .md.

    .venv/bin/python benchmarks/llm_concurrency.py --limit 16 --max-tokens 32 --concurrency 4 --runs 2
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

from hoprank.agent.config import LLMConfig  # noqa: E402
from hoprank.tools.llm import make_llm  # noqa: E402
from hoprank.tools.llm.llamacpp import bundled_model_path  # noqa: E402
from hoprank.tools.llm.local_server import free_port  # noqa: E402
from hoprank.tools.llm.local_server import start_llamacpp_server as start_server

DATA = "hotpotqa/hotpot_dev_distractor_first53.official.json"


def prompts(limit: int) -> list[list[dict[str, str]]]:
    rows = json.loads(common.data_file(DATA).read_text("utf-8"))[:limit]
    return [
        [{"role": "system", "content": "Answer in one short sentence."}, {"role": "user", "content": r["question"]}]
        for r in rows
    ]


def run_batch(llm, batch, max_tokens: int) -> dict:
    before = llm.usage.snapshot()
    t0 = time.perf_counter()
    out = llm.chat_many(batch, max_tokens=max_tokens, temperature=0.0)
    wall = time.perf_counter() - t0
    used = llm.usage.snapshot() - before
    return {
        "wall_s": round(wall, 3),
        "completion_tokens": used.completion_tokens,
        "prompt_tokens": used.prompt_tokens,
        "texts": [r.text for r in out],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=16, help="number of prompts (HotpotQA questions)")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--runs", type=int, default=2, help="runs of each mode, alternated")
    ap.add_argument("--threads", type=int, default=2, help="llama.cpp threads (server and embedded)")
    args = ap.parse_args()

    env = common.environment(("hoprank", "llama_cpp_python", "openai"))
    batch = prompts(args.limit)
    model = bundled_model_path()
    port = free_port()
    print(f"starting llama_cpp.server on 127.0.0.1:{port} with {model.name}", flush=True)
    # SIGTERM (a timeout, a Ctrl-C'd parent) must still run the finally that stops the server
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    proc = start_server(
        model, port, 2048, args.threads, Path(tempfile.gettempdir()) / f"hoprank-llama-server-{port}.log"
    )
    results: dict = {"config": vars(args), "model": model.name}
    try:
        base = {
            "backend": "openai",
            "base_url": f"http://127.0.0.1:{port}/v1",
            "model": model.name,
            "cache": False,
            "timeout_s": 300,
            "max_retries": 1,
        }
        seq = make_llm(LLMConfig(**base, concurrency=1))
        conc = make_llm(LLMConfig(**base, concurrency=args.concurrency))
        seq.chat(batch[0], max_tokens=4)  # warm-up: first request pays server-side set-up
        runs: dict[str, list[dict]] = {"sequential": [], f"concurrency_{args.concurrency}": []}
        for i in range(args.runs):
            order = [("sequential", seq), (f"concurrency_{args.concurrency}", conc)]
            if i % 2:
                order.reverse()  # alternate, so neither mode always runs on a warmer machine
            for name, llm in order:
                r = run_batch(llm, batch, args.max_tokens)
                print(
                    f"run {i + 1} {name}: {r['wall_s']:.2f} s, {r['completion_tokens']} completion tokens", flush=True
                )
                runs[name].append(r)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()

    embedded = make_llm(LLMConfig(cache=False, n_threads=args.threads, n_ctx=2048))
    embedded.chat(batch[0], max_tokens=4)  # warm-up (model load)
    emb_runs = []
    for i in range(args.runs):
        r = run_batch(embedded, batch, args.max_tokens)
        print(f"run {i + 1} embedded: {r['wall_s']:.2f} s", flush=True)
        emb_runs.append(r)

    def summary(rs: list[dict]) -> dict:
        wall = statistics.fmean(r["wall_s"] for r in rs)
        toks = statistics.fmean(r["completion_tokens"] for r in rs)
        return {
            "wall_s_mean": round(wall, 3),
            "wall_s_runs": [r["wall_s"] for r in rs],
            "completion_tokens": toks,
            "tokens_per_s": round(toks / wall, 1) if wall else None,
            "requests_per_s": round(len(batch) / wall, 2) if wall else None,
        }

    cname = f"concurrency_{args.concurrency}"
    s_seq, s_conc, s_emb = summary(runs["sequential"]), summary(runs[cname]), summary(emb_runs)
    same = sum(a == b for a, b in zip(runs["sequential"][0]["texts"], runs[cname][0]["texts"]))
    results.update(
        {
            "server_sequential": s_seq,
            f"server_{cname}": s_conc,
            "embedded_sequential": s_emb,
            "speedup_concurrent_vs_sequential": common.ratio(s_seq["wall_s_mean"], s_conc["wall_s_mean"]),
            "embedded_vs_server_sequential": common.ratio(s_seq["wall_s_mean"], s_emb["wall_s_mean"]),
            "identical_outputs_seq_vs_concurrent": f"{same}/{len(batch)}",
        }
    )
    rows = [
        (
            "llama_cpp.server, sequential (concurrency 1)",
            s_seq["wall_s_mean"],
            s_seq["requests_per_s"],
            s_seq["tokens_per_s"],
            1.0,
        ),
        (
            f"llama_cpp.server, concurrency {args.concurrency}",
            s_conc["wall_s_mean"],
            s_conc["requests_per_s"],
            s_conc["tokens_per_s"],
            results["speedup_concurrent_vs_sequential"],
        ),
        (
            "embedded LlamaCppLLM (in-process)",
            s_emb["wall_s_mean"],
            s_emb["requests_per_s"],
            s_emb["tokens_per_s"],
            results["embedded_vs_server_sequential"],
        ),
    ]
    table = common.markdown_table(
        ["mode", "wall s (mean)", "requests/s", "completion tokens/s", "speed-up vs sequential server"], rows, digits=2
    )
    notes = [
        (
            "llama-cpp-python's server serialises requests with a global lock (no parallel slots), so client-side "
            "concurrency can only overlap HTTP and tokenisation, not generation."
        ),
        f"Outputs identical between sequential and concurrent (temperature 0): {same}/{len(batch)}.",
        "Cache disabled for every call; each mode sees the same prompts.",
    ]
    jp, mp = common.write_results(
        "llm_concurrency",
        results,
        [("Results", table)],
        env=env,
        runs=(
            f"{args.runs} runs per mode (alternating order), {len(batch)} prompts each, max_tokens {args.max_tokens}, "
            f"{args.threads} llama.cpp threads"
        ),
        data=[common.data_file(DATA)],
        command=" ".join(["python", *sys.argv]),
        notes=notes,
    )
    print(table)
    print(f"wrote {jp} and {mp}")


if __name__ == "__main__":
    main()
