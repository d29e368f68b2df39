"""GitHub seam: check runs, commit statuses, PR comments and what a maintainer's `/hpcci deploy` comment needs
(a collaborator's permission, a pull request's head, a branch's head, a file at a commit, a reaction) over GitHub's
REST API (plain httpx).

Every request has a timeout. Retries are ours and bounded: 5xx and dropped connections (backoff), secondary rate
limits (403/429 with Retry-After, capped), an exhausted primary limit (until x-ratelimit-reset, within the bound).
A request that may have been applied before it failed (a PATCH that appends annotations) is NOT retried here:
``retry_unsafe=False`` hands the ambiguity to the caller, which checks the check run's annotations first.

Auth: a token (the workflow's GITHUB_TOKEN, needs `checks: write`), or a GitHub App (app id + private key ->
RS256 JWT -> installation token via apps/get-repo-installation + apps/create-installation-access-token).
"""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from hpcci.backends.github.errors import hint, is_rate_limited, message_of, retry_after
from hpcci.errors import GitHubError

if TYPE_CHECKING:
    import httpx

JSON = dict[str, Any]
API_VERSION = "2022-11-28"
USER_AGENT = "hpcci-report"


class GitHubRequestError(GitHubError):
    """A GitHub API request failed with an HTTP status (``status``; 0 when no response came)."""

    def __init__(self, message: str, *, status: int, transient: bool = False) -> None:
        super().__init__(message, transient=transient)
        self.status = status

    @property
    def forbidden(self) -> bool:
        """The token may not do this (a fork PR's read-only token, a missing `checks: write`)."""
        return self.status == 403


class GitHub(Protocol):
    """What the report stage needs from GitHub."""

    def create_check_run(self, body: JSON, *, retry_unsafe: bool = True) -> JSON: ...

    def update_check_run(self, run_id: int, body: JSON, *, retry_unsafe: bool = True) -> JSON: ...

    def check_runs_for_ref(self, sha: str, name: str) -> list[JSON]: ...

    def annotations(self, run_id: int) -> list[JSON]: ...

    def create_status(self, sha: str, body: JSON) -> JSON: ...

    def comments(self, issue: int) -> list[JSON]: ...

    def create_comment(self, issue: int, body: str) -> JSON: ...

    def update_comment(self, comment_id: int, body: str) -> JSON: ...


class Maintainers(GitHub, Protocol):
    """What the comment trigger needs besides the report's operations."""

    def bot_login(self) -> str: ...

    def permission(self, username: str) -> str: ...

    def pull(self, number: int) -> JSON: ...

    def branch(self, name: str) -> JSON: ...

    def content(self, path: str, ref: str) -> JSON | list[JSON] | None: ...

    def react(self, comment_id: int, content: str) -> JSON: ...


# -- retry policy --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # per request, the first included
    backoff: float = 1.0  # first pause after a 5xx / dropped connection, doubled each time (with jitter)
    max_pause: float = 60.0  # longest pause; a Retry-After beyond it is not waited for (the request fails)
    max_total_wait: float = 180.0  # cap on all pauses of one request together
    timeout: float = 30.0  # per request (connect, read, write, pool)


# -- auth ----------------------------------------------------------------------------------------------------------


ACTIONS_BOT = "github-actions[bot]"  # who writes with a workflow's GITHUB_TOKEN


class TokenAuth:
    def __init__(self, token: str) -> None:
        self.token = token

    def header(self, client: RestGitHub) -> str:
        return f"Bearer {self.token}"

    def bot_login(self, client: RestGitHub) -> str:
        return ACTIONS_BOT


def app_jwt(app_id: str, private_key_pem: str, now: float | None = None) -> str:
    """An RS256 JWT for a GitHub App: iat 60 s in the past (clock drift), exp 9 minutes ahead (GitHub allows 10)."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    now = time.time() if now is None else now

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "RS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = {"iat": int(now) - 60, "exp": int(now) + 540, "iss": str(app_id)}
    payload = b64(json.dumps(claims, separators=(",", ":")).encode())
    try:
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    except (ValueError, TypeError) as e:
        raise GitHubError(
            "the GitHub App private key is not a PEM RSA key; paste the .pem GitHub generated"
        ) from e
    if not isinstance(key, rsa.RSAPrivateKey):
        raise GitHubError("the GitHub App private key is not an RSA key; GitHub Apps sign with RS256")
    signature = key.sign(f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{payload}.{b64(signature)}"


class AppAuth:
    """GitHub App: JWT -> the repository's installation -> an installation token (fetched once, reused)."""

    def __init__(self, app_id: str, private_key_pem: str) -> None:
        self.app_id = app_id
        self.private_key_pem = private_key_pem
        self._token: str | None = None
        self._slug = ""

    def header(self, client: RestGitHub) -> str:
        if self._token is None:
            jwt_header = f"Bearer {app_jwt(self.app_id, self.private_key_pem)}"
            installation = client.call("GET", f"/repos/{client.repository}/installation", auth=jwt_header)
            token = client.call(
                "POST", f"/app/installations/{int(installation['id'])}/access_tokens", auth=jwt_header
            )
            self._slug = str(installation.get("app_slug") or "")
            self._token = str(token["token"])
            if client.on_secret:
                client.on_secret(self._token)
        return f"Bearer {self._token}"

    def bot_login(self, client: RestGitHub) -> str:
        """The App's bot user (`<slug>[bot]`), the author of what it writes."""
        self.header(client)
        return f"{self._slug}[bot]"


