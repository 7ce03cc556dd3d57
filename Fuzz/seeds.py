#!/usr/bin/env python3
"""Writes the seed corpora and dictionaries under Fuzz/ (FUZZING.md): the examples users
bring (../shared/examples, ../shared/data), the repository's fixtures and inputs taken from
the unit tests, and values sealed and framed the way stigmer-exec writes them.
Run from the repository root: python3 Fuzz/seeds.py"""
import base64, glob, hashlib, os, shutil, struct, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
CORPUS = os.path.join(ROOT, "Fuzz", "corpus")
CANARY = "`"  # every harness reads a backtick as its planted canary value


def put(harness, name, data):
    d = os.path.join(CORPUS, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def copy(harness, path):
    with open(path, "rb") as f:
        put(harness, os.path.basename(path), f.read())


shutil.rmtree(CORPUS, ignore_errors=True)
examples = sorted(glob.glob(os.path.join(SHARED, "examples", "*")))
yamls = [p for p in examples if p.endswith(".yaml")]
jsons = [p for p in examples if p.endswith(".json")]
admission = sorted(glob.glob(os.path.join(ROOT, "integration", "admission", "*.json")))
docker_profile = os.path.join(SHARED, "data", "docker-default-seccomp.json")

# Placeholders: the forms DESIGN.md §4 lists and the unit tests' inputs.
for i, text in enumerate([
    "x${A}y", "${A}${B_2}", "${env:A}", "${MISSING:-dflt}", "${MISSING:-a b:c/d}", "[${EMPTY}]",
    "--token-file=${file:A} ${A}", "${file:A:-x}", "${file:1A}", "${file:}", "$${file:A}",
    "$A $5 $(date) $", "costs $$5", "$${A}", "$$${A}", "x${1A}", "${}", "ok ${A} then ${B",
    "${X} é ${Y:-ok} ${Z} ${A%b}", "${A:?x} ${#A} ${A/x/y} ${!A} ${$(cmd)}",
    "Bearer ${GITHUB_TOKEN}", "https://api.example.com/${env:PATH_PART}?k=${KEY:-none}",
]):
    put("placeholders", f"seed-{i:02}", text)

# Env files: the shared example and the unit tests' dialect, with canaries in values.
copy("envfile", os.path.join(SHARED, "examples", "runtime.env"))
put("envfile", "dialect.env", "A=plain\nexport B=exported\nC = spaced value \nD=value # comment\n"
    "E=value#not-comment\nF='single $X \"q\" # kept'\nG=\"tab\\tnl\\nbs\\\\q\\\"dollar\\$ \\x\"\n"
    "H=\"multi\nline\"   # after\nI=\nJ=#hash\nK= # only a comment\nL=a=b\n")
put("envfile", "crlf-bom.env", "\ufeffA=1\r\nB=\"x\"\r\nA=2\r\n")
put("envfile", "canary.env", f"A={CANARY}\nB='{CANARY}'\nC=\"{CANARY}\n\"\nD={CANARY} # c\n")
put("envfile", "errors.env", "A='open\nB=\"never\nclosed\n")

# JSON: every JSON file users bring, and the admission fixtures.
for p in jsons + admission + [docker_profile]:
    copy("json", p)
put("json", "escapes.json", '{"a": "\\u00e9\\ud83d\\ude00\\n\\t\\"", "b": [1, -0.5e+3, true, false, null], "c": {}}')
put("json", "canary.json", f'{{"k": "{CANARY}", "l": ["{CANARY}"]}}')

# YAML: the manifests, and the forms the reader refuses (merge keys, aliases, !!str).
for p in yamls:
    copy("yaml", p)
put("yaml", "anchors.yaml", "a: &x {b: [1, 2]}\nc: *x\nd: !!str 123\ne: ~\nf: 'q'\ng: |\n  block\n")
put("yaml", "merge.yaml", "base: &b {x: 1}\nover:\n  <<: *b\n")
put("yaml", "multi.yaml", f"---\nk: {CANARY}\n---\n- a\n- {{b: c}}\n...\n")
put("yaml", "flow.yaml", "{a: [1, {b: null}], 'c': \"d\\te\"}")

# Resources and MCP configs: the manifests, the desktop config and the other shapes.
for p in yamls:
    copy("resources", p)
    copy("mcpconfig", p)
for p in jsons:
    copy("mcpconfig", p)
put("resources", "mcpserver.yaml", "apiVersion: agentic.stigmer.ai/v1\nkind: McpServer\nmetadata: {name: gh}\n"
    "spec:\n  stdio: {command: npx, args: ['-y', '${A}'], env_placeholders: {T: '${T}'}}\n"
    "  env_spec: {data: {T: {is_secret: true}}}\n")
put("resources", "sealed.yaml", "apiVersion: agentic.stigmer.ai/v1\nkind: Environment\nmetadata: {name: e}\n"
    "spec:\n  data:\n    K: {encrypted_value: 'v1:0011223344556677:AAAA', is_secret: true}\n    P: {value: x}\n")
put("mcpconfig", "stigmer-list.yaml", "mcp_servers:\n- name: web\n  http: {url: 'https://x/${P}', headers: {Authorization: 'Bearer ${T}'},"
    " query_params: {k: '${K:-d}'}, timeout_seconds: 30}\n- name: d\n  docker: {image: img, args: ['${A}'],"
    " env_placeholders: {A: '${A}'}, volumes: [v], ports: ['1:1'], network: n, container_name: c}\n")
put("mcpconfig", "desktop-http.json", '{"mcpServers": {"r": {"type": "sse", "url": "https://h/${env:U}", '
    '"headers": {"X": "${file:F}"}}, "s": {"command": "node", "args": ["${file:F}"], "env": {"E": "${E}"}, "cwd": "/"}}}')

# Sealed values: sealed with the harness's fixed key (bytes 0..31), for its binding.
key = bytes(range(32))
key_id = hashlib.sha256(b"stigmer-exec/key-id\0" + key).digest()[:8].hex()
ad = b"stigmer-exec/v1\0environment:fuzz\0TOKEN"
for i, plain in enumerate([b"", b"hunter2", b"ghp_" + b"x" * 36]):
    nonce = bytes([i] * 12)
    sealed = nonce + AESGCM(key).encrypt(nonce, plain, ad)
    put("sealed", f"v1-{i}", f"v1:{key_id}:{base64.b64encode(sealed).decode()}")
    put("sealed", f"legacy-{i}", base64.b64encode(nonce + AESGCM(key).encrypt(nonce, plain, None)).decode())
put("sealed", "moved", "v1:" + key_id + ":" + base64.b64encode(bytes(12) + AESGCM(key).encrypt(bytes(12), b"x", b"other")).decode())
put("sealed", "short", "v1:" + key_id + ":AAAA")

# Key material: raw, base64, several keys with comments.
put("keyfile", "raw", key)
put("keyfile", "base64", base64.b64encode(key).decode() + "\n")
put("keyfile", "ring", "# rotated\n" + base64.b64encode(bytes(32)).decode() + "\r\n\n  " + base64.b64encode(key).decode() + "  \n")
put("keyfile", "short", base64.b64encode(bytes(16)).decode())

# Fetch frames (Frame.swift's format), remote and PostgreSQL shaped.
def frame(execution, values, token=None, enc=b"", server=b"", auth=b"\x01" * 32):
    def b(x): return struct.pack("<I", len(x)) + x
    out = b"STGX\x02" + b(execution.encode()) + struct.pack("<qq", 1700000000, 1700086400) + b(enc) + b(server) + b(auth)
    out += (b"\x01" if token else b"\x00") + b((token or "").encode()) + struct.pack("<I", len(values))
    for name, secret, layer, kind, data in values:
        out += b(name.encode()) + bytes([secret]) + b(layer.encode()) + bytes([kind]) + b(data)
    return out
put("frame", "remote", frame("exec-1", [], enc=b"\x02" * 32, server=b"\x03" * 32))
put("frame", "postgres", frame("exec-2", [("A", 0, "runtime", 0, b"plain"), ("B", 1, "environment:base", 1, b"v1:" + key_id.encode() + b":AAAA")], token="ab" * 32))

# Arguments: first byte even = --ttl, odd = --memory-limit.
for i, text in enumerate(["90s", "30m", "24h", "7d", "1h30m", "366d", "0s", "999999999d", "1x"]):
    put("arguments", f"ttl-{i}", b"\x00" + text.encode())
for i, text in enumerate(["1048576", "64K", "512M", "512Mi", "2G", "8T", "i", "Mi", "9223372036854775807", "0"]):
    put("arguments", f"size-{i}", b"\x01" + text.encode())

# Seccomp profiles: Docker's default and small ones with every field.
copy("seccomp", docker_profile)
put("seccomp", "small.json", '{"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1, "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],'
    ' "syscalls": [{"names": ["ptrace"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},'
    ' {"name": "personality", "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_NE"}]},'
    ' {"names": ["mount"], "action": "SCMP_ACT_KILL_PROCESS", "includes": {"minKernel": "4.8", "arches": ["amd64"]}, "excludes": {"caps": ["CAP_SYS_ADMIN"]}}]}')
put("seccomp", "archmap.json", '{"defaultAction": "SCMP_ACT_ERRNO", "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X32"]}],'
    ' "syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"}, {"names": ["kill"], "action": "SCMP_ACT_TRACE", "errnoRet": 3}]}')
# Kubernetes: first byte even = a pod (the admission fixtures), odd = an image reference
# line, then a registry's WWW-Authenticate challenge.
for p in admission:
    with open(p, "rb") as f:
        put("kube", "pod-" + os.path.basename(p), b"\x00" + f.read())
for i, (image, challenge) in enumerate([
    ("nginx", 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"'),
    ("localhost:5000/team/app:v1.2-rc", 'Basic realm="registry"'),
    ("ghcr.io/o/r@sha256:" + "ab" * 32, 'Bearer realm="https://h/t", error="invalid_token", x=unquoted, y="a\\"b"'),
]):
    put("kube", f"registry-{i}", b"\x01" + image.encode() + b"\n" + challenge.encode())

# Crashes fuzzing found, minimised: replayed by every run and the CI smoke (FUZZING.md).
put("seccomp", "crash-errno-overflow.json", '{"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 18446744073701}')
put("sealed", "crash-key-id-echo", "v1:sk-live-notakeyid:" + base64.b64encode(bytes(40)).decode())
put("mcpconfig", "crash-duplicate-server.yaml", "apiVersion: agentic.stigmer.ai/v1\nkind: McpServer\nmetadata: {name: gh}\n"
    "spec:\n  stdio: {command: a}\n  mcp_servers:\n  - name: gh\n    stdio: {command: b}\n")
print("corpora written to", CORPUS)
