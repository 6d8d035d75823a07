"""Direct HTTP to a lab fleet's server, run inside its control namespace (`ip netns exec F-ctl python THIS`).

The server listens in the fleet's control namespace only; the openstack CLI costs about 0.75 s of CPU a
call, so a test's setup sends its requests through this instead, in one process: a Keystone token for
the OS_* account of the environment, then each request of the JSON list on stdin
(`[{"method", "path", "body"}]`), in order, answered as a JSON list of `{"status", "body"}` on stdout.
A path or a body's string may name an earlier answer's value as `{N:key.key}` (the Nth answer's body).
Standard library only: it runs with the test's interpreter but needs nothing of vmqos.
"""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.error
import urllib.request
from typing import Any

_REF = re.compile(r"\{(\d+):([^}]+)\}")


def _call(method: str, url: str, body: Any, headers: dict[str, str]) -> tuple[int, Any, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={**headers, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            text = answer.read().decode()
            return answer.status, json.loads(text) if text else None, answer.headers
    except urllib.error.HTTPError as exc:
        text = exc.read().decode()
        return exc.code, json.loads(text) if text else None, exc.headers


def _resolve(value: Any, answers: list[Any]) -> Any:
    def one(match: re.Match[str]) -> str:
        found = answers[int(match.group(1))]
        for key in match.group(2).split("."):
            found = found[key]
        return str(found)

    if isinstance(value, str):
        return _REF.sub(one, value)
    if isinstance(value, list):
        return [_resolve(v, answers) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, answers) for k, v in value.items()}
    return value


def main() -> int:
    auth_url = os.environ["OS_AUTH_URL"]
    server = auth_url.rsplit("/v3", 1)[0]
    status, _body, headers = _call("POST", f"{auth_url}/auth/tokens", {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": os.environ["OS_USERNAME"], "domain": {"name": "Default"}, "password": os.environ["OS_PASSWORD"]}}},
        "scope": {"project": {"name": os.environ["OS_PROJECT_NAME"], "domain": {"name": "Default"}}}}}, {})
    if status != 201:
        print(f"no token: {status}", file=sys.stderr)
        return 1
    token = {"X-Auth-Token": headers["X-Subject-Token"]}
    answers: list[Any] = []
    out = []
    for step in json.load(sys.stdin):
        status, body, _ = _call(step["method"], server + _resolve(step["path"], answers),
                                _resolve(step.get("body"), answers), token)
        answers.append(body)
        out.append({"status": status, "body": body})
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
