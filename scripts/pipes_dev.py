"""A throwaway `pipes dev` for the scripts that check the running service from outside
(scripts/api-contract, scripts/lighthouse): a fresh data directory, a free port, the
demo App's key and a few sandbox signups."""

import json
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def exit_on_sigterm():
    """A terminated run stops its `pipes dev` too (the context manager's exit runs)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


class Dev:
    """`pipes dev` on a free port; use as a context manager."""

    def __init__(self, pipes, log_path):
        self.pipes = pipes
        self.data_dir = tempfile.mkdtemp(prefix="pipes-dev-")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = open(log_path, "w")
        self.key = self.verify_token = self.login_link = None

    def __enter__(self):
        self.proc = subprocess.Popen(
            [self.pipes, "dev", "--data-dir", self.data_dir, "--port", str(self.port), "--sweep-interval", "0"],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        # One thread drains its output for the whole run (a full pipe would stall the
        # server) and hands the start-up lines over until it says it is ready.
        lines = queue.Queue()

        def drain():
            for line in self.proc.stdout:
                self.log.write(line)
                lines.put(line)
            lines.put(None)

        self.drain = threading.Thread(target=drain, daemon=True)
        self.drain.start()
        deadline = time.monotonic() + 60
        try:
            while True:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
                if line is None:
                    raise RuntimeError("pipes dev exited before it was ready (see its log)")
                for name, pattern in [
                    ("key", r"app key: (ak_\w+)"),
                    ("verify_token", r"webhook verify token for this run: (\S+)"),
                    ("login_link", r"dashboard: (http\S+)"),
                ]:
                    m = re.search(pattern, line)
                    if m:
                        setattr(self, name, m.group(1))
                if line.startswith("ready"):
                    break
            if not self.key:
                raise RuntimeError("pipes dev printed no app key")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.drain.join(timeout=5)
        self.log.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def admin(self, *args):
        subprocess.run([self.pipes, *args, "--data-dir", self.data_dir], check=True, stdout=subprocess.DEVNULL)

    def call(self, method, path, body=None, key=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if body is not None:
            req.add_header("Content-Type", "application/json")
        if key:
            req.add_header("Authorization", "Bearer " + key)
        try:
            with urllib.request.urlopen(req, timeout=10) as res:
                return res.status, json.loads(res.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def token(self):
        status, tok = self.call("POST", "/v1/apps/token", {"redirectUrl": "http://localhost:8080/done"}, self.key)
        assert status == 200, tok
        return tok

    def signup(self):
        """One completed signup, as the hosted page would post it: (token, phone)."""
        tok = self.token()
        status, meta = self.call("POST", "/sandbox/signups", {})
        assert status == 200, meta
        status, done = self.call("POST", "/v1/signup/callback", {"token": tok["token"], "event": "FINISH", **meta})
        assert status == 200 and done["status"] == "completed", done
        return tok, done["phoneNumberId"]

    def wait_for_setup(self, count):
        """Until `count` numbers have finished setup in the background worker."""
        for _ in range(100):
            _, page = self.call("GET", "/v1/numbers", key=self.key)
            if len(page["numbers"]) == count and all(n["setup"].get("registered") for n in page["numbers"]):
                return page["numbers"]
            time.sleep(0.1)
        raise AssertionError("setup did not finish")
