"""Default code paths must never open a connection beyond loopback (no model hub, no
telemetry): the machines hoprank runs on are often offline or air-gapped."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from conftest import write_corpus

from hoprank.tools.ingest.index import Index


def _is_loopback(address) -> bool:
    if isinstance(address, tuple):
        host = address[0]
    else:
        return True  # unix sockets
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@pytest.fixture()
def no_network(monkeypatch):
    attempts: list = []
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def connect(self, address):
        if not _is_loopback(address):
            attempts.append(address)
            raise OSError(f"test forbids network connection to {address}")
        return real_connect(self, address)

    def connect_ex(self, address):
        if not _is_loopback(address):
            attempts.append(address)
            return 111
        return real_connect_ex(self, address)

    def getaddrinfo(host, *a, **kw):
        if host not in (None, "localhost", "127.0.0.1", "::1"):
            attempts.append(("dns", host))
            raise socket.gaierror(f"test forbids DNS lookup of {host}")
        return real_getaddrinfo(host, *a, **kw)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return attempts


def test_guard_catches_a_real_attempt(no_network):
    with pytest.raises(OSError):
        socket.create_connection(("192.0.2.1", 80), timeout=1)
    assert no_network


def test_index_and_every_retriever_stay_offline(no_network, tmp_path, monkeypatch):
    # a fresh process state: force the embedding model to load under the guard
    from hoprank.tools import embeddings

    monkeypatch.setattr(embeddings, "_MODELS", {})
    idx, _ = Index.build(tmp_path / "idx", sources=[write_corpus(tmp_path / "docs")], qdrant=True)
    for name in ["bm25", "rank-bm25", "dense", "qdrant", "qdrant-hybrid", "hybrid"]:
        assert idx.retriever(name).search("lantern river", 3)
    idx.retriever("qdrant").close()
    assert no_network == []
