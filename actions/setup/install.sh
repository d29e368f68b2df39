#!/usr/bin/env bash
# Install the hpcci kit these actions ship with (the repository root, two folders up) into a virtualenv that is
# reused while the kit's content is unchanged: the venv's name carries a hash of pyproject.toml, src/ and the
# Python version. Prints nothing secret; writes `hpcci`, `python` and `version` to $GITHUB_OUTPUT.
#   install.sh [--add-path]   --add-path: also put the venv's bin/ on PATH for later steps ($GITHUB_PATH)
#   install.sh --key          only write `key` and `venv` to $GITHUB_OUTPUT (for actions/cache, before installing)
#   env: HPCCI_PYTHON           interpreter for the venv (default python3; needs >= 3.10)
#        HPCCI_INPUT_CACHE_DIR  where venvs live (the action's cache-dir input); else $HPCCI_CACHE_DIR,
#                               else $RUNNER_TOOL_CACHE/hpcci, else ~/.cache/hpcci
set -euo pipefail
kit=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
python=${HPCCI_PYTHON:-python3}
cache=${HPCCI_INPUT_CACHE_DIR:-${HPCCI_CACHE_DIR:-${RUNNER_TOOL_CACHE:-$HOME/.cache}/hpcci}}

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "::error title=hpcci setup::$python is missing or older than 3.10; install Python >= 3.10 (e.g. actions/setup-python) or set the action's python input"
  exit 2
fi

key=$(
  cd "$kit"
  {
    "$python" -c 'import sys; print(sys.version)'
    sha256sum pyproject.toml
    find src -type f ! -name '*.pyc' ! -path '*.egg-info/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
  } | sha256sum | cut -c1-16
)
venv="$cache/venv-$key"
if [ "${1:-}" = "--key" ]; then
  echo "hpcci: kit $key, venv $venv"
  if [ -n "${GITHUB_OUTPUT:-}" ]; then printf 'key=%s\nvenv=%s\n' "$key" "$venv" >>"$GITHUB_OUTPUT"; fi
  exit 0
fi
mkdir -p "$cache"

# Jobs running side by side on one machine (self-hosted runners, act) share the cache: one installs, the others wait.
exec 9>"$cache/.lock-$key"
flock -w 900 9 || { echo "::error title=hpcci setup::timed out waiting for $cache/.lock-$key"; exit 1; }
if [ -f "$venv/.hpcci-complete" ]; then
  echo "hpcci: reusing $venv"
  touch "$venv/.hpcci-complete"  # its last use: pruning keeps the venvs used most recently
else
  echo "::group::Install hpcci from $kit into $venv"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --disable-pip-version-check --no-input --quiet "$kit"
  touch "$venv/.hpcci-complete"  # written last: a half-made venv is never reused
  echo "::endgroup::"
fi
exec 9>&-

# A venv is about 130 MB and every kit version makes one: keep the 4 used most recently, drop the others.
# (A venv still in use by a job started before 4 newer kit versions were installed is the accepted risk.)
ls -1t "$cache"/venv-*/.hpcci-complete 2>/dev/null | tail -n +5 | while read -r stale; do
  old=$(dirname "$stale")
  echo "hpcci: removing the unused $old"
  rm -rf "$old" "$cache/.lock-${old##*/venv-}"
done

version=$("$venv/bin/hpcci" --version)
echo "hpcci: $version at $venv/bin/hpcci"
if [ -n "${GITHUB_OUTPUT:-}" ]; then
  {
    echo "hpcci=$venv/bin/hpcci"
    echo "python=$venv/bin/python"
    echo "version=${version#hpcci }"
  } >>"$GITHUB_OUTPUT"
fi
if [ "${1:-}" = "--add-path" ] && [ -n "${GITHUB_PATH:-}" ]; then
  echo "$venv/bin" >>"$GITHUB_PATH"
fi
