#!/usr/bin/env python3
"""Schemathesis against `pipes dev`: the served /openapi.json is the contract.

Starts `pipes dev` (embedded store, sandbox Meta) in a fresh data directory on a free
port, seeds what the operations need to reach their logic (two completed sandbox
signups, a webhook endpoint, their events), then runs schemathesis's examples, coverage,
fuzzing and stateful phases with the checks the contract promises. Called by
`scripts/api-contract`; the arguments after `--` go to `schemathesis run`.

Usage: api_contract.py PIPES_BINARY SCHEMATHESIS_BINARY [--max-time S] [-- extra args]
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
    ]
)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def call(base, method, path, body=None, key=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", "Bearer " + key)
    try:
        with urllib.request.urlopen(req, timeout=10) as res:
            return res.status, json.loads(res.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def signup(base, key):
    """One completed signup, as the hosted page would post it."""
    status, tok = call(base, "POST", "/v1/apps/token", {"redirectUrl": "http://localhost:8080/done"}, key)
    assert status == 200, tok
    status, meta = call(base, "POST", "/sandbox/signups", {})
    assert status == 200, meta
    body = {"token": tok["token"], "event": "FINISH", **meta}
    status, done = call(base, "POST", "/v1/signup/callback", body)
    assert status == 200 and done["status"] == "completed", done
    return done["phoneNumberId"]


def main():
    args = sys.argv[1:]
    extra = []
    if "--" in args:
        i = args.index("--")
        args, extra = args[:i], args[i + 1 :]
    pipes, schemathesis = args[0], args[1]
    max_time = "60"
    if "--max-time" in args:
        max_time = args[args.index("--max-time") + 1]

    data_dir = tempfile.mkdtemp(prefix="pipes-contract-")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(os.path.join("target", "api-contract-dev.log"), "w")
    dev = subprocess.Popen(
        [pipes, "dev", "--data-dir", data_dir, "--port", str(port), "--sweep-interval", "0"],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        key = verify_token = None
        for line in dev.stdout:
            log.write(line)
            m = re.search(r"app key: (ak_\w+)", line)
            if m:
                key = m.group(1)
            m = re.search(r"webhook verify token for this run: (\S+)", line)
            if m:
                verify_token = m.group(1)
            if line.startswith("ready"):
                break
        assert key, "pipes dev printed no app key"
        # Keep draining its output, or a full pipe would stall the server.
        threading.Thread(target=lambda: [log.write(line) for line in dev.stdout], daemon=True).start()
        # The demo App's own limit would turn most of the run into 429s.
        subprocess.run(
            [pipes, "apps", "update", "--app", "demo", "--rate", "500", "--burst", "5000", "--data-dir", data_dir],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        # An endpoint first, so the signups' events have deliveries to redeliver.
        status, ep = call(base, "PUT", "/v1/webhook-endpoint", {"url": "http://127.0.0.1:9/hook"}, key)
        assert status == 200, ep
        phones = [signup(base, key), signup(base, key)]
        # The worker finishes setup in the background: wait for both numbers.
        for _ in range(100):
            _, page = call(base, "GET", "/v1/numbers", key=key)
            if all(n["setup"].get("registered") for n in page["numbers"]) and len(page["numbers"]) == 2:
                break
            time.sleep(0.1)
        _, events = call(base, "GET", "/v1/events", key=key)
        assert events["events"], "the signups left no events"
        env = dict(
            os.environ,
            PIPES_KEY=key,
            PIPES_PHONE=phones[0],
            PIPES_PHONE_REMOVED=phones[1],
            PIPES_EVENT=events["events"][0]["id"],
            PIPES_VERIFY_TOKEN=verify_token or "",
        )
        cmd = [
            schemathesis,
            "--config-file",
            "scripts/schemathesis.toml",
            "run",
            f"{base}/openapi.json",
            "--checks",
            CHECKS,
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-time",
            max_time,
            "--workers",
            "2",
            "--seed",
            os.environ.get("PIPES_CONTRACT_SEED", str(int(time.time()))),
            *extra,
        ]
        print("$", " ".join(cmd), flush=True)
        return subprocess.run(cmd, env=env).returncode
    finally:
        dev.send_signal(signal.SIGINT)
        try:
            dev.wait(timeout=10)
        except subprocess.TimeoutExpired:
            dev.kill()
        log.close()


if __name__ == "__main__":
    sys.exit(main())
