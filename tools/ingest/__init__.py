"""Ingestion: read files into documents, cut documents into chunks, build the index."""
