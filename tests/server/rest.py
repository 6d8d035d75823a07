"""Direct HTTP against the test server, for what the openstack CLI hides: error bodies and headers.

One token per user and server (argon2 makes every login cost), then plain httpx requests to the
URLs the catalog names.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import httpx

from tests.server.conftest import ADMIN_PASSWORD, PASSWORD, USERS


@cache
def login(url: str, user: str) -> tuple[str, str]:
    """(token, project id) of `user` scoped to its project."""
    project = "admin" if user == "admin" else USERS[user][0]
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"name": "Default"},
        "password": ADMIN_PASSWORD if user == "admin" else PASSWORD}}},
        "scope": {"project": {"name": project, "domain": {"name": "Default"}}}}}
    response = httpx.post(f"{url}/v3/auth/tokens", json=body, timeout=30)
    assert response.status_code == 201, response.text
    return response.headers["X-Subject-Token"], response.json()["token"]["project"]["id"]


def call(server: Any, method: str, path: str, user: str = "admin", *, version: str | None = None,
         **kwargs: Any) -> httpx.Response:
    """`path` under the server; `{project}` in it becomes the user's project id."""
    token, project = login(server.url, user)
    headers = {"X-Auth-Token": token, **kwargs.pop("headers", {})}
    if version is not None:
        headers["OpenStack-API-Version"] = version
    return httpx.request(method, server.url + path.replace("{project}", project), headers=headers, timeout=30,
                         **kwargs)
