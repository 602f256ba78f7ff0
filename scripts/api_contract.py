#!/usr/bin/env python3
"""Schemathesis against `pipes dev`: the served /openapi.json is the contract.

Starts `pipes dev` (embedded store, sandbox Meta) in a fresh data directory on a free
port, seeds what the operations need to reach their logic (a webhook endpoint, two
completed sandbox signups and their events), then runs schemathesis's examples,
coverage, fuzzing and stateful phases with the checks the contract promises. Called by
`scripts/api-contract`; the arguments after `--` go to `schemathesis run`.

Usage: api_contract.py PIPES_BINARY SCHEMATHESIS_BINARY [--max-time S] [-- extra args]
"""

import os
import subprocess
import sys
import time

from pipes_dev import Dev, exit_on_sigterm

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
    ]
)


def main():
    args = sys.argv[1:]
    extra = []
    if "--" in args:
        i = args.index("--")
        args, extra = args[:i], args[i + 1 :]
    pipes, schemathesis = args[0], args[1]
    max_time = args[args.index("--max-time") + 1] if "--max-time" in args else "60"
    exit_on_sigterm()

    with Dev(pipes, os.path.join("target", "api-contract-dev.log")) as dev:
        # The demo App's own limit would turn most of the run into 429s.
        dev.admin("apps", "update", "--app", "demo", "--rate", "500", "--burst", "5000")
        # An endpoint first, so the signups' events have deliveries to redeliver.
        status, ep = dev.call("PUT", "/v1/webhook-endpoint", {"url": "http://127.0.0.1:9/hook"}, dev.key)
        assert status == 200, ep
        phones = [dev.signup()[1], dev.signup()[1]]
        dev.wait_for_setup(2)
        _, events = dev.call("GET", "/v1/events", key=dev.key)
        assert events["events"], "the signups left no events"
        env = dict(
            os.environ,
            PIPES_KEY=dev.key,
            PIPES_PHONE=phones[0],
            PIPES_PHONE_REMOVED=phones[1],
            PIPES_EVENT=events["events"][0]["id"],
            PIPES_VERIFY_TOKEN=dev.verify_token or "",
        )
        cmd = [
            schemathesis,
            "--config-file",
            "scripts/schemathesis.toml",
            "run",
            f"{dev.base}/openapi.json",
            "--checks",
            CHECKS,
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-time",
            max_time,
            # One worker: with two, hypothesis's lambda introspection races and
            # schemathesis reports a Runtime Error that is not the API's.
            "--workers",
            "1",
            "--seed",
            os.environ.get("PIPES_CONTRACT_SEED", str(int(time.time()))),
            *extra,
        ]
        print("$", " ".join(cmd), flush=True)
        return subprocess.run(cmd, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
