#!/usr/bin/env python3
"""Lighthouse's accessibility and best-practices audits on every HTML page the service
serves, in Debian's Chromium, against a fresh `pipes dev`: the hosted signup page and its
error pages, the dashboard login link's pages and every dashboard page (signed in).
Prints one line per page with both scores; exits 1 unless every score is 1.0.
Called by `scripts/lighthouse`.

Usage: lighthouse.py PIPES_BINARY LIGHTHOUSE_BINARY [--json FILE]
"""

import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

from pipes_dev import Dev, exit_on_sigterm

CHROME_FLAGS = " ".join(
    [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
)
CATEGORIES = ["accessibility", "best-practices"]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def session_cookie(login_link):
    """Spends a dashboard login link as a browser would and returns its cookie."""
    opener = urllib.request.build_opener(NoRedirect)
    try:
        opener.open(login_link)
    except urllib.error.HTTPError as e:
        assert e.code == 303, e.code
        return e.headers["Set-Cookie"].split(";")[0]
    raise AssertionError("the login link did not redirect")


def config_for(status):
    """Lighthouse's default config; for an error page, Chrome's console line about the
    document's own status (the point of an error page) is not counted. Nothing else can
    hide behind it: `loads_nothing` has checked that the page loads no resource."""
    config = {"extends": "lighthouse:default"}
    if status != 200:
        config["audits"] = [
            {
                "path": "errors-in-console",
                # Matched as a substring (JSON carries no RegExp).
                "options": {"ignoredPatterns": [f"Failed to load resource: the server responded with a status of {status} ("]},
            }
        ]
    return config


def loads_nothing(html):
    """No script, frame, media, stylesheet or CSS url(): only the empty data: icon."""
    return not re.search(r"<(script|img|iframe|video|audio|source|object|embed)\b|url\(|<link\b(?![^>]*href=\"data:,\")", html, re.I)


def page_of(url, cookie):
    """(status, HTML) without following redirects."""
    req = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
    try:
        with urllib.request.build_opener(NoRedirect).open(req) as res:
            return res.status, res.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def audit(lighthouse, url, cookie, status):
    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "config.json")
        out = os.path.join(tmp, "report.json")
        with open(config, "w") as f:
            json.dump(config_for(status), f)
        cmd = [
            lighthouse,
            url,
            f"--config-path={config}",
            "--quiet",
            # Error pages are audited too: they answer 404, 410 or 401 on purpose.
            "--ignore-status-code",
            f"--only-categories={','.join(CATEGORIES)}",
            "--output=json",
            f"--output-path={out}",
            f"--chrome-flags={CHROME_FLAGS}",
        ]
        if cookie:
            cmd.append("--extra-headers=" + json.dumps({"Cookie": cookie}))
        env = dict(os.environ, CHROME_PATH=os.environ.get("CHROME_PATH", "/usr/bin/chromium"))
        subprocess.run(cmd, check=True, env=env)
        with open(out) as f:
            report = json.load(f)
    scores = {c: report["categories"][c]["score"] for c in CATEGORIES}
    failing = [
        f"{a['id']}: {a['title']}"
        for a in report["audits"].values()
        if a.get("score") is not None and a["score"] < 1 and a.get("scoreDisplayMode") in ("binary", "numeric")
    ]
    return scores, failing


def main():
    pipes, lighthouse = sys.argv[1], sys.argv[2]
    json_out = sys.argv[sys.argv.index("--json") + 1] if "--json" in sys.argv else None
    exit_on_sigterm()
    with Dev(pipes, os.path.join("target", "lighthouse-dev.log")) as dev:
        used_token, phone = dev.signup()
        dev.wait_for_setup(1)
        status, ep = dev.call("PUT", "/v1/webhook-endpoint", {"url": "http://127.0.0.1:9/hook"}, dev.key)
        assert status == 200, ep
        cookie = session_cookie(dev.login_link)
        b = dev.base
        # (name, URL, cookie, the status the page answers with)
        pages = [
            ("signup page", dev.token()["signupUrl"], None, 200),
            ("signup: unknown link", f"{b}/apps/demo?token=tok_{secrets.token_hex(16)}", None, 404),
            ("signup: no token", f"{b}/apps/demo", None, 404),
            ("signup: used link", used_token["signupUrl"], None, 410),
            ("signup: unknown App", f"{b}/apps/nobody?token=tok_x", None, 404),
            ("dashboard: used login link", dev.login_link, None, 410),
            ("dashboard: sign-in help", f"{b}/dashboard/signin", None, 401),
            ("dashboard: numbers", f"{b}/dashboard", cookie, 200),
            ("dashboard: one number", f"{b}/dashboard/numbers/{phone}", cookie, 200),
            ("dashboard: keys", f"{b}/dashboard/keys", cookie, 200),
            ("dashboard: signups", f"{b}/dashboard/signups", cookie, 200),
            ("dashboard: webhooks", f"{b}/dashboard/webhooks", cookie, 200),
        ]
        results, ok = [], True
        for name, url, cookie_for, expected in pages:
            path = url[len(b):].split("?")[0]
            status, html = page_of(url, cookie_for)
            if status != expected:
                print(f"{name}: {path} answered {status}, not {expected}")
                ok = False
                continue
            if status != 200 and not loads_nothing(html):
                print(f"{name}: {path} is an error page that loads resources")
                ok = False
                continue
            scores, failing = audit(lighthouse, url, cookie_for, status)
            line = f"{name:28} {path:34} {status}  " + "  ".join(f"{c} {scores[c]:.2f}" for c in CATEGORIES)
            print(line, flush=True)
            for f in failing:
                print(f"    {f}")
            ok = ok and all(s == 1 for s in scores.values())
            results.append({"page": name, "path": path, "status": status, **scores, "failing": failing})
        if json_out:
            with open(json_out, "w") as f:
                json.dump(results, f, indent=2)
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
