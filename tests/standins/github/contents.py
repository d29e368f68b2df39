"""A repository's files at a commit and its branches' heads: repos/get-content and repos/get-branch (what the
comment trigger reads to name the base branch's head and to tell whether a pull request changes the configuration).

The stand-in knows no git: a test tells it the files of a commit (/_standin/commits) and where a branch points
(/_standin/branches). The shas it answers are git's own (blob and tree object ids of those files), so two commits
with the same file have the same sha there, as on GitHub.
"""

from __future__ import annotations

import base64
import hashlib

from werkzeug.wrappers import Request, Response

from .replies import JSON, GitHubError, json_response
from .spec import DEPLOYMENTS_PATH, example
from .state import State
from .views import base


def blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # git's object id, not a security use


def tree_sha(files: dict[str, bytes], folder: str) -> str:
    """git's tree object id of ``folder`` ("" = the root) among ``files`` (path -> content)."""
    entries: list[tuple[bytes, bytes]] = []  # (sort key, entry)
    for name, kind in children(files, folder).items():
        path = f"{folder}/{name}" if folder else name
        if kind == "dir":
            mode, sha, key = b"40000", tree_sha(files, path), name + "/"
        else:
            mode, sha, key = b"100644", blob_sha(files[path]), name
        entries.append((key.encode(), mode + b" " + name.encode() + b"\0" + bytes.fromhex(sha)))
    body = b"".join(e for _, e in sorted(entries))
    return hashlib.sha1(b"tree %d\0" % len(body) + body).hexdigest()  # git's object id, not a security use


def children(files: dict[str, bytes], folder: str) -> dict[str, str]:
    """The names directly in ``folder`` and whether each is a "file" or a "dir"."""
    prefix = f"{folder}/" if folder else ""
    found: dict[str, str] = {}
    for path in files:
        if path.startswith(prefix):
            name, sep, _ = path[len(prefix) :].partition("/")
            found[name] = "dir" if sep else "file"
    return found


def get_content(state: State, request: Request, *, who: JSON, owner: str, repo: str, path: str) -> Response:
    """A file (base64 content) or a folder's listing at ?ref= (a commit sha or a branch; default main)."""
    ref = request.args.get("ref") or "main"
    with state.lock:
        commit = state.branches.get(f"{owner}/{repo}", {}).get(ref, ref)
        files = state.trees.get(f"{owner}/{repo}", {}).get(commit)
    if files is None:
        raise GitHubError(404, f"No commit found for the ref {ref}")
    path = path.strip("/")
    if path in files:
        view = _entry(request, owner, repo, commit, path, "file", files)
        view.update(encoding="base64", content=base64.b64encode(files[path]).decode())
        return json_response(view)
    listing = children(files, path)
    if not listing:
        raise GitHubError(404, "Not Found")
    prefix = f"{path}/" if path else ""
    return json_response(
        [_entry(request, owner, repo, commit, prefix + n, kind, files) for n, kind in sorted(listing.items())]
    )


def _entry(
    request: Request, owner: str, repo: str, commit: str, path: str, kind: str, files: dict[str, bytes]
) -> JSON:
    b = base(request)
    is_file = kind == "file"
    sha = blob_sha(files[path]) if is_file else tree_sha(files, path)
    api = f"{b}/repos/{owner}/{repo}/contents/{path}?ref={commit}"
    git = f"{b}/repos/{owner}/{repo}/git/{'blobs' if is_file else 'trees'}/{sha}"
    html = f"{b}/{owner}/{repo}/{'blob' if is_file else 'tree'}/{commit}/{path}"
    return {
        "type": kind, "size": len(files[path]) if is_file else 0, "name": path.rpartition("/")[2], "path": path,
        "sha": sha, "url": api, "git_url": git, "html_url": html,
        "download_url": f"{b}/{owner}/{repo}/raw/{commit}/{path}" if is_file else None,
        "_links": {"self": api, "git": git, "html": html},
    }  # fmt: skip


def get_branch(state: State, request: Request, *, who: JSON, owner: str, repo: str, branch: str) -> Response:
    with state.lock:
        sha = state.branches.get(f"{owner}/{repo}", {}).get(branch)
    if sha is None:
        raise GitHubError(404, "Branch not found")
    view = example("branch-get", DEPLOYMENTS_PATH)
    b = base(request)
    u = f"{b}/repos/{owner}/{repo}"
    view.update(name=branch, protection_url=f"{u}/branches/{branch}/protection")
    view["_links"] = {"self": f"{u}/branches/{branch}", "html": f"{b}/{owner}/{repo}/tree/{branch}"}
    view["commit"].update(
        sha=sha, url=f"{u}/commits/{sha}", html_url=f"{b}/{owner}/{repo}/commit/{sha}",
        comments_url=f"{u}/commits/{sha}/comments",
    )  # fmt: skip
    return json_response(view)
