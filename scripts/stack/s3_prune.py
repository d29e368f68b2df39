"""Remove the orphaned multipart segments of the local stack's S3 test bucket (run by `scripts/local-stack prune`).

Swift's s3api keeps each multipart upload's parts in the container ``<bucket>+segments``: ``<key>/<upload id>`` (the
marker of an upload in progress) and ``<key>/<upload id>/<n>`` (its parts). A completed upload's object is an SLO
manifest naming its parts. Parts stay behind, out of sight of S3 listings, when the object is deleted (s3api asks for
an asynchronous delete that only the object expirer carries out), overwritten, or its upload interrupted; over test
runs they filled the disk. A part is an orphan when no object's manifest names it and its upload is not in progress
(no marker, or a marker older than HPCCI_PRUNE_UPLOAD_HOURS, default 24: abandoned); segments younger than
HPCCI_PRUNE_MIN_AGE_MINUTES (default 60) are never touched. Objects themselves are left alone, so the prune is safe while others test.

Segments are listed before manifests: an upload completing in between had its marker listed, so its parts stay.
Environment: HPCCI_S3_USER, HPCCI_S3_KEY (tempauth), HPCCI_PRUNE_BUCKET (default: the argument). Stdlib only (runs
under the Swift venv's python). Usage: s3_prune.py URL BUCKET
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone


def orphans(
    segments: list[tuple[str, str]], referenced: set[str], abandoned_before: str, recent: str
) -> list[str]:
    """The segments to delete, from ``segments`` ((name, last_modified ISO) each) of ``<bucket>+segments``:
    parts no manifest in ``referenced`` names whose upload's marker is missing or older than ``abandoned_before``,
    and markers older than it. Nothing modified at or after ``recent`` goes."""
    markers = {name for name, _ in segments if not name.rpartition("/")[2].isdigit()}
    live = {name for name, modified in segments if name in markers and modified >= abandoned_before}
    out: list[str] = []
    for name, modified in segments:
        if modified >= recent:
            continue
        upload, _, tail = name.rpartition("/")
        if tail.isdigit():
            if name not in referenced and upload not in live:
                out.append(name)
        elif modified < abandoned_before:
            out.append(name)
    return out


class Swift:
    def __init__(self, url: str, user: str, key: str) -> None:
        auth = {"X-Auth-User": user, "X-Auth-Key": key}
        req = urllib.request.Request(f"{url}/auth/v1.0", headers=auth)  # noqa: S310 - the stack's own proxy
        with urllib.request.urlopen(req, timeout=15) as r:  # noqa: S310
            self.storage, self.token = r.headers["X-Storage-Url"], r.headers["X-Auth-Token"]

    def _get(self, path: str) -> bytes:
        req = urllib.request.Request(f"{self.storage}/{path}", headers={"X-Auth-Token": self.token})  # noqa: S310
        with urllib.request.urlopen(req, timeout=120) as r:  # noqa: S310
            data: bytes = r.read()
            return data

    def listing(self, container: str) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        marker = ""
        while True:
            q = urllib.parse.urlencode({"format": "json", "marker": marker, "limit": 10000})
            try:
                page = json.loads(self._get(f"{urllib.parse.quote(container)}?{q}"))
            except urllib.error.HTTPError as e:
                if e.code == 404:
                    return out
                raise
            if not page:
                return out
            out += page
            marker = page[-1]["name"]

    def manifest(self, container: str, name: str) -> list[str]:
        """The segment paths (``/<container>/<name>``) an SLO manifest names."""
        q = urllib.parse.quote(name)
        try:
            return [str(s["name"]) for s in json.loads(self._get(f"{container}/{q}?multipart-manifest=get"))]
        except urllib.error.HTTPError as e:
            if e.code == 404:  # deleted since the listing
                return []
            raise

    def delete(self, container: str, names: list[str]) -> int:
        done = 0
        for i in range(0, len(names), 1000):
            body = "\n".join(
                f"/{urllib.parse.quote(container)}/{urllib.parse.quote(n)}" for n in names[i : i + 1000]
            )
            headers = {"X-Auth-Token": self.token, "Content-Type": "text/plain", "Accept": "application/json"}
            url = f"{self.storage}?bulk-delete"
            req = urllib.request.Request(url, data=body.encode(), method="POST", headers=headers)  # noqa: S310
            with urllib.request.urlopen(req, timeout=600) as r:  # noqa: S310
                done += int(json.load(r).get("Number Deleted", 0))
        return done


def main(url: str, bucket: str) -> None:
    bucket = os.environ.get("HPCCI_PRUNE_BUCKET") or bucket
    hours = float(os.environ.get("HPCCI_PRUNE_UPLOAD_HOURS") or 24)
    young = float(os.environ.get("HPCCI_PRUNE_MIN_AGE_MINUTES") or 60)
    now = datetime.now(timezone.utc).replace(tzinfo=None)  # Swift's listings: UTC without a zone
    swift = Swift(url, os.environ["HPCCI_S3_USER"], os.environ["HPCCI_S3_KEY"])
    segs = f"{bucket}+segments"
    segments = [
        (s["name"], s["last_modified"]) for s in swift.listing(segs)
    ]  # first: see the module's docstring
    prefix = f"/{segs}/"
    referenced = {
        path.removeprefix(prefix)
        for obj in swift.listing(bucket)
        if "slo_etag" in obj
        for path in swift.manifest(bucket, obj["name"])
        if path.startswith(prefix)
    }
    abandoned = (now - timedelta(hours=hours)).isoformat(timespec="microseconds")
    doomed = orphans(
        segments, referenced, abandoned, (now - timedelta(minutes=young)).isoformat(timespec="microseconds")
    )
    gone = swift.delete(segs, doomed)
    print(f"s3: pruned {gone} orphaned multipart segment(s) of bucket {bucket} ({len(segments) - gone} kept)")


if __name__ == "__main__":
    main(*sys.argv[1:3])
