"""``python -m hoprank.tools.llm.llamacpp_server ARGS``: llama-cpp-python's OpenAI-compatible
server with the same model-loading workaround as the embedded backend.

Why: on CPUs with AMX the repacked weight buffers make llama.cpp segfault on the first
multi-token decode (see :func:`hoprank.tools.llm.llamacpp._without_extra_bufts`); the
embedded backend turns them off per load, but ``python -m llama_cpp.server`` would load the
model with them on and die silently on its first request. Arguments are llama_cpp.server's.
"""

from __future__ import annotations


def main() -> None:
    import llama_cpp.llama as llama_module

    from hoprank.tools.llm.llamacpp import _extra_bufts, _without_extra_bufts

    if not _extra_bufts():
        _, patched = _without_extra_bufts(llama_module)
        llama_module.llama_cpp.llama_model_default_params = patched
    from llama_cpp.server.__main__ import main as serve

    serve()


if __name__ == "__main__":
    main()
