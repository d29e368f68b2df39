"""How GitHub shows stored objects: check runs, statuses, comments, users, the app, a repository, an installation,
and pagination with Link headers. Every view has the fields GitHub's schema requires (responses are validated).
"""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request

from .replies import JSON, GitHubError
from .state import State

INSTALLATION_ID = 4242
APP_SLUG = "hpcci-standin"  # the installed App's slug: it writes as hpcci-standin[bot]
PERMISSIONS = {"checks": "write", "statuses": "write", "issues": "write", "metadata": "read"}
REPOSITORY_URLS = [
    "archive",
    "assignees",
    "blobs",
    "branches",
    "collaborators",
    "comments",
    "commits",
    "compare",
    "contents",
    "contributors",
    "deployments",
    "downloads",
    "events",
    "forks",
    "git_commits",
    "git_refs",
    "git_tags",
    "hooks",
    "issue_comment",
    "issue_events",
    "issues",
    "keys",
    "labels",
    "languages",
    "merges",
    "milestones",
    "notifications",
    "pulls",
    "releases",
    "stargazers",
    "statuses",
    "subscribers",
    "subscription",
    "tags",
    "teams",
    "trees",
]


def base(request: Request) -> str:
    return request.host_url.rstrip("/")


def user(request: Request, login: str = "github-actions[bot]", uid: int = 41898282) -> JSON:
    b = base(request)
    quoted = login.replace("[", "%5B").replace("]", "%5D")  # GitHub's own URLs quote "[bot]"
    u = f"{b}/users/{quoted}"
    return {
        "login": login, "id": uid, "node_id": f"MDM6Qm90{uid}", "avatar_url": f"{b}/avatars/{uid}",
        "gravatar_id": "", "url": u, "html_url": f"{b}/{quoted}", "followers_url": f"{u}/followers",
        "following_url": f"{u}/following{{/other_user}}", "gists_url": f"{u}/gists{{/gist_id}}",
        "starred_url": f"{u}/starred{{/owner}}{{/repo}}", "subscriptions_url": f"{u}/subscriptions",
        "organizations_url": f"{u}/orgs", "repos_url": f"{u}/repos", "events_url": f"{u}/events{{/privacy}}",
        "received_events_url": f"{u}/received_events", "type": "Bot", "site_admin": False,
    }  # fmt: skip


def app_object(request: Request) -> JSON:
    b = base(request)
    return {
        "id": 15368, "slug": "github-actions", "node_id": "MDM6QXBwMTUzNjg=", "client_id": "Iv1.standin",
        "owner": user(request, "github", 9919), "name": "GitHub Actions (stand-in)",
        "description": "Automate your workflow from idea to production", "external_url": f"{b}/features/actions",
        "html_url": f"{b}/apps/github-actions", "created_at": "2018-07-30T09:30:17Z",
        "updated_at": "2024-04-10T20:33:16Z", "permissions": {"checks": "write", "statuses": "write"},
        "events": ["check_run", "check_suite"],
    }  # fmt: skip


def run_view(request: Request, run: JSON) -> JSON:
    b = base(request)
    repo = run["repo"]
    return {
        "id": run["id"], "node_id": f"CR_standin{run['id']}", "head_sha": run["head_sha"], "name": run["name"],
        "external_id": run["external_id"], "url": f"{b}/repos/{repo}/check-runs/{run['id']}",
        "html_url": f"{b}/{repo}/runs/{run['id']}", "details_url": run["details_url"],
        "status": run["status"], "conclusion": run["conclusion"], "started_at": run["started_at"],
        "completed_at": run["completed_at"],
        "output": {
            "title": run["output"].get("title"), "summary": run["output"].get("summary"),
            "text": run["output"].get("text"), "annotations_count": len(run["annotations"]),
            "annotations_url": f"{b}/repos/{repo}/check-runs/{run['id']}/annotations",
        },
        "check_suite": {"id": run["check_suite_id"]}, "app": app_object(request), "pull_requests": [],
    }  # fmt: skip


