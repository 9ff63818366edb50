"""Everything the agent calls: ingestion, retrieval, LLM clients and rerankers."""
