"""Document-borne instructions (indirect prompt injection, OWASP LLM01): screen retrieved text
before any LLM reads it, and flag answers that carry what an injection wants out.

Two layers, because neither is enough alone:

1. :func:`screen_text` / :func:`screen_hits` remove instruction-like spans from retrieved
   chunks and keep the rest (the facts stay citable). Rules run on a *canonical view* of the
   text, i.e. what a model can read: zero-width characters dropped, NFKC, look-alike letters
   folded, ``1gn0re`` read as ``ignore``, ``i g n o r e`` collapsed, base64 blobs decoded.
   Hidden markup (HTML and markdown comments, hidden elements, Unicode tag characters) is
   removed whatever it says: no reader of the document sees it, so no fact is lost. Every
   sentence is scored by weighted features (a request form, an addressee such as "AI" or
   "assistant", "ignore previous instructions", a system-prompt noun, an output directive
   such as "in your answer", a URL or e-mail to pass on, a role-play opener, fake chat/system
   markup); a sentence at or above :data:`THRESHOLD` is replaced by :data:`REMOVED`, and the
   neighbouring sentences of the same paragraph that continue it (a request, "you", a URL) go
   with it. Ordinary prose ("the manual tells the reader to ignore the warning light") scores
   below the threshold: one feature is never enough, except for the unambiguous phrases.
2. :func:`check_answer` flags an answer that carries a URL or e-mail address that is not in
   the (screened) text of the chunks it cites or that the question did not ask for, lines of
   hoprank's own system prompts, or text that screening removed. Such an answer is not
   ``answered``: the agent marks it ``flagged`` and redacts what was flagged.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from hoprank import prompts
from hoprank.tools.types import Citation, Hit

REMOVED = "[instruction removed]"
THRESHOLD = 3.0
GENERATION_PROMPTS = ("answer.system", "answer_short.system", "revise.system", "agentic.system")
MAX_SPAN_CHARS = 300

# ---- canonical view ----------------------------------------------------------------------
_STRIP = re.compile("[\u200b\u2060-\u2064\ufeff\u180e\u00ad\u202a-\u202e\u2066-\u2069]")  # invisible, no meaning
_INVISIBLE = re.compile(
    "[\u200b-\u200f\u2060-\u2064\ufeff\u180e\u00ad\u202a-\u202e\u2066-\u2069]"
)  # dropped for matching
_HOMOGLYPH = str.maketrans("аеорсухіјѕԁɡһӏԛԝαεορτυνκιχ", "aeopcyxijsdghlqwaeoptuvkix")
_LEET = str.maketrans("0134578@$", "oieastbas")
_B64 = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{24,}={0,2}(?![A-Za-z0-9+/=])")
_SPACED = re.compile(r"(?<!\S)(?:\S {1,3}){6,}\S(?!\S)")
_HIDDEN = [
    ("html_comment", re.compile(r"<!--[\s\S]*?(?:-->|$)")),
    (
        "markdown_comment",
        re.compile(r"(?m)^[ \t]*\[(?://|comment)\]:\s*#\s*(?:\([^\n]*\)|\"[^\n]*\"|'[^\n]*')[ \t]*$"),
    ),
    (
        "hidden_html",
        re.compile(
            r"<(\w+)\b[^>]*?(?:style\s*=\s*[\"'][^\"']*(?:display\s*:\s*none|visibility\s*:\s*hidden"
            r"|font-size\s*:\s*0|opacity\s*:\s*0)"
            r"|\shidden\b|aria-hidden\s*=\s*[\"']true)[^>]*>[\s\S]*?</\1\s*>",
            re.I,
        ),
    ),
    ("unicode_tags", re.compile("[\U000e0000-\U000e007f]+")),
]
_TAG_BLOCKS = [  # fake chat / system markup: the whole block goes, up to its closing tag
    re.compile(r"<\|im_start\|>[\s\S]*?(?:<\|im_end\|>|\n\s*\n|$)"),
    re.compile(r"\[(system|inst|sys|admin|instructions?)\][\s\S]*?(?:\[/\1\]|\n\s*\n|$)"),
    re.compile(r"<<sys>>[\s\S]*?(?:<</sys>>|\n\s*\n|$)"),
    re.compile(r"<(system|instructions?|admin|sys|prompt)>[\s\S]*?(?:</\1>|\n\s*\n|$)"),
]


def _b64_text(blob: str) -> str | None:
    """The decoded text of a base64-looking blob, when it decodes to readable text."""
    try:
        raw = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True)
        text = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    printable = sum(c.isprintable() or c in "\n\t" for c in text)
    return text if text and printable / len(text) > 0.95 and re.search(r"[A-Za-z]{3}\s[A-Za-z]{2}", text) else None


def _canon(text: str, skip: Sequence[tuple[int, int]]) -> tuple[str, list[int]]:
    """The text as a model reads it, lower-cased, with ``pos[i]`` = the original offset of
    canonical character ``i``. Characters inside ``skip`` spans (hidden markup) are left out."""
    blocked = [False] * (len(text) + 1)
    for s, e in skip:
        for i in range(s, e):
            blocked[i] = True
    blobs = {m.start(): (m.end(), d) for m in _B64.finditer(text) if (d := _b64_text(m.group()))}
    chars: list[str] = []
    pos: list[int] = []
    i = 0
    while i < len(text):
        if blocked[i]:
            i += 1
            continue
        if i in blobs:
            end, dec = blobs[i]
            for j, c in enumerate(dec.lower()):
                chars.append(c)
                pos.append(i + j * (end - i) // len(dec))
            i = end
            continue
        ch = text[i]
        if not _INVISIBLE.match(ch):
            for c in unicodedata.normalize("NFKC", ch).lower():
                chars.append(c)
                pos.append(i)
        i += 1
    canon = "".join(chars)
    # i g n o r e  a l l -> ignore all (one space inside a word, two or more between words)
    # a spaced run stands on its own line: obfuscated text rarely ends with a full stop
    keep = [True] * len(canon)
    starts, ends = set(), set()
    for m in _SPACED.finditer(canon):
        starts.add(m.start())
        ends.add(m.end() - 1)
        for sp in re.finditer(r" +", m.group()):
            a, b = m.start() + sp.start(), m.start() + sp.end()
            for k in range(a, b - (1 if b - a >= 2 else 0)):
                keep[k] = False
    chars, old_pos, pos = [], pos, []
    for k, c in enumerate(canon):
        if k in starts:
            chars.append("\n")
            pos.append(old_pos[k])
        if keep[k]:
            chars.append(c)
            pos.append(old_pos[k])
        if k in ends:
            chars.append("\n")
            pos.append(old_pos[k])
    canon = "".join(chars)
    # words that mix Latin letters with look-alikes or digits: read them as a model would
    out = list(canon)
    for m in re.finditer(r"[\w@$]+", canon):
        w = m.group()
        if re.search(r"[a-z]", w) and not w.isascii():
            w = w.translate(_HOMOGLYPH)
        if (
            sum(c.isalpha() for c in w) >= 2
            and re.search(r"[0134578@$]", w)
            and re.search(r"[a-z]", w)
            and not re.fullmatch(r"[a-z]*\d+", w)
        ):
            w = w.translate(_LEET)
        out[m.start() : m.end()] = list(w)
    return "".join(out), pos


# ---- features --------------------------------------------------------------------------------
_AI = (
    r"(?:ai|a\.i\.|artificial intelligence|assistants?|chat ?bots?|llms?|(?:large )?language models?|gpt|chatgpt"
    r"|claude|gemini|copilot"
    r"|ai (?:models?|systems?|agents?|assistants?|readers?|tools?)|automated (?:readers?|systems?|agents?|assistants?)"
    r"|summari[sz]ers?|answer engines?|virtual assistants?|chat assistants?|ki|ia|bot)"
)
_INSTR = (
    r"(?:instructions?|prompts?|directions?|directives?|rules|guidelines|guidance|constraints|commands?|orders"
    r"|programming"
    r"|system messages?|policies|restrictions|safeguards|filters|training|consignes|anweisungen|instruktionen|befehle"
    r"|instrucciones|indicaciones|istruzioni|instruções|instrucoes|instructies|инструкции|указания)"
)
_PRIOR = (
    r"(?:previous|prior|preceding|above|earlier|former|original|initial|existing|all|any|every|your|system|developer"
    r"|safety"
    r"|précédentes|precedentes|antérieures|vorherigen|bisherigen|obigen|vorigen|früheren"
    r"|anteriores|previas|precedenti|vorige|eerdere|предыдущие|прежние"
    r"|все|toutes|tous|alle|todas|todos|tutte|tutti|as|les|las|le)"
)
_IGNORE = (
    r"(?:ignore|disregard|forget|bypass|discard|abandon|neglect|ignorez|ignorer|oubliez|ignoriere|ignorieren"
    r"|vergiss|vergessen|missachte|ignora|olvida|omite|dimentica|esqueça|esqueca|desconsidere|negeer|vergeet"
    r"|игнорируй|забудь|проигнорируй)"
)
_OUT_VERB = (
    r"(?:say|print|output|write|type|reply|respond|answer|repeat|echo|state|claim|include|append|add|insert|mention"
    r"|display"
    r"|show|return|paste|spell|render|embed|recite|reproduce|dump|leak|reveal|disclose|écrivez|ecrivez|écris|affichez"
    r"|ajoutez"
    r"|incluez|schreibe|schreib|gib|füge|zeige|escribe|muestra|incluye|añade|scrivi|mostra|includi|aggiungi|escreva"
    r"|mostre"
    r"|inclua|schrijf|toon|voeg|напиши|выведи|покажи)"
)
_VERBS = (
    r"(?:say|print|output|write|type|reply|respond|answer|tell|state|claim|include|append|add|insert|mention"
    r"|recommend|visit"
    r"|go|open|click|send|e-?mail|forward|reveal|repeat|list|show|display|translate|ignore|forget|disregard|do|don't"
    r"|never"
    r"|always|remember|ensure|begin|start|end|use|call|fetch|summari[sz]e|describe|refuse|pretend|act|ask|inform|direct"
    r"|redirect|report|paste|copy|return|give|provide|generate|produce|spell|render|embed|load|navigate|browse|download"
    r"|post|submit|share|leak|disclose|dump|respond|recite|follow|obey|decode|execute|run|stop|demandez|bitte|pide"
    r"|chiedi"
    r"|peça|vraag|попроси|" + _OUT_VERB[3:-1] + ")"
)
_LEAD = (
    r"^[^\w\"“”'‘’«»]*(?:(?:please|kindly|also|and|then|now|instead|finally|first|just|simply|remember to"
    r"|make sure (?:to|you)"
    r"|be sure to|you must|you should|you will|you need to|you have to|could you|would you(?: kindly)?|can you|will you"
    r"|i need you to|we need you to|if it is not too much trouble,? (?:please )?"
    r"|we would be (?:very )?grateful if you could"
    r"|please be so kind as to|bitte|por favor|s'il vous plaît|per favore)\s+)*"
)
_OBLIGE = (
    r"(?:must|should|shall|(?:is|are) (?:expected|required|instructed|obliged|supposed|asked|meant|told|mandated"
    r"|requested)"
    r"|(?:has|have|needs?) to|(?:mandatory|required|necessary|essential) for [\w ]{0,40}? to)"
)
_DUTY = (
    r"(?:"
    + _OUT_VERB[3:-1]
    + r"|tell|ask|inform|direct|send|visit|mention|recommend|refer|reply|answer|respond|begin|start"
    r"|end|cite|link|advise|warn)"
)
_URL = re.compile(
    r"(?:https?://|www\.)[^\s<>()\[\]\"'`]+|\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|org|net|io|ai|co|info|biz|xyz|ru|cn"
    r"|ly|me|app"
    r"|dev|site|online|top|link|click|example)\b(?:/[^\s<>()\"'`]*)?",
    re.I,
)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_CODE = re.compile(
    r"\b[A-Z][A-Z0-9]{2,}(?:[-_][A-Z0-9]+)+\b"  # codes such as ALPHA-7
    r"|(?:(?<=\s)|^)[\"“‘'][^\"”’'\n]{1,40}[\"”’'](?!\w)"  # a short quoted phrase
)

# (rule, weight, pattern on the canonical lower-cased sentence)
_FEATURES: list[tuple[str, float, re.Pattern[str]]] = [
    (n, w, re.compile(p))
    for n, w, p in [
        (
            "ignore_instructions",
            3,
            _IGNORE + r"\b(?:\W+\w+){0,3}?\W+" + _PRIOR + r"\b(?:\W+\w+){0,3}?\W+" + _INSTR + r"\b",
        ),
        ("ignore_instructions", 3, _IGNORE + r"\b(?:\W+\w+){0,3}?\W+" + _INSTR + r"\W+" + _PRIOR + r"\b"),
        (
            "ignore_instructions",
            3,
            _IGNORE
            + r"\s+(?:everything|all|anything)\s+(?:above|before|else|previously|you (?:were|have been) told|so far)",
        ),
        ("ignore_instructions", 3, r"\b(?:disregard|ignore|forget) (?:the|everything) (?:above|preceding)"),
        (
            "ignore_instructions",
            3,
            r"\b(?:do not|don't|never|stop) (?:follow|obey|listen to)(?:ing)? (?:(?:the |any |those )?(?:previous"
            r"|prior|original|system|earlier|above) |your (?:previous |prior |original |system )?)(?:instructions"
            r"|rules|prompt|guidelines)",
        ),
        (
            "override",
            2,
            r"\b(?:override|overrule|bypass)\b(?:\W+\w+){0,3}?\W+" + _PRIOR + r"\b(?:\W+\w+){0,3}?\W+" + _INSTR + r"\b",
        ),
        (
            "ignore_instructions",
            3,
            r"(?:忽略|无视|忘记|忽視|無視)[^。！？\n]{0,12}(?:指令|指示|说明|提示)",
        ),
        (
            "new_instructions",
            3,
            r"\b(?:new|updated|real|actual|true|revised|secret|hidden|additional) (?:instructions?|directives?"
            r"|system prompt|system message)\s*(?::|are|is|follow|below|as follows)",
        ),
        ("new_instructions", 3, r"\binstructions? (?:have|has) (?:changed|been updated)"),
        (
            "addressed_to_model",
            3,
            r"\b(?:note|message|instructions?|reminder|directive|memo|notice|hint|request|command|warning|attention"
            r"|p\.?s\.?|compliance notice|notice)s? (?:to|for) (?:the |any |all |every )?" + _AI + r"\b",
        ),
        (
            "addressed_to_model",
            3,
            r"^[\W_]*(?:dear|hey|hi|hello|attention|psst|ok|okay|listen|yo)\W+(?:the |an? )?" + _AI + r"\b",
        ),
        ("addressed_to_model", 2, r"^[\W_]*(?:the )?" + _AI + r"\s*[,:!]"),
        (
            "addressed_to_model",
            3,
            r"\bif you(?:'re| are) (?:an?|the) (?:" + _AI[3:-1] + r"|model|bot|agent|machine|automated \w+)\b"
            r"(?=\s*(?:[,.:;!]|reading|processing|summari|answering|parsing|who|that|and)|$)",
        ),
        (
            "addressed_to_model",
            3,
            r"\b"
            + _AI
            + r" (?:reading|processing|summari[sz]ing|answering|parsing|analy[sz]ing|ingesting|seeing|scanning"
            r"|indexing|retrieving|crawling|using) (?:this|these|the following|the above)",
        ),
        (
            "addressed_to_model",
            2,
            r"\b(?:any|all|every|each) "
            + _AI
            + r"\b.{0,60}\b(?:must|should|shall|will|is required|are required|have to|has to|needs? to|is expected"
            r"|are expected|is instructed)",
        ),
        ("addressed_to_model", 3, r"\b(?:important|attention|notice) (?:for|to) (?:the |any )?" + _AI + r"\b"),
        (
            "addressed_to_model",
            2,
            r"\b(?:note|notes|message|instructions?|directives?|reminder)s? (?:to|for) (?:the |any |all )?(?:models?"
            r"|bots?|agents?|machines?)\b",
        ),
        # a duty put on the model in the third person: "the assistant that summarises this page is expected to say X"
        ("model_obligation", 2, r"\b" + _AI + r"\b.{0,80}?" + _OBLIGE + r"(?:\W+\w+){0,2}?\W+" + _DUTY + r"\b"),
        (
            "model_obligation",
            2,
            r"\b(?:responses?|answers?|replies|summar(?:y|ies)|outputs?)\b(?:\W+\w+){0,3}?\W+(?:from|about|on|using"
            r"|citing|of) this (?:article|page|document|text|source|record|site)\b",
        ),
        ("model_obligation", 2, r"(?:^|\W)" + _OBLIGE + r"(?:\W+\w+){0,2}?\W+" + _DUTY + r"\b"),
        # a key-value field meant for the model: {"llm_instruction": ...}, ai_directive: ..., x-assistant-policy=...
        (
            "model_field",
            3,
            r"[\"']?(?:x-)?(?:llm|ai|assistant|chatbot|gpt|bot|models?|agent)[_-](?:instructions?|directives?|notes?"
            r"|polic(?:y|ies)|prompts?|commands?|tasks?|messages?|rules)[\"']?\s*[:=]",
        ),
        (
            "system_prompt",
            2,
            r"\b(?:system ?-?prompts?|system messages?|initial (?:instructions|prompt)|original (?:instructions"
            r"|prompt)|hidden (?:instructions|prompt)|pre-?prompt|developer (?:message|instructions)"
            r"|prompts? (?:du )?(?:syst[eè]me|del sistema|de sistema|di sistema|do sistema)|systemprompt"
            r"|systemnachricht|системн\w+ (?:промпт|сообщени\w+)|系统提示)",
        ),
        (
            "system_prompt",
            2,
            r"\b(?:your|the) instructions (?:you were given|above|given to you|you received)|\b(?:everything"
            r"|the text|the words) above (?:this|the)",
        ),
        (
            "prompt_leak",
            3,
            r"\b(?:reveal|print|show|output|repeat|display|leak|disclose|tell me|share|write out|reproduce|recite"
            r"|give me|dump|quote|echo|paste|spell out)\b(?:\W+\w+){0,3}?\W+your (?:system |initial |original "
            r"|hidden |full |complete |exact )*(?:prompt|instructions|configuration|directives|system message)",
        ),
        (
            "prompt_leak",
            3,
            r"\bwhat (?:is|are|were) your (?:system |initial |original |hidden )?(?:prompt|instructions)",
        ),
        (
            "fake_system",
            3,
            r"<\|(?:im_start|im_end|system|endoftext|begin_of_text|start_header_id|end_header_id|eot_id)\|>"
            r"|\[/?inst\]|<</?sys>>",
        ),
        (
            "fake_system",
            3,
            r"(?m)^[\W_]*(?:system|sys|admin|administrator|developer|root|operator)\s*(?:message|prompt|note|notice"
            r"|override|update|instructions?|command|alert|directive|policy)\s*[:>\]#-]",
        ),
        (
            "fake_system",
            3,
            r"\b(?:system|admin|developer|root) override\b|#{2,}\s*(?:system|instructions?|new instructions)\b",
        ),
        ("fake_system", 1.5, r"(?m)^[\W_]*(?:system|assistant)\s*:"),
        (
            "roleplay",
            3,
            r"\b(?:jailbreak|jailbroken|dan mode|do anything now|developer mode enabled)\b|\b(?:god|dan|evil"
            r"|unrestricted|unfiltered) mode\b",
        ),
        (
            "roleplay",
            2,
            r"\byou are now\b|\byou(?:'re| are) no longer\b|\bfrom now on,? you\b|\blet's play a game\b"
            r"|\bplay the role of\b|\brole-?play\b|\bstay in character\b",
        ),
        (
            "roleplay",
            2,
            r"\b(?:pretend|imagine) (?:to be|you are|you're|that you are)\b|\byour (?:new )?(?:role|persona|identity"
            r"|task|goal|purpose|job) (?:is|are|will be)\b",
        ),
        (
            "roleplay",
            1,
            r"\bact as (?:an?|the|my|if)\b|\b(?:unfiltered|uncensored)\b|\bno (?:rules|restrictions|filters|limits)\b",
        ),
        (
            "output_directive",
            3,
            r"\b(?:begin|start|end|finish|prefix|conclude|open|close|sign) (?:your|every"
            r"|each) (?:final )?(?:answers?|responses?|repl(?:y|ies)|outputs?|messages?|summar(?:y|ies))\b",
        ),
        (
            "output_directive",
            2,
            r"\b(?:in|to|into|at the (?:start|end|beginning|top|bottom) of|before|after|with|within"
            r"|throughout) (?:your|every|each|all your) (?:final )?(?:answers?|responses?|repl(?:y|ies)|outputs?"
            r"|summar(?:y|ies)|completions?)\b",
        ),
        (
            "output_directive",
            2,
            r"\byour (?:answers?|responses?|repl(?:y|ies)|outputs?) (?:must|should|shall|will|has to|needs to"
            r"|may only)\b",
        ),
        (
            "output_directive",
            2,
            r"\b(?:do not|don't|never) (?:answer|respond to|address) the (?:question|query|user)\b"
            r"|\bignore the (?:question|query|user)\b",
        ),
        (
            "output_directive",
            2,
            r"\b(?:votre|deine|ihre|tu|su|tua|sua|je) (?:réponse|reponse|antwort|respuesta|risposta|resposta"
            r"|antwoord)\b",
        ),
        (
            "user_directive",
            2,
            r"\b(?:must|should|shall|will|always|please|kindly|has to|have to|needs? to) (?:tell|inform|warn|advise"
            r"|remind|convince|persuade|ask|urge|instruct|direct|redirect|refer|encourage|invite) (?:the )?(?:user"
            r"|reader|human|customer|visitor)s?\b",
        ),
        (
            "reply_context",
            2,
            r"\bwhen (?:you|an? \w+) (?:reply|respond|answer|summari[sz]e|write (?:your|the) (?:answer|reply"
            r"|response))",
        ),
        (
            "user_directive",
            1.5,
            r"\b(?:tell|inform|warn|advise|remind|convince|persuade|ask|urge|instruct|direct|redirect|refer"
            r"|encourage|invite|demandez à|bitte den|pide al|chiedi all'?|peça ao|vraag de) (?:the |l'|den |al |ao "
            r"|de )?(?:user|reader|human|customer|visitor|utilisateur|nutzer|benutzer|usuario|utente|usuário|usuario"
            r"|gebruiker)s?\b",
        ),
    ]
]
_REQUEST = re.compile(_LEAD + _VERBS + r"\b")
_LEAD_OUT = re.compile(_LEAD + _OUT_VERB + r"\b")
_OUTPUT_REQUEST = re.compile(
    r"\b(?:and|then|you (?:must|should|will)|could you|would you(?: kindly)?|please|kindly)\s+" + _OUT_VERB + r"\b"
)
_SECOND_PERSON = re.compile(r"\b(?:you|your|yours|vous|votre|du|dein\w*|tu|usted|voi|você|jij|je)\b")


def _clauses(s: str) -> list[str]:
    return [c.strip() for c in re.split(r"[:;,|]\s*|\.\s+|\n", s) if c.strip()]


def score_sentence(canon: str, orig: str) -> tuple[float, list[str]]:
    """Weighted instruction-likeness of one sentence: (score, names of the features that fired).

    Strong phrases weigh 3 (the threshold) on their own; everything else needs company:
    a request form (imperative or "could you"), an output verb with something to emit, an
    addressee, a URL or e-mail address to pass on."""
    best: dict[str, float] = {}
    for name, w, pat in _FEATURES:  # one weight per feature: the strongest pattern that fired
        if w > best.get(name, 0) and pat.search(canon):
            best[name] = w
    score, why = sum(best.values()), list(best)
    clauses = _clauses(canon)
    request = any(_REQUEST.match(c) for c in clauses)
    if request:
        score += 1
        why.append("request")
    payload = bool(_URL.search(orig) or _EMAIL.search(orig) or _CODE.search(orig))
    if (any(_LEAD_OUT.match(c) for c in clauses) or _OUTPUT_REQUEST.search(canon)) and (
        request or _SECOND_PERSON.search(canon)
    ):
        score += 2 if payload else 1
        why.append("output_request")
    if payload and score > 0:
        score += 1
        why.append("payload")
    if re.search(r"!\[[^\]]*\]\(\s*(?:https?:)?//[^)]*[?{=]", orig):
        score += 3
        why.append("exfil_image")
    elif re.search(
        r"(?:https?://|www\.)\S*(?:\{[^}]*\}|<[a-z_ ]+>|\[(?:question|query|user|input|data|conversation|chat"
        r"|history)\])",
        canon,
    ):
        score += 2
        why.append("url_template")
    return score, why


def _weak(canon: str, orig: str) -> bool:
    """Does a neighbouring sentence continue an instruction (so it goes with it)?"""
    return bool(
        any(_REQUEST.match(c) for c in _clauses(canon))
        or _SECOND_PERSON.search(canon)
        or _URL.search(orig)
        or _EMAIL.search(orig)
        or re.fullmatch(r"\W*[\"“'][^\"”']+[\"”']\W*", orig.strip())
    )


# ---- screening ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Finding:
    """One screened span of the original text and the rule that caught it."""

    start: int
    end: int
    rule: str
    text: str
    read_as: str = ""  # what a model would have read there, when that differs (decoded, collapsed)

    def to_dict(self, chunk_id: str | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {"rule": self.rule, "span": self.text[:MAX_SPAN_CHARS]}
        if chunk_id is not None:
            d = {"chunk_id": chunk_id, **d}
        if self.read_as and self.read_as.strip() != self.text.strip().lower():
            d["read_as"] = self.read_as[:MAX_SPAN_CHARS]
        return d


@dataclass(frozen=True)
class Screened:
    text: str
    findings: tuple[Finding, ...] = ()

    @property
    def instructions(self) -> list[Finding]:
        """Findings that are instructions or hidden text, not invisible-character clean-up."""
        return [f for f in self.findings if f.rule != "invisible_chars"]


_UNIT_END = re.compile(
    r"[.!?。！？，]+[\"'”’)\]]*(?=\s|$|<)|\n|<\|im_end\|>|\[/(?:system|inst|sys|admin)\]|</\w+>|<</sys>>|-->"
)


_SOFT_END = re.compile(r"(?:https?://|www\.)\S+(?=\s+\S)|[)\]}>](?=\s+\S)")


def _units(canon: str, upper_at: Any = lambda i: False) -> list[tuple[int, int, bool]]:
    """Sentences (and lines) of the canonical text: (start, end, starts_paragraph). A URL or a
    closing bracket followed by a capitalised word (``upper_at`` looks at the original) also
    ends a sentence: injections often lack their final full stop."""
    out: list[tuple[int, int, bool]] = []
    start, gap = 0, ""
    soft = [
        m.end()
        for m in _SOFT_END.finditer(canon)
        if upper_at(len(canon[: m.end()]) + len(canon[m.end() :]) - len(canon[m.end() :].lstrip()))
    ]
    ends = sorted(set([m.end() for m in _UNIT_END.finditer(canon)] + soft)) + [len(canon)]
    for end in ends:
        seg = canon[start:end]
        if seg.strip():
            out.append((start, end, not out or gap.count("\n") + seg[: len(seg) - len(seg.lstrip())].count("\n") >= 2))
            gap = ""
        else:
            gap += seg
        start = end
    return out


@lru_cache(maxsize=4096)
def screen_text(text: str) -> Screened:
    """Remove instruction-like spans and hidden markup; keep every other character.

    Cached: the same chunk comes back in every hop round and in many questions."""
    if not text:
        return Screened(text)
    hidden = [(m.start(), m.end(), rule) for rule, pat in _HIDDEN for m in pat.finditer(text)]
    canon, pos = _canon(text, [(s, e) for s, e, _ in hidden])
    findings = [
        Finding(s, e, rule, text[s:e], _tags_text(text[s:e]) if rule == "unicode_tags" else "") for s, e, rule in hidden
    ]

    def orig_span(cs: int, ce: int) -> tuple[int, int]:
        ce = max(ce, cs + 1)
        return pos[cs], pos[min(ce, len(pos)) - 1] + 1

    flagged: dict[int, str] = {}
    units = _units(canon, lambda j: j < len(pos) and text[pos[j]].isupper())
    scores = []
    for k, (cs, ce, _) in enumerate(units):
        os_, oe = orig_span(cs, ce)
        score, why = score_sentence(canon[cs:ce].strip(), text[os_:oe])
        scores.append((score, why))
        if score >= THRESHOLD:
            flagged[k] = "+".join(why)
    # a suspicious sentence next to a flagged one goes with it ("From now on you are X. X must ...")
    for k in sorted(flagged):
        for j in (k - 1, k + 1):
            if 0 <= j < len(units) and j not in flagged and not units[max(j, k)][2] and scores[j][0] >= THRESHOLD - 1:
                flagged[j] = "+".join(scores[j][1]) + "+adjacent"
    # a flagged sentence takes its continuation (same paragraph) and a lead-in ending in ':'
    for k in sorted(flagged):
        j = k + 1
        while j < len(units) and j not in flagged and not units[j][2]:
            cs, ce, _ = units[j]
            os_, oe = orig_span(cs, ce)
            if not _weak(canon[cs:ce], text[os_:oe]):
                break
            flagged[j] = "continuation"
            j += 1
        if (
            k > 0
            and k - 1 not in flagged
            and not units[k][2]
            and canon[units[k - 1][0] : units[k - 1][1]].rstrip().endswith(":")
        ):
            flagged[k - 1] = "lead_in"
    spans = [(units[k][0], units[k][1], flagged[k]) for k in sorted(flagged)]
    for pat in _TAG_BLOCKS:
        spans += [(m.start(), m.end(), "fake_system_block") for m in pat.finditer(canon)]
    for cs, ce, rule in spans:
        while ce > cs and canon[ce - 1].isspace():
            ce -= 1
        while cs < ce and canon[cs].isspace():
            cs += 1
        if ce > cs:
            os_, oe = orig_span(cs, ce)
            findings.append(Finding(os_, oe, rule, text[os_:oe], canon[cs:ce]))
    # a finding that touches a base64 blob takes the whole blob (a fragment may still decode)
    blobs = [(m.start(), m.end()) for m in _B64.finditer(text) if _b64_text(m.group())]
    findings = [_widen(f, blobs, text) for f in findings]
    invisible = [m.start() for m in _STRIP.finditer(text)]
    return Screened(_apply(text, findings, invisible), tuple(_merge(findings, invisible, text)))


def _widen(f: Finding, ranges: list[tuple[int, int]], text: str) -> Finding:
    for bs, be in ranges:
        if f.start < be and bs < f.end:
            f = replace(f, start=min(f.start, bs), end=max(f.end, be), text=text[min(f.start, bs) : max(f.end, be)])
    return f


def _tags_text(s: str) -> str:
    return "".join(chr(ord(c) - 0xE0000) for c in s if 0xE0020 <= ord(c) <= 0xE007E)


def _merge(findings: list[Finding], invisible: list[int], text: str) -> list[Finding]:
    out = sorted(findings, key=lambda f: (f.start, -f.end))
    merged: list[Finding] = []
    for f in out:
        if merged and f.start < merged[-1].end:  # overlapping: keep the wider span, both rules
            last = merged[-1]
            end = max(last.end, f.end)
            rule = last.rule if f.rule in last.rule.split("; ") else f"{last.rule}; {f.rule}"
            merged[-1] = replace(last, end=end, rule=rule, text=text[last.start : end])
        else:
            merged.append(f)
    if invisible:
        merged.append(
            Finding(
                invisible[0], invisible[-1] + 1, "invisible_chars", f"{len(invisible)} invisible character(s) removed"
            )
        )
    return merged


def _apply(text: str, findings: list[Finding], invisible: list[int]) -> str:
    cut = sorted(((f.start, f.end, f.rule) for f in findings), key=lambda x: x[0])
    hidden_rules = {h for h, _ in _HIDDEN}
    parts: list[str] = []
    last, marked = 0, False
    for s, e, rule in cut:
        if e <= last:
            continue
        s = max(s, last)
        between = text[last:s]
        if not (marked and not between.strip()):  # two removed sentences in a row: one marker
            parts.append(between)
            marked = False
        if rule not in hidden_rules and not marked:
            parts.append(REMOVED)
            marked = True
        last = e
    parts.append(text[last:])
    return _STRIP.sub("", "".join(parts))


def screen_hits(hits: Iterable[Hit]) -> tuple[list[Hit], list[dict[str, Any]]]:
    """Screen each hit's text. Returns the hits (screened copies where something was removed;
    ``metadata["screened"]`` lists what) and every finding as ``{chunk_id, rule, span}``."""
    out: list[Hit] = []
    report: list[dict[str, Any]] = []
    for h in hits:
        s = screen_text(h.text)
        if not s.findings:
            out.append(h)
            continue
        found = [f.to_dict() for f in s.findings]
        out.append(replace(h, text=s.text, metadata={**h.metadata, "screened": found}))
        report += [f.to_dict(h.id) for f in s.findings]
    return out, report


# ---- answers -----------------------------------------------------------------------------------
_SCOPE = re.compile(
    r"\b(?:web ?site|site|url|link|homepage|home page|web address|web page|page|online|download|e-?mail|contact"
    r"|address|domain|portal|internet|reach|write to)\b",
    re.I,
)
_WORDS = re.compile(r"[a-z0-9_]+")


@dataclass(frozen=True)
class AnswerCheck:
    """The answer after the check (flagged items redacted) and why it was flagged."""

    answer: str
    flags: list[dict[str, str]] = field(default_factory=list)

    @property
    def flagged(self) -> bool:
        return bool(self.flags)


def _norm_url(u: str) -> str:
    u = u.lower().rstrip(".,;:!?)]}>'\"")
    u = re.sub(r"^[a-z]+://", "", u)
    return u[4:] if u.startswith("www.") else u


def _shingles(text: str, n: int = 4) -> set[tuple[str, ...]]:
    w = _WORDS.findall(text.lower())
    return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}


@lru_cache(maxsize=8)
def prompt_lines(names: tuple[str, ...] = GENERATION_PROMPTS) -> tuple[tuple[str, frozenset[tuple[str, ...]]], ...]:
    """The distinctive lines of hoprank's system prompts (six words or more) and their 4-grams."""
    out = []
    for name in names:
        try:
            text = prompts.load(name)
        except KeyError:
            continue
        for line in text.splitlines():
            line = re.sub(r"\{\{[^}]*\}\}", " ", line).strip()
            if len(_WORDS.findall(line.lower())) >= 6:
                out.append((line, frozenset(_shingles(line))))
    return tuple(out)