def annotation_view(request: Request, run: JSON, a: JSON) -> JSON:
    return {
        "path": a["path"],
        "blob_href": f"{base(request)}/{run['repo']}/blob/{run['head_sha']}/{a['path']}",
        "start_line": a["start_line"],
        "end_line": a["end_line"],
        "start_column": a.get("start_column"),
        "end_column": a.get("end_column"),
        "annotation_level": a["annotation_level"],
        "title": a.get("title"),
        "message": a["message"],
        "raw_details": a.get("raw_details"),
    }


def status_view(request: Request, st: JSON) -> JSON:
    b = base(request)
    return {
        "url": f"{b}/repos/{st['repo']}/statuses/{st['sha']}", "avatar_url": f"{b}/avatars/41898282",
        "id": st["id"], "node_id": f"SC_standin{st['id']}", "state": st["state"],
        "description": st["description"], "target_url": st["target_url"], "context": st["context"],
        "created_at": st["created_at"], "updated_at": st["updated_at"], "creator": user(request),
    }  # fmt: skip


def _author(request: Request, c: JSON) -> JSON:
    """Who wrote a comment: a person (admin-made), another App's bot (a login ending in [bot]), or the API's caller."""
    login = c.get("user")
    if not login:
        return user(request, c.get("bot", "github-actions[bot]"))
    return {**user(request, login, 5000 + len(login)), "type": "Bot" if login.endswith("[bot]") else "User"}


def comment_view(request: Request, c: JSON) -> JSON:
    b = base(request)
    repo = c["repo"]
    return {
        "id": c["id"], "node_id": f"IC_standin{c['id']}", "url": f"{b}/repos/{repo}/issues/comments/{c['id']}",
        "html_url": f"{b}/{repo}/issues/{c['issue_number']}#issuecomment-{c['id']}", "body": c["body"],
        "user": _author(request, c),
        "created_at": c["created_at"], "updated_at": c["updated_at"],
        "issue_url": f"{b}/repos/{repo}/issues/{c['issue_number']}",
        "author_association": c.get("author_association", "NONE"),
    }  # fmt: skip


def find_comment(state: State, owner: str, repo: str, comment_id: int) -> JSON:
    """A stored comment of this repository (call with the state's lock held), else 404."""
    c = state.comments.get(comment_id)
    if c is None or c["repo"] != f"{owner}/{repo}":
        raise GitHubError(404, "Not Found")
    return c


def repository(request: Request, owner: str, repo: str) -> JSON:
    b = base(request)
    u = f"{b}/repos/{owner}/{repo}"
    out: JSON = {f"{k}_url": f"{u}/{k.replace('_', '/')}" for k in REPOSITORY_URLS}
    out.update(
        id=1296269, node_id="R_standin", name=repo, full_name=f"{owner}/{repo}", private=False,
        owner=user(request, owner, 9000), html_url=f"{b}/{owner}/{repo}", description=None, fork=False, url=u,
    )  # fmt: skip
    return out


def installation(request: Request, app_id: str) -> JSON:
    b = base(request)
    iid = INSTALLATION_ID
    return {
        "id": iid, "account": user(request, "octo-org", 9000), "repository_selection": "selected",
        "access_tokens_url": f"{b}/app/installations/{iid}/access_tokens",
        "repositories_url": f"{b}/installation/repositories", "html_url": f"{b}/settings/installations/{iid}",
        "app_id": int(app_id) if app_id.isdigit() else 1, "target_id": 9000, "target_type": "Organization",
        "permissions": dict(PERMISSIONS),
        "events": [], "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
        "single_file_name": None, "app_slug": APP_SLUG, "suspended_by": None, "suspended_at": None,
    }  # fmt: skip


def paginate(request: Request, items: list[Any]) -> tuple[list[Any], dict[str, str]]:
    per_page = max(1, min(100, int(request.args.get("per_page", 30))))
    page = max(1, int(request.args.get("page", 1)))
    chunk = items[(page - 1) * per_page : page * per_page]
    links = []
    if page * per_page < len(items):
        q = request.args.to_dict()
        q.update(page=str(page + 1), per_page=str(per_page))
        links.append(f'<{request.base_url}?{"&".join(f"{k}={v}" for k, v in q.items())}>; rel="next"')
    return chunk, ({"Link": ", ".join(links)} if links else {})
