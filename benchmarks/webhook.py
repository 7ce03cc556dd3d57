#!/usr/bin/env python3
"""Admission latency of `stigmer-exec webhook serve`, as the API server sees it: one
keep-alive TLS connection, AdmissionReview v1 requests one after another, the time from
sending the request to having read the whole answer. Three cases:

- a pod whose container has a command (no lookup);
- a pod without one, whose image's Entrypoint/Cmd is read from a registry (the CNCF
  distribution registry on loopback, TLS and htpasswd auth, the credentials given with
  --registry-auth), cold: a second webhook with --cache-ttl 0 asks the registry every time
  (token-less Basic auth: manifest 401, manifest, config blob);
- the same, cached (the default webhook, after its first lookup).

    ROUNDS=500 benchmarks/webhook.py [PATH-TO-stigmer-exec-full]   (default .build-release-full/release/stigmer-exec-full)

Prints p50 and p99 of each in milliseconds. Needs docker-registry, skopeo and umoci
(scripts/deps.sh).
"""
import base64
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
import time
import http.client
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "integration"))
import registry as R  # noqa: E402

binary = Path(sys.argv[1] if len(sys.argv) > 1 else REPO / ".build-release-full" / "release" / "stigmer-exec-full").resolve()
rounds = int(os.environ.get("ROUNDS", "500"))
WARMUP = 20


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def review(pod):
    return json.dumps({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "00000000-0000-0000-0000-000000000000", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "resource": {"group": "", "version": "v1", "resource": "pods"}, "namespace": "bench",
                    "operation": "CREATE", "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
                    "object": pod, "oldObject": None, "dryRun": False,
                    "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}},
    }).encode()


def pod(image, command=True):
    container = {"name": "app", "image": image, "env": [{"name": "LEVEL", "value": "info"}]}
    if command:
        container["command"] = ["/app/server", "--port", "8080"]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "app-7d9c-", "namespace": "bench",
                         "annotations": {"stigmer.ai/inject": "true", "stigmer.ai/execution-id": "bench-1",
                                         "stigmer.ai/token-secret": "bench-1-token"}},
            "spec": {"containers": [container]}}


def start(work, cert, extra):
    log = open(work / f"webhook-{len(extra)}.log", "w+b")
    proc = subprocess.Popen([str(binary), "webhook", "serve", "--listen", "127.0.0.1:0", "--tls-cert", str(cert[0]),
                             "--tls-key", str(cert[1]), "--image", "example.com/stigmer-exec:0.2.0",
                             "--server", "grpcs://stigmer:7443", *extra], stderr=log, stdin=subprocess.DEVNULL)
    deadline = time.time() + 15
    while time.time() < deadline and proc.poll() is None:
        log.seek(0)
        m = re.search(rb"serving on https://127\.0\.0\.1:(\d+)", log.read())
        if m:
            return proc, int(m.group(1))
        time.sleep(0.02)
    proc.kill()
    log.seek(0)
    sys.exit("the webhook did not start:\n" + log.read().decode(errors="replace"))


def measure(port, ca, body, n):
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=R.client_context(ca))
    times = []
    for i in range(n + WARMUP):
        started = time.perf_counter()
        connection.request("POST", "/mutate", body, {"Content-Type": "application/json"})
        answer = connection.getresponse().read()
        elapsed = time.perf_counter() - started
        response = json.loads(answer)["response"]
        assert response["allowed"] and "patch" in response, answer[:300]
        if i >= WARMUP:
            times.append(elapsed * 1000)
    connection.close()
    return times


def main():
    with tempfile.TemporaryDirectory(prefix="stigmer-webhook-bench-") as tmp:
        work = Path(tmp)
        ca = R.make_ca(work)
        cert = R.make_cert(work, ca)
        with R.Registry(work / "registry") as reg:
            R.push_image(reg, "bench/app", "1.0", entrypoint=["/app/server"], cmd=["--port", "8080"])
            auth = work / "auth.json"
            auth.write_text(json.dumps(R.dockerconfigjson(reg.host, reg.username, reg.password)))
            lookups = ["--registry-ca", str(reg.ca), "--registry-auth", str(auth)]
            cached, cached_port = start(work, cert, lookups)
            cold, cold_port = start(work, cert, lookups + ["--cache-ttl", "0"])
            try:
                image = f"{reg.host}/bench/app:1.0"
                results = {
                    "pod with a command": measure(cached_port, ca[0], review(pod(image)), rounds),
                    "registry lookup, cached": measure(cached_port, ca[0], review(pod(image, command=False)), rounds),
                    "registry lookup, cold": measure(cold_port, ca[0], review(pod(image, command=False)), min(rounds, 200)),
                }
            finally:
                for proc in (cached, cold):
                    proc.terminate()
                    proc.wait(10)
        print(f"{binary.name} webhook, {rounds} rounds (cold: {min(rounds, 200)})")
        for name, times in results.items():
            print(f"  {name:28s} p50 {percentile(times, 50):7.3f} ms   p99 {percentile(times, 99):7.3f} ms")


if __name__ == "__main__":
    main()