def check_answer(
    answer: str,
    question: str,
    citations: Sequence[Citation],
    evidence: Sequence[Hit],
    prompt_names: tuple[str, ...] = GENERATION_PROMPTS,
) -> AnswerCheck:
    """Flag what an obeyed injection leaves in an answer.

    * a URL or e-mail address is allowed only when it occurs in the (screened) text of a
      chunk the answer cites *and* the question asks for a link, site or contact (or names
      the address itself); anything else is redacted and flagged;
    * a line of hoprank's system prompts (60% of its word 4-grams or more, not in the
      evidence) means the prompt leaked: the sentences carrying it are removed;
    * text that screening removed from the evidence (a 5-word run, or a code-like token
      such as ``ZEBRA-4821``) must not come back through the answer."""
    if not answer:
        return AnswerCheck(answer)
    cited_text = " ".join(c.title + " " + c.text for c in citations)
    cited_norm = re.sub(r"\b[a-z]+://(?:www\.)?|\bwww\.", "", cited_text.lower())
    ev_text = " ".join(h.title + " " + h.text for h in evidence)
    in_scope = bool(_SCOPE.search(question))
    flags: list[dict[str, str]] = []
    redacted = answer
    for kind, pat, placeholder in (("email", _EMAIL, "[address removed]"), ("url", _URL, "[link removed]")):
        for m in list(pat.finditer(redacted)):
            value = m.group().rstrip(".,;:!?)]}>'\"")
            if kind == "url" and "@" in redacted[max(0, m.start() - 1) : m.start() + 1]:
                continue  # the domain of an e-mail address already handled
            if "removed]" in value:
                continue
            nv = _norm_url(value)
            if nv in question.lower():
                continue
            if nv not in cited_norm:
                reason = "not in the cited evidence"
            elif not in_scope:
                reason = "the question does not ask for a link or contact"
            else:
                continue
            flags.append({"kind": kind, "value": value, "reason": reason})
            redacted = redacted.replace(value, placeholder)
    ans_sh = _shingles(redacted)
    ev_sh = _shingles(ev_text)
    leaked = [
        line for line, sh in prompt_lines(prompt_names) if sh and len((sh & ans_sh) - ev_sh) >= max(3, 0.6 * len(sh))
    ]
    if leaked:
        flags.append(
            {
                "kind": "prompt",
                "value": leaked[0][:120],
                "reason": f"repeats {len(leaked)} line(s) of the system prompt",
            }
        )
        bad = set().union(*(sh for line, sh in prompt_lines(prompt_names) if line in leaked))
        redacted = _drop_sentences(redacted, lambda s: bool(_shingles(s) & bad))
    removed = [
        f.get("read_as") or f.get("span", "")
        for h in evidence
        for f in (h.metadata or {}).get("screened", [])
        if f.get("rule") != "invisible_chars"
    ]
    if removed:
        rm_text = " ".join(removed)
        rm_sh = _shingles(rm_text, 5)
        keep_words = set(_WORDS.findall((ev_text + " " + question).lower()))
        echo = (_shingles(redacted, 5) & rm_sh) - _shingles(ev_text + " " + question, 5)
        codes = [
            c
            for c in re.findall(r"\b[A-Z][A-Z0-9]{2,}(?:[-_][A-Z0-9]+)+\b|\b[A-Z]{5,}\b", redacted)
            if c.lower() in rm_text.lower() and c.lower() not in keep_words
        ]
        if echo or codes:
            flags.append(
                {
                    "kind": "screened_text",
                    "value": (codes[0] if codes else " ".join(next(iter(echo)))),
                    "reason": "repeats text that screening removed from the evidence",
                }
            )
            redacted = _drop_sentences(redacted, lambda s: bool(_shingles(s, 5) & rm_sh) or any(c in s for c in codes))
    if flags and not re.search(r"\w{2,}", _strip_marks(redacted)):
        redacted = "The answer was withheld: it carried content that was flagged (see the trace)."
    return AnswerCheck(redacted, flags)


