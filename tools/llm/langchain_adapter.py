"""LangChain chat-model adapter so LangGraph nodes can use any hoprank ``ChatLLM``.

``HoprankChatModel(llm=make_llm(cfg)).bind_tools([...])`` works with ``ToolNode`` for
every backend:

* backends with native tool calling (OpenAI-compatible servers: vLLM, OpenAI, a
  llama.cpp server) receive the tool schemas as ``tools=`` and return ``tool_calls``;
* the embedded 135M model has no tool calling, so the schemas are rendered into the
  system prompt (``prompts/tool_calling.system.txt``) and a JSON tool call
  ``{"tool": name, "arguments": {...}}`` is parsed back out of its text. Anything that does
  not parse as a call to a bound tool is a plain answer, never an exception: a weak model's
  garbage must not take the graph down.

Every call still goes through ``ChatLLM.chat`` so the cache, retries and usage apply.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict

from hoprank.prompts import render
from hoprank.tools.llm.base import ChatLLM, LLMResponse, extract_json

_NAME_KEYS = ("tool", "name", "tool_name", "function")
_ARG_KEYS = ("arguments", "args", "parameters", "input")


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks
        return "".join(b if isinstance(b, str) else str(b.get("text", "")) for b in content)
    return str(content or "")


def to_openai_messages(messages: Sequence[BaseMessage], native_tools: bool) -> list[dict[str, Any]]:
    """LangChain messages -> OpenAI-style dicts. Without native tools, tool calls and tool
    results become plain text turns the small model can read."""
    out: list[dict[str, Any]] = []
    for m in messages:
        text = _content_text(m.content)
        if isinstance(m, SystemMessage):
            out.append({"role": "system", "content": text})
        elif isinstance(m, HumanMessage):
            out.append({"role": "user", "content": text})
        elif isinstance(m, AIMessage):
            if m.tool_calls and native_tools:
                out.append(
                    {
                        "role": "assistant",
                        "content": text or None,
                        "tool_calls": [
                            {
                                "id": tc["id"],
                                "type": "function",
                                "function": {"name": tc["name"], "arguments": json.dumps(tc["args"])},
                            }
                            for tc in m.tool_calls
                        ],
                    }
                )
            elif m.tool_calls:
                calls = [{"tool": tc["name"], "arguments": tc["args"]} for tc in m.tool_calls]
                out.append({"role": "assistant", "content": json.dumps(calls[0] if len(calls) == 1 else calls)})
            else:
                out.append({"role": "assistant", "content": text})
        elif isinstance(m, ToolMessage):
            if native_tools:
                out.append({"role": "tool", "tool_call_id": m.tool_call_id, "content": text})
            else:
                out.append(
                    {"role": "user", "content": render("tool_calling.result", name=m.name or "tool", content=text)}
                )
        else:
            out.append({"role": getattr(m, "role", "user"), "content": text})
    return out


def _tool_catalogue(tools: list[dict[str, Any]]) -> str:
    brief = [
        {
            "name": t["function"]["name"],
            "description": t["function"].get("description", ""),
            "parameters": t["function"].get("parameters", {}),
        }
        for t in tools
    ]
    return json.dumps(brief, indent=1)


def with_tool_prompt(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Put the rendered tool instructions into the (first) system message."""
    instructions = render("tool_calling.system", tools=_tool_catalogue(tools))
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": messages[0]["content"] + "\n\n" + instructions}, *messages[1:]]
    return [{"role": "system", "content": instructions}, *messages]


def parse_tool_calls(text: str, tool_names: set[str]) -> list[dict[str, Any]]:
    """Find ``{"tool": name, "arguments": {...}}`` (or a list of them, or the common
    variants ``name``/``args``/``parameters``) in model text. Calls to tools that are not
    bound are dropped; no call -> []."""
    try:
        data = extract_json(text)
    except ValueError:
        return []
    items = data if isinstance(data, list) else [data]
    calls: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        if isinstance(item.get("function"), dict):  # OpenAI-shaped {"function": {"name", "arguments"}}
            item = item["function"]
        name = next((item[k] for k in _NAME_KEYS if isinstance(item.get(k), str)), None)
        if name not in tool_names:
            continue
        args: Any = next((item[k] for k in _ARG_KEYS if k in item), {})
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                args = {}
        if not isinstance(args, dict):
            args = {}
        calls.append({"name": name, "args": args, "id": f"call_{uuid.uuid4().hex[:16]}", "type": "tool_call"})
    return calls


class HoprankChatModel(BaseChatModel):
    """A LangChain ``BaseChatModel`` over any hoprank ``ChatLLM``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    llm: Any  # a ChatLLM (typed Any so pydantic does not try to validate it)
    max_tokens: int | None = None
    temperature: float | None = None

    @property
    def _llm_type(self) -> str:
        return f"hoprank-{getattr(self.llm, 'backend_name', 'llm')}"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": getattr(self.llm, "model_name", "unknown"), "backend": getattr(self.llm, "backend_name", "")}

    @property
    def native_tools(self) -> bool:
        return bool(getattr(self.llm, "supports_tools", False))

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: str | None = None, **kwargs: Any) -> Any:
        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    # ---- one turn ------------------------------------------------------------------
    def _prepare(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]]:
        tools = kwargs.pop("tools", None) or []
        tool_choice = kwargs.pop("tool_choice", None)
        params: dict[str, Any] = {
            "max_tokens": kwargs.pop("max_tokens", self.max_tokens),
            "temperature": kwargs.pop("temperature", self.temperature),
            "stop": stop,
        }
        msgs = to_openai_messages(messages, self.native_tools)
        if tools and self.native_tools:
            params["tools"] = tools
            if tool_choice:
                params["tool_choice"] = tool_choice if tool_choice not in ("any", "required") else "required"
        elif tools:
            msgs = with_tool_prompt(msgs, tools)
        return msgs, {k: v for k, v in params.items() if v is not None}, tools

    def _result(self, r: LLMResponse, tools: list[dict[str, Any]]) -> ChatResult:
        if r.tool_calls:
            calls = [
                {
                    "name": c["name"],
                    "args": c.get("arguments") or {},
                    "id": c.get("id") or f"call_{uuid.uuid4().hex[:16]}",
                    "type": "tool_call",
                }
                for c in r.tool_calls
            ]
        elif tools:
            calls = parse_tool_calls(r.text, {t["function"]["name"] for t in tools})
        else:
            calls = []
        usage = {
            "input_tokens": r.prompt_tokens,
            "output_tokens": r.completion_tokens,
            "total_tokens": r.prompt_tokens + r.completion_tokens,
        }
        meta = {"model_name": r.model, "finish_reason": r.finish_reason, "cached": r.cached}
        if r.warnings:
            meta["warnings"] = list(r.warnings)
        msg = AIMessage(
            content="" if calls and not r.tool_calls else r.text,
            tool_calls=calls,
            usage_metadata=usage,
            response_metadata=meta,
        )
        return ChatResult(generations=[ChatGeneration(message=msg)], llm_output={"model_name": r.model})

    def _generate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        msgs, params, tools = self._prepare(messages, stop, dict(kwargs))
        llm: ChatLLM = self.llm
        return self._result(llm.chat(msgs, **params), tools)

    async def _agenerate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        msgs, params, tools = self._prepare(messages, stop, dict(kwargs))
        llm: ChatLLM = self.llm
        return self._result(await llm.achat(msgs, **params), tools)
