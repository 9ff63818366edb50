"""The agent: the LangGraph state machine, its state, the Python API, the CLI and servers."""
