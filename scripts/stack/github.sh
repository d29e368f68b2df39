# GitHub: a stand-in for GitHub's REST API (check runs, commit statuses, issue comments, app installation
# tokens) at http://127.0.0.1:8990, threaded Werkzeug, validating every request and response against GitHub's
# OpenAPI description (tests/standins/github/). It is a stand-in, not GitHub: state is in memory.
# State: $STACK_DIR/github/ (venv/ with werkzeug + openapi-core + cryptography, token (mode 600): a new random
# token on every start). Process: run/github.pid, log: log/github.log.
GITHUB_DIR="$STACK_DIR/github"
GITHUB_PORT=8990
GITHUB_URL="http://127.0.0.1:$GITHUB_PORT"
GITHUB_SRC="$REPO_ROOT/tests/standins/github"
GITHUB_TOKEN_FILE="$GITHUB_DIR/token"

_github_health() { [ "$(http_code "$GITHUB_URL/_standin/health")" = 200 ]; }

_github_install() {
  apt_install python3-venv curl
  local req="$GITHUB_SRC/requirements.txt" stamp="$GITHUB_DIR/venv/.requirements.sha256"
  local want; want=$(sha256sum "$req" | cut -d' ' -f1)
  [ -x "$GITHUB_DIR/venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && return 0
  say "installing the GitHub stand-in's packages into $GITHUB_DIR/venv"
  mkdir -p "$GITHUB_DIR"
  { [ -x "$GITHUB_DIR/venv/bin/pip" ] || python3 -m venv "$GITHUB_DIR/venv"; } >>"$STACK_DIR/log/github-install.log" 2>&1 \
    || die 3 "python3 -m venv $GITHUB_DIR/venv failed: see $STACK_DIR/log/github-install.log"
  "$GITHUB_DIR/venv/bin/pip" install -q --disable-pip-version-check -r "$req" >>"$STACK_DIR/log/github-install.log" 2>&1 \
    || die 3 "pip install -r $req failed: see $STACK_DIR/log/github-install.log"
  echo "$want" >"$stamp"
}

github_up() {
  _github_install
  if ! pid_alive github; then
    [ "$(http_code "$GITHUB_URL/_standin/health")" = 000 ] \
      || die 4 "something not started by local-stack already listens on port $GITHUB_PORT; stop it first"
    # A new token per start: a test cannot lean on a token from an earlier run.
    ( umask 077; random_secret 40 | sed 's/^/ghs_/' >"$GITHUB_TOKEN_FILE.new" ) && mv "$GITHUB_TOKEN_FILE.new" "$GITHUB_TOKEN_FILE"
    start_bg github "$STACK_DIR/log/github.log" "$GITHUB_DIR/venv/bin/python" "$GITHUB_SRC/serve.py" \
      --host 127.0.0.1 --port "$GITHUB_PORT" --token-file "$GITHUB_TOKEN_FILE"
  fi
  wait_for "GitHub stand-in at $GITHUB_URL (log: $STACK_DIR/log/github.log)" 30 _github_health
}

github_down() { stop_pid github; }

github_status() {
  if ! pid_alive github; then echo "GitHub stand-in not started (no live pid in $STACK_DIR/run/github.pid)"; return 1; fi
  _github_health || { echo "GitHub stand-in pid $(cat "$STACK_DIR/run/github.pid") does not answer $GITHUB_URL/_standin/health"; return 1; }
  local code
  code=$(http_code "$GITHUB_URL/_standin/state" -K <(printf 'header = "Authorization: Bearer %s"\n' "$(cat "$GITHUB_TOKEN_FILE")"))
  [ "$code" = 200 ] || { echo "GitHub stand-in refuses the stored token (HTTP $code)"; return 1; }
  echo "GitHub API stand-in pid $(cat "$STACK_DIR/run/github.pid") at $GITHUB_URL, token ok"
}

github_env() {
  [ -s "$GITHUB_TOKEN_FILE" ] || { warn "github: no token yet; run scripts/local-stack up github"; return 0; }
  echo "export GITHUB_API_URL=$GITHUB_URL"
  echo "export GITHUB_TOKEN=$(printf %q "$(cat "$GITHUB_TOKEN_FILE")")"
  echo "export GITHUB_REPOSITORY=octo-org/fibonacci"
}
