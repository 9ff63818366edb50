"""Prompt templates, one file per prompt, rendered strictly.

Placeholders are written ``{{name}}`` (double braces, so JSON examples inside prompts need
no escaping). Rendering fails loudly on a missing or an unexpected variable: a typo in a
prompt variable must be an error, not a silently empty slot in what the LLM reads.
Files ending ``.system.txt`` / ``.user.txt`` are the two halves of one chat prompt.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

_VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class PromptError(KeyError):
    """A prompt is missing, or was rendered with missing / unexpected variables."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return str(self.args[0]) if self.args else ""


@lru_cache(maxsize=None)
def load(name: str) -> str:
    """The raw template text of ``prompts/<name>.txt``."""
    fname = name if name.endswith(".txt") else f"{name}.txt"
    try:
        return resources.files(__name__).joinpath(fname).read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise PromptError(f"no prompt named {name!r} (looked for prompts/{fname}); known: {', '.join(names())}") from e


def names() -> list[str]:
    """Every prompt shipped with hoprank (file names without ``.txt``)."""
    return sorted(p.name[:-4] for p in resources.files(__name__).iterdir() if p.name.endswith(".txt"))


def placeholders(name: str) -> set[str]:
    return set(_VAR.findall(load(name)))


def render(name: str, /, **variables: object) -> str:
    template = load(name)
    wanted = set(_VAR.findall(template))
    missing = wanted - variables.keys()
    extra = variables.keys() - wanted
    if missing or extra:
        raise PromptError(f"prompt {name!r}: missing variables {sorted(missing)}, unexpected variables {sorted(extra)}")
    return _VAR.sub(lambda m: str(variables[m.group(1)]), template).strip("\n")


def chat(name: str, /, **variables: object) -> list[dict[str, str]]:
    """Render ``<name>.system`` + ``<name>.user`` into chat messages.

    Variables go to whichever half uses them; every variable must be used by one half."""
    sys_vars = placeholders(f"{name}.system")
    user_vars = placeholders(f"{name}.user")
    extra = variables.keys() - sys_vars - user_vars
    if extra:
        raise PromptError(f"prompt {name!r}: unexpected variables {sorted(extra)}")
    system = render(f"{name}.system", **{k: v for k, v in variables.items() if k in sys_vars})
    user = render(f"{name}.user", **{k: v for k, v in variables.items() if k in user_vars})
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]
