"""`serve` answers the gRPC health checking protocol (grpc.health.v1.Health/Check) on its
own port, and with --health-listen on a plaintext port that serves nothing else — what
Kubernetes' grpc probes (no TLS) and grpc_health_probe ask. SERVING only while the store
answers: a PostgreSQL that refuses connections turns it NOT_SERVING, and back."""

from __future__ import annotations

import re

import pytest

from helpers import Server, key_init, wait_for

grpc = pytest.importorskip("grpc", reason="grpcio is needed (integration/requirements.txt)")

CHECK = "/grpc.health.v1.Health/Check"
HEALTH_RE = re.compile(rb"health \(grpc\.health\.v1, plaintext\) on grpc://127\.0\.0\.1:(\d+)")
SERVING, NOT_SERVING = 1, 2


def request(service: str) -> bytes:
    """HealthCheckRequest{service}: field 1, length-delimited (hand-encoded: two fields)."""
    data = service.encode()
    return b"" if not data else b"\x0a" + bytes([len(data)]) + data


def status_of(answer: bytes) -> int:
    """HealthCheckResponse.status: field 1, varint; absent means UNKNOWN (0)."""
    return answer[1] if answer[:1] == b"\x08" else 0


def check(port: int, service: str = "") -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(CHECK, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        return status_of(call(request(service), timeout=10))


def start(home, tmp_path, store=None) -> tuple[Server, int]:
    server = Server(home, tmp_path, store=store)
    server.args += ["--health-listen", "127.0.0.1:0"]
    server.start()
    m = wait_for(lambda: HEALTH_RE.search(server.stderr), 15, "the health listener's line")
    return server, int(m.group(1))


def test_health_on_the_main_port_and_a_plaintext_health_port(home, tmp_path):
    key_init(home)
    server, health_port = start(home, tmp_path)
    try:
        for port in (server.port, health_port):
            assert check(port) == SERVING
            assert check(port, "stigmer.exec.v1.ExecutionContextService") == SERVING
            with pytest.raises(grpc.RpcError) as unknown:
                check(port, "no.such.Service")
            assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        # The health port serves health only: not the context API.
        with grpc.insecure_channel(f"127.0.0.1:{health_port}") as channel:
            get = channel.unary_unary("/stigmer.exec.v1.ExecutionContextService/GetExecutionContext",
                                      request_serializer=lambda b: b, response_deserializer=lambda b: b)
            with pytest.raises(grpc.RpcError) as refused:
                get(b"", timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        assert server.stop() == 0


def test_not_serving_while_postgresql_refuses(home, tmp_path, pg_db):
    cluster, db = pg_db
    key_init(home)
    server, health_port = start(home, tmp_path, store=cluster.url(db))
    try:
        assert check(health_port) == SERVING
        cluster.psql("postgres", f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS false')
        cluster.psql("postgres", f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'")
        wait_for(lambda: check(health_port) == NOT_SERVING, 20, "NOT_SERVING with the database refusing")
        cluster.psql("postgres", f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true')
        wait_for(lambda: check(health_port) == SERVING, 30, "SERVING again once the database accepts")
    finally:
        cluster.psql("postgres", f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true')
        server.stop()