def _strip_marks(s: str) -> str:
    return re.sub(r"\[\d+(?:\s*,\s*\d+)*\]|\[(?:link|address) removed\]", "", s)


def _drop_sentences(text: str, bad: Any) -> str:
    sents = re.findall(r"[^.!?\n]+(?:[.!?]+|\n|$)", text)
    return " ".join(s.strip() for s in sents if s.strip() and not bad(s)).strip()


# ---- the agent's two calls -------------------------------------------------------------------
def screens(mode: str) -> bool:
    """Does ``agent.injection_guard`` ask for screening retrieved text?"""
    return mode in ("on", "screen")


def guard_answer(
    answer: str, status: str, question: str, citations: Sequence[Citation], evidence: Sequence[Hit], mode: str = "on"
) -> tuple[str, str, dict[str, Any]]:
    """(answer, status, trace data) after the answer check: an ``answered`` or ``partial``
    answer with a flag becomes ``flagged`` with the flagged items redacted. The trace data
    lists the flags and every span screened out of the evidence the generator read."""
    info: dict[str, Any] = {}
    screened = [{"chunk_id": h.id, **f} for h in evidence for f in (h.metadata or {}).get("screened", [])]
    if screened:
        info["screened"] = screened
    if mode not in ("on", "flag") or status not in ("answered", "partial"):
        return answer, status, info
    chk = check_answer(answer, question, citations, evidence)
    if not chk.flagged:
        return answer, status, info
    info["flags"] = chk.flags
    return chk.answer, "flagged", info
