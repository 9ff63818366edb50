/* hoprank chat page: plain JS, no build step, no external resources.
 * Talks to the same OpenAI-compatible endpoint as any client: POST /v1/chat/completions
 * with stream=true, read as server-sent events through fetch + ReadableStream. Step events
 * arrive as chunks with an empty delta and a `hoprank.step` field; the final chunk carries
 * `hoprank.citations`, `evidence`, `status` and `trace`. */
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const els = {
    messages: $("messages"), empty: $("empty"), form: $("ask-form"), question: $("question"),
    send: $("send"), steps: $("steps"), chunk: $("chunk"), chunkTitle: $("chunk-title"),
    chunkMeta: $("chunk-meta"), chunkText: $("chunk-text"), chunkMarker: $("chunk-marker"),
    sourceHint: $("source-hint"), toast: $("toast"), upload: $("upload"), info: $("index-info"),
    keyDialog: $("key-dialog"), keyInput: $("key-input"), examples: $("examples"),
    examplesIntro: $("examples-intro"), uploadBtn: $("upload-btn"),
  };
  const KEY_STORE = "hoprank.apiKey";
  let conversationId = newId();
  let busy = false;
  let controller = null;

  function newId() {
    if (window.crypto && crypto.randomUUID) return "web-" + crypto.randomUUID();
    return "web-" + Date.now().toString(36) + Math.random().toString(36).slice(2);
  }

  function headers(contentType) {
    const h = { "Content-Type": contentType || "application/json" };
    const key = localStorage.getItem(KEY_STORE);
    if (key) h.Authorization = "Bearer " + key;
    return h;
  }

  function el(tag, cls, text) {
    const n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined && text !== null) n.textContent = String(text);
    return n;
  }

  function toast(msg, kind) {
    els.toast.textContent = msg;
    els.toast.className = "toast " + (kind || "");
    els.toast.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { els.toast.hidden = true; }, 5000);
  }

  function fmtSeconds(s) {
    if (typeof s !== "number") return "";
    return s < 1 ? Math.round(s * 1000) + " ms" : s.toFixed(1) + " s";
  }

  async function refreshInfo() {
    try {
      const r = await fetch("/health");
      const h = await r.json();
      els.info.textContent = (h.chunks ?? "?") + " chunks";
    } catch (e) {
      els.info.textContent = "offline";
    }
  }

  /* The upload formats are the ones `hoprank index` reads, and the example questions are
   * derived from the served index: both come from the server, never hard-coded here. */
  async function loadFormats() {
    try {
      const r = await fetch("/v1/documents/formats", { headers: headers() });
      if (!r.ok) return;
      const f = await r.json();
      els.upload.accept = f.extensions.join(",");
      els.uploadBtn.title = "Add a file to the index (" + f.extensions.join(" ") + ")";
      showExamples(f.examples || []);
    } catch (e) { /* the page still works without examples */ }
  }

  function showExamples(questions) {
    els.examples.textContent = "";
    questions.forEach((q) => {
      const b = el("button", "example", q);
      b.type = "button";
      b.addEventListener("click", () => ask(q));
      els.examples.append(b);
    });
    els.examplesIntro.textContent = "Questions that need several hops work best" + (questions.length ? ", for example:" : ".");
  }

  /* ---- tabs and the source panel ------------------------------------------------- */
  function showTab(name) {
    document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("active", t.dataset.tab === name));
    $("pane-steps").hidden = name !== "steps";
    $("pane-source").hidden = name !== "source";
  }
  document.querySelectorAll(".tab").forEach((t) => t.addEventListener("click", () => showTab(t.dataset.tab)));

  function openCitation(cit, evidence) {
    if (!cit) return;
    const hit = (evidence || []).find((h) => h.id === cit.chunk_id) || {};
    els.chunkMarker.textContent = cit.marker;
    els.chunkTitle.textContent = cit.title || hit.title || cit.chunk_id;
    els.chunkMeta.textContent = "";
    const score = typeof cit.score === "number" && cit.score ? cit.score : hit.score;
    const meta = [["chunk", cit.chunk_id]];
    if (typeof score === "number") meta.push(["score", score.toFixed(3)]);
    if (cit.supported === true) meta.push(["verified", "supported"]);
    if (cit.supported === false) meta.push(["verified", "not supported"]);
    if (hit.metadata && hit.metadata.source) meta.push(["source", hit.metadata.source]);
    meta.forEach(([k, v]) => {
      const m = el("span", "meta");
      m.append(el("b", null, k + " "), document.createTextNode(v));
      els.chunkMeta.append(m);
    });
    els.chunkText.textContent = cit.text || hit.text || "(no text)";
    if (hit.rationale) {
      const r = el("p", "rationale", "Reranker: " + hit.rationale);
      els.chunkText.append(document.createElement("br"), r);
    }
    els.chunk.hidden = false;
    els.sourceHint.hidden = true;
    showTab("source");
  }

  /* ---- messages ------------------------------------------------------------------- */
  function addUser(text) {
    els.empty.hidden = true;
    const m = el("div", "msg user");
    m.append(el("div", "bubble", text));
    els.messages.append(m);
    scroll();
  }

  function addAssistant() {
    const m = el("div", "msg assistant");
    const bubble = el("div", "bubble");
    const body = el("div", "answer");
    const typing = el("span", "typing");
    typing.append(el("i"), el("i"), el("i"));
    body.append(typing);
    const foot = el("div", "foot");
    bubble.append(body, foot);
    m.append(bubble);
    els.messages.append(m);
    scroll();
    return { body, foot, text: "", citations: [], evidence: [] };
  }

  function scroll() { els.messages.scrollTop = els.messages.scrollHeight; }

  // answer text -> DOM with clickable [n] markers (text nodes only: no HTML injection)
  function renderAnswer(slot) {
    slot.body.textContent = "";
    const byMarker = new Map(slot.citations.map((c) => [String(c.marker), c]));
    const parts = slot.text.split(/(\[\d+(?:\s*,\s*\d+)*\])/g);
    for (const part of parts) {
      const m = part.match(/^\[(\d+(?:\s*,\s*\d+)*)\]$/);
      if (!m) { if (part) slot.body.append(document.createTextNode(part)); continue; }
      for (const n of m[1].split(/\s*,\s*/)) {
        const cit = byMarker.get(n);
        const b = el("button", "cite" + (cit ? "" : " pending"), n);
        b.type = "button";
        b.title = cit ? (cit.title || cit.chunk_id) : "source";
        if (cit) b.addEventListener("click", () => openCitation(cit, slot.evidence));
        slot.body.append(b);
      }
    }
  }

  function renderFoot(slot, extra) {
    slot.foot.textContent = "";
    const status = extra.status || "answered";
    slot.foot.append(el("span", "status " + status, status.replace("_", " ")));
    const secs = extra.trace && extra.trace.seconds;
    if (secs !== undefined) slot.foot.append(el("span", "muted", fmtSeconds(secs)));
    if (slot.citations.length) {
      const src = el("div", "sources");
      slot.citations.forEach((c) => {
        const b = el("button", "source-chip");
        b.type = "button";
        b.append(el("span", "cite static", c.marker), document.createTextNode(" " + (c.title || c.chunk_id)));
        b.addEventListener("click", () => openCitation(c, slot.evidence));
        src.append(b);
      });
      slot.foot.append(src);
    }
  }

  /* ---- steps panel ---------------------------------------------------------------- */
  function hitList(hits, limit) {
    const ul = el("ul", "hits");
    (hits || []).slice(0, limit).forEach((h) => {
      const li = el("li");
      li.append(el("span", "rank", h.rank ?? ""), el("span", "hit-title", h.title || h.id));
      if (typeof h.score === "number") li.append(el("span", "score", h.score.toFixed(3)));
      if (h.rationale) li.append(el("div", "rationale", h.rationale));
      ul.append(li);
    });
    return ul;
  }

  function addStep(step) {
    const li = el("li", "step node-" + (step.node || "step"));
    const head = el("div", "step-head");
    head.append(el("span", "node", step.node), el("span", "elapsed", fmtSeconds(step.elapsed_s)));
    li.append(head);
    if (step.summary) li.append(el("div", "summary", step.summary));
    const d = step.data || {};
    const subs = d.subquestions || d.sub_queries || d.queries;
    if (Array.isArray(subs) && subs.length) {
      const ul = el("ul", "subq");
      subs.forEach((q) => ul.append(el("li", null, typeof q === "string" ? q : JSON.stringify(q))));
      li.append(ul);
    }
    if (typeof d.query === "string") li.append(el("div", "query", "“" + d.query + "”"));
    const hits = d.ranked || d.hits || d.evidence;
    if (Array.isArray(hits) && hits.length && typeof hits[0] === "object") li.append(hitList(hits, 5));
    const raw = JSON.stringify(d, null, 1);
    if (raw && raw !== "{}") {
      const det = el("details", "raw");
      det.append(el("summary", null, "data"), el("pre", null, raw.length > 6000 ? raw.slice(0, 6000) + "\n…" : raw));
      li.append(det);
    }
    els.steps.append(li);
    li.scrollIntoView({ block: "nearest" });
  }

  /* ---- asking --------------------------------------------------------------------- */
  async function ask(question) {
    if (busy || !question.trim()) return;
    busy = true;
    els.send.disabled = true;
    els.send.textContent = "Thinking…";
    els.steps.textContent = "";
    showTab("steps");
    addUser(question);
    const slot = addAssistant();
    controller = new AbortController();
    try {
      const r = await fetch("/v1/chat/completions", {
        method: "POST", headers: headers(), signal: controller.signal,
        body: JSON.stringify({ model: "hoprank", stream: true, conversation_id: conversationId, messages: [{ role: "user", content: question }] }),
      });
      if (r.status === 401) { els.keyDialog.showModal(); throw new Error("this server needs an API key"); }
      if (!r.ok) {
        let msg = r.status + " " + r.statusText;
        try { msg = (await r.json()).error.message; } catch (e) { /* keep the status line */ }
        throw new Error(msg);
      }
      await readStream(r.body, slot);
    } catch (e) {
      if (e.name !== "AbortError") {
        slot.body.textContent = "";
        slot.body.append(el("span", "error", "Error: " + e.message));
      }
    } finally {
      busy = false;
      controller = null;
      els.send.disabled = false;
      els.send.textContent = "Ask";
      els.question.focus();
      scroll();
    }
  }

  async function readStream(body, slot) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    let started = false;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const event = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data: ")) continue; // ": keep-alive" comments
          const data = line.slice(6);
          if (data === "[DONE]") return;
          const obj = JSON.parse(data);
          if (obj.error) throw new Error(obj.error.message || "the agent failed");
          const extra = obj.hoprank || {};
          if (extra.step) addStep(extra.step);
          const delta = (obj.choices && obj.choices[0] && obj.choices[0].delta) || {};
          if (delta.content) {
            if (!started) { started = true; slot.body.textContent = ""; }
            slot.text += delta.content;
            renderAnswer(slot);
            scroll();
          }
          if (extra.citations) {
            slot.citations = extra.citations;
            slot.evidence = extra.evidence || [];
            if (!slot.text) slot.text = extra.status === "not_found" ? "The documents do not say." : "(no answer)";
            renderAnswer(slot);
            renderFoot(slot, extra);
            scroll();
          }
        }
      }
    }
  }

  /* ---- upload --------------------------------------------------------------------- */
  // the file goes as is: the server reads it with the same readers as `hoprank index`
  els.upload.addEventListener("change", async () => {
    const files = Array.from(els.upload.files || []);
    els.upload.value = "";
    for (const f of files) {
      try {
        toast("Indexing " + f.name + "…");
        const url = "/v1/documents/upload?filename=" + encodeURIComponent(f.name);
        const r = await fetch(url, { method: "POST", headers: headers("application/octet-stream"), body: f });
        const out = await r.json();
        if (!r.ok) throw new Error(out.error ? out.error.message : r.statusText);
        const skipped = (out.skipped || []).length ? " (" + out.skipped.length + " record(s) skipped)" : "";
        toast("Added " + out.added + " document(s) from " + f.name + skipped + "; the index now has " + out.chunks + " chunks.", "ok");
        refreshInfo();
        loadFormats();
      } catch (e) {
        toast("Upload of " + f.name + " failed: " + e.message, "bad");
      }
    }
  });

  /* ---- wiring --------------------------------------------------------------------- */
  els.form.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = els.question.value;
    els.question.value = "";
    autosize();
    ask(q);
  });
  els.question.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); els.form.requestSubmit(); }
  });
  function autosize() {
    els.question.style.height = "auto";
    els.question.style.height = Math.min(els.question.scrollHeight, 180) + "px";
  }
  els.question.addEventListener("input", autosize);
  $("new-chat").addEventListener("click", () => {
    if (controller) controller.abort(); // the server cancels the agent work
    conversationId = newId();
    els.messages.querySelectorAll(".msg").forEach((m) => m.remove());
    els.empty.hidden = false;
    els.steps.textContent = "";
    els.chunk.hidden = true;
    els.sourceHint.hidden = false;
  });
  $("key-btn").addEventListener("click", () => { els.keyInput.value = localStorage.getItem(KEY_STORE) || ""; els.keyDialog.showModal(); });
  els.keyDialog.addEventListener("close", () => {
    if (els.keyDialog.returnValue === "save") {
      const v = els.keyInput.value.trim();
      if (v) localStorage.setItem(KEY_STORE, v); else localStorage.removeItem(KEY_STORE);
      toast(v ? "Key saved in this browser." : "Key removed.", "ok");
    }
  });
  refreshInfo();
  loadFormats();
  els.question.focus();
})();
