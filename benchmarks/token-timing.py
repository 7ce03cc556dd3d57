#!/usr/bin/env python3
"""Does the time of a refused fetch say whether an execution exists, or how large it is?
(issue 10, item 10). Starts `stigmer-exec serve` (STIGMER_EXEC_BIN, default the debug
build) on loopback with a 2,000-variable context and a 6-variable one, then times refused
GetExecutionContext calls, interleaved round by round: a stranger's signed fetch for the
large context, for the small one, and for an execution that does not exist; and the real
token's key with a bad signature. Prints medians in microseconds.

    benchmarks/token-timing.py [ROUNDS]
"""
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration"))
import grpc  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey  # noqa: E402
from helpers import (Server, created_token, generate_stubs, key_init, random_execution_token,  # noqa: E402
                     remote_create, signed_get, parse_execution_token)

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 500
with tempfile.TemporaryDirectory(dir=os.path.expanduser("~/.cache")) as work:
    work = Path(work)
    home = work / "home"
    key_init(home)
    pb2, pb2_grpc = generate_stubs(work / "stubs")
    server = Server(home, work, log_level="error").start()
    try:
        big = work / "big.env"
        big.write_text("".join(f"V{i}=value-{i}\n" for i in range(2000)))
        created_token(remote_create(home, server.url, "big", "--env-file", str(big)))
        token = created_token(remote_create(home, server.url, "small", *sum((["--env", f"S{i}=x"] for i in range(6)), [])))
        server_key = parse_execution_token(token)[1]
        stranger = random_execution_token(server_key)
        recipient = X25519PrivateKey.generate().public_key().public_bytes_raw()
        bad = signed_get(pb2, token, "small", recipient)
        bad.signature = bytes(64)
        cases = {
            "stranger, large context": lambda: signed_get(pb2, stranger, "big", recipient),
            "stranger, small context": lambda: signed_get(pb2, stranger, "small", recipient),
            "stranger, no such execution": lambda: signed_get(pb2, stranger, "none", recipient),
            "real token key, bad signature": lambda: bad,
        }
        times = {name: [] for name in cases}
        with grpc.insecure_channel(server.url.removeprefix("grpc://")) as channel:
            svc = pb2_grpc.ExecutionContextServiceStub(channel)
            for _ in range(rounds):
                for name, request in cases.items():
                    req = request()
                    start = time.perf_counter()
                    try:
                        svc.GetExecutionContext(req, timeout=10)
                        raise SystemExit(f"{name}: not refused")
                    except grpc.RpcError as e:
                        assert e.code() == grpc.StatusCode.PERMISSION_DENIED, e
                    times[name].append(time.perf_counter() - start)
        for name, values in times.items():
            print(f"{name:32} median {statistics.median(values) * 1e6:8.1f} µs   p90 "
                  f"{statistics.quantiles(values, n=10)[-1] * 1e6:8.1f} µs")
    finally:
        server.stop()