Auth = TokenAuth | AppAuth


# -- the client ----------------------------------------------------------------------------------------------------


@dataclass
class RestGitHub:
    """GitHub's REST API for one repository, with bounded retries; ``transport`` lets tests serve it in-process."""

    api_url: str
    repository: str  # owner/name
    auth: Auth
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    log: Callable[[str], None] = lambda _msg: None
    on_secret: Callable[[str], None] | None = None  # told about tokens minted here, to mask them
    sleep: Callable[[float], None] = time.sleep
    transport: Any = None
    _client: httpx.Client | None = None

    def client(self) -> httpx.Client:
        if self._client is None:
            import httpx

            t = self.policy.timeout
            self._client = httpx.Client(
                base_url=self.api_url.rstrip("/"),
                timeout=httpx.Timeout(t, connect=min(t, 10.0)),
                headers={
                    "Accept": "application/vnd.github+json",
                    "X-GitHub-Api-Version": API_VERSION,
                    "User-Agent": USER_AGENT,
                },
                transport=self.transport,
                follow_redirects=False,
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- one request, retried within the policy's bounds ------------------------------------------------------
    def call(
        self,
        method: str,
        path: str,
        *,
        body: JSON | None = None,
        params: dict[str, Any] | None = None,
        auth: str | None = None,
        retry_unsafe: bool = True,
    ) -> Any:
        return self.response(
            method, path, body=body, params=params, auth=auth, retry_unsafe=retry_unsafe
        ).json()

    def response(
        self,
        method: str,
        path: str,
        *,
        body: JSON | None = None,
        params: dict[str, Any] | None = None,
        auth: str | None = None,
        retry_unsafe: bool = True,
    ) -> httpx.Response:
        import httpx

        waited = 0.0
        what = f"GitHub API {method} {path}"
        for attempt in range(1, self.policy.attempts + 1):
            last = attempt == self.policy.attempts
            headers = {"Authorization": auth or self.auth.header(self)}
            try:
                r = self.client().request(method, path, json=body, params=params, headers=headers)
            except httpx.TimeoutException as e:
                # A timed-out write may have been applied: only the caller can tell.
                unsafe = method != "GET" and not isinstance(e, (httpx.ConnectTimeout, httpx.PoolTimeout))
                if last or (unsafe and not retry_unsafe):
                    raise GitHubRequestError(
                        f"{what}: no answer within {self.policy.timeout:g}s; GitHub may be slow, re-run the job",
                        status=0,
                        transient=True,
                    ) from e
                waited = self._pause(what, "timed out", self._backoff(attempt), waited, e)
                continue
            except httpx.TransportError as e:
                unsafe = method != "GET" and not isinstance(e, httpx.ConnectError)
                if last or (unsafe and not retry_unsafe):
                    raise GitHubRequestError(
                        f"{what}: connection failed ({type(e).__name__}); check GITHUB_API_URL and the network",
                        status=0,
                        transient=True,
                    ) from e
                waited = self._pause(
                    what, f"connection failed ({type(e).__name__})", self._backoff(attempt), waited, e
                )
                continue
            if r.status_code < 400:
                return r
            message = message_of(r)
            if is_rate_limited(r.status_code, r.headers, message):
                pause = retry_after(r.headers, time.time())
                # GitHub: with no Retry-After, wait at least a minute before retrying a secondary rate limit.
                pause = 60.0 if pause is None else max(pause, 1.0)
                if pause > self.policy.max_pause:  # retrying sooner than GitHub asks risks a ban
                    raise GitHubRequestError(
                        f"{what}: rate limited (HTTP {r.status_code}); GitHub asks to wait {pause:.0f}s, longer "
                        f"than hpcci waits ({self.policy.max_pause:g}s); re-run the job later",
                        status=r.status_code,
                        transient=True,
                    )
                if not last:
                    waited = self._pause(what, f"rate limited (HTTP {r.status_code})", pause, waited, None)
                    continue
            elif r.status_code >= 500 and (retry_unsafe or method == "GET") and not last:
                waited = self._pause(what, f"HTTP {r.status_code}", self._backoff(attempt), waited, None)
                continue
            raise GitHubRequestError(
                f"{what} failed: HTTP {r.status_code} {message}; {hint(r.status_code, message)}",
                status=r.status_code,
                transient=r.status_code >= 500 or r.status_code == 429,
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, attempt: int) -> float:
        base = self.policy.backoff * (2 ** (attempt - 1))
        return float(base * (0.5 + random.random() / 2))  # noqa: S311 (jitter, not crypto)

    def _pause(self, what: str, why: str, pause: float, waited: float, cause: BaseException | None) -> float:
        pause = min(pause, self.policy.max_pause)
        if waited + pause > self.policy.max_total_wait:
            raise GitHubRequestError(
                f"{what}: {why}; gave up after waiting {waited:.0f}s in retries "
                f"(the bound is {self.policy.max_total_wait:g}s); re-run the job later",
                status=429 if "rate" in why else 503,
                transient=True,
            ) from cause
        self.log(f"{what}: {why}; retrying in {pause:.1f}s")
        self.sleep(pause)
        return waited + pause

    def pages(
        self, path: str, params: dict[str, Any], key: str | None = None, max_pages: int = 20
    ) -> Iterator[JSON]:
        """Every item of a paginated list (following Link rel=next), up to ``max_pages`` pages of 100."""
        params = {**params, "per_page": 100}
        url: str | None = path
        for _ in range(max_pages):
            if url is None:
                return
            r = self.response("GET", url, params=params)
            data = r.json()
            yield from (data[key] if key else data)
            nxt = r.links.get("next", {}).get("url")
            url, params = (nxt, {}) if nxt else (None, params)

    # -- the operations -------------------------------------------------------------------------------------------
    def _repo(self, rest: str) -> str:
        return f"/repos/{self.repository}{rest}"

    def create_check_run(self, body: JSON, *, retry_unsafe: bool = True) -> JSON:
        result: JSON = self.call("POST", self._repo("/check-runs"), body=body, retry_unsafe=retry_unsafe)
        return result

    def update_check_run(self, run_id: int, body: JSON, *, retry_unsafe: bool = True) -> JSON:
        result: JSON = self.call(
            "PATCH", self._repo(f"/check-runs/{run_id}"), body=body, retry_unsafe=retry_unsafe
        )
        return result

    def check_runs_for_ref(self, sha: str, name: str) -> list[JSON]:
        params = {"check_name": name, "filter": "all"}
        return list(
            self.pages(self._repo(f"/commits/{quote(sha, safe='')}/check-runs"), params, "check_runs")
        )

    def annotations(self, run_id: int) -> list[JSON]:
        return list(self.pages(self._repo(f"/check-runs/{run_id}/annotations"), {}))

    def create_status(self, sha: str, body: JSON) -> JSON:
        result: JSON = self.call("POST", self._repo(f"/statuses/{quote(sha, safe='')}"), body=body)
        return result

    def comments(self, issue: int) -> list[JSON]:
        return list(self.pages(self._repo(f"/issues/{issue}/comments"), {}))

    def create_comment(self, issue: int, body: str) -> JSON:
        result: JSON = self.call("POST", self._repo(f"/issues/{issue}/comments"), body={"body": body})
        return result

    def update_comment(self, comment_id: int, body: str) -> JSON:
        result: JSON = self.call("PATCH", self._repo(f"/issues/comments/{comment_id}"), body={"body": body})
        return result

    def bot_login(self) -> str:
        """The login this client writes as: what it wrote can be told from what others wrote."""
        return self.auth.bot_login(self)

    def permission(self, username: str) -> str:
        """admin | maintain | write | triage | read | none; a login GitHub does not know (404) is 'none'."""
        try:
            data = self.call("GET", self._repo(f"/collaborators/{quote(username, safe='')}/permission"))
        except GitHubRequestError as e:
            if e.status != 404:
                raise
            return "none"
        return str(data.get("permission") or "none")

    def pull(self, number: int) -> JSON:
        result: JSON = self.call("GET", self._repo(f"/pulls/{number}"))
        return result

    def branch(self, name: str) -> JSON:
        """repos/get-branch: the branch and the commit it points at now (`commit.sha`)."""
        result: JSON = self.call("GET", self._repo(f"/branches/{quote(name, safe='')}"))
        return result

    def content(self, path: str, ref: str) -> JSON | list[JSON] | None:
        """repos/get-content at ``ref``: a file (with its blob `sha`), a folder's entries, or None when ``path`` is
        not there (404)."""
        try:
            result: JSON | list[JSON] = self.call(
                "GET", self._repo(f"/contents/{quote(path.strip('/'), safe='/')}"), params={"ref": ref}
            )
        except GitHubRequestError as e:
            if e.status != 404:
                raise
            return None
        return result

    def react(self, comment_id: int, content: str) -> JSON:
        """Reacting twice the same way is harmless (GitHub answers the existing reaction), so retries are safe."""
        path = self._repo(f"/issues/comments/{comment_id}/reactions")
        result: JSON = self.call("POST", path, body={"content": content})
        return result
