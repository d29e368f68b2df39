"""Who sent a request (the stand-in's token, an installation token it issued, or a registered app's RS256 JWT),
and the GitHub App installation endpoints that issue installation tokens.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time

from werkzeug.wrappers import Request, Response

from .replies import JSON, GitHubError, json_response, timestamp
from .state import State
from .views import INSTALLATION_ID, PERMISSIONS, installation

BAD_JWT = "A JSON web token could not be decoded"


def authenticate(state: State, token: str, request: Request, *, app_endpoint: bool = False) -> JSON:
    """`Authorization: Bearer|token <token>`: {"kind": "token"|"installation"|"app", ...}, else 401/403."""
    header = request.headers.get("Authorization", "")
    m = re.match(r"^(?:[Bb]earer|token)\s+(\S+)$", header)
    if not m:
        raise GitHubError(401, "Requires authentication")
    sent = m.group(1)
    if secrets.compare_digest(sent, token):
        return {"kind": "token"}
    with state.lock:
        issued = state.tokens.get(sent)
    if issued is not None:
        if issued["expires"] < time.time():
            raise GitHubError(401, "Bad credentials")
        return {"kind": "installation", **issued}
    if sent.count(".") == 2:
        app_id = verify_jwt(state, sent)
        if not app_endpoint:
            raise GitHubError(403, BAD_JWT if not app_id else "Resource not accessible by integration")
        return {"kind": "app", "app_id": app_id}
    raise GitHubError(401, "Bad credentials")


def verify_jwt(state: State, token: str) -> str:
    """The app id of a JWT signed with a registered app's key, issued and expiring as GitHub requires."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    try:
        head_b64, payload_b64, sig_b64 = token.split(".")
        header = json.loads(_b64decode(head_b64))
        payload = json.loads(_b64decode(payload_b64))
        signature = _b64decode(sig_b64)
    except ValueError as e:
        raise GitHubError(401, BAD_JWT) from e
    app_id = str(payload.get("iss", ""))
    with state.lock:
        app = state.apps.get(app_id)
    if header.get("alg") != "RS256" or app is None:
        raise GitHubError(401, f"Integration not found (no app {app_id!r} registered with the stand-in)")
    key = serialization.load_pem_public_key(app["public_key"].encode())
    if not isinstance(key, rsa.RSAPublicKey):  # RS256 is verified with an RSA key only
        raise GitHubError(401, f"{BAD_JWT} (app {app_id!r} registered a key that is not RSA)")
    try:
        key.verify(signature, f"{head_b64}.{payload_b64}".encode(), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature as e:
        raise GitHubError(401, f"{BAD_JWT} (bad signature)") from e
    now = time.time()
    if not (
        float(payload.get("iat", now + 1)) <= now + 60 and now < float(payload.get("exp", 0)) <= now + 660
    ):
        raise GitHubError(
            401,
            "'Expiration time' claim ('exp') must be a numeric value representing the future time at which "
            "the assertion expires (at most 10 minutes after 'iat')",
        )
    return app_id


# -- GitHub App installations (authenticated by an app's JWT) ----------------------------------------------------


def get_installation(state: State, request: Request, *, who: JSON, owner: str, repo: str) -> Response:
    if who["kind"] != "app":
        raise GitHubError(401, BAD_JWT)
    return json_response(installation(request, who["app_id"]))


def create_token(state: State, request: Request, *, who: JSON, installation_id: int) -> Response:
    if who["kind"] != "app":
        raise GitHubError(401, BAD_JWT)
    if installation_id != INSTALLATION_ID:
        raise GitHubError(404, "Not Found")
    token = "ghs_" + secrets.token_urlsafe(27)
    expires = time.time() + 3600
    with state.lock:
        state.tokens[token] = {
            "expires": expires,
            "installation_id": installation_id,
            "app_id": who["app_id"],
        }
    body = {
        "token": token,
        "expires_at": timestamp(expires),
        "permissions": dict(PERMISSIONS),
        "repository_selection": "selected",
    }
    return json_response(body, 201)


def _b64decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
