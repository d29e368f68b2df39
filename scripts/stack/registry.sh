# Container registry: CNCF distribution 2.8 (Debian's docker-registry) at 127.0.0.1:5000, plain http,
# htpasswd (bcrypt) basic auth, deletes enabled. Stand-in for Docker Hub: same Distribution API.
# State: $STACK_DIR/registry/ (config.yml, htpasswd, credentials (mode 600), data/), pid: run/registry.pid.
# `up` also makes sure the multi-arch base image is in dockerd and in the registry (scripts/stack/images/).
REGISTRY_ADDR=127.0.0.1:5000
REGISTRY_DIR="$STACK_DIR/registry"
REGISTRY_CREDS="$REGISTRY_DIR/credentials"

_registry_answers() { [ "$(http_code "http://$REGISTRY_ADDR/v2/")" = 401 ]; }

_registry_config() {
  creds_file "$REGISTRY_CREDS" "username=hpcci" "password=$(random_secret 32)"
  local user pass
  user=$(creds_get "$REGISTRY_CREDS" username); pass=$(creds_get "$REGISTRY_CREDS" password)
  mkdir -p "$REGISTRY_DIR/data"
  # -i: the password on stdin, never in argv (where ps would show it)
  if [ ! -s "$REGISTRY_DIR/htpasswd" ] || ! printf '%s\n' "$pass" | htpasswd -iv "$REGISTRY_DIR/htpasswd" "$user" >/dev/null 2>&1; then
    ( umask 077; printf '%s\n' "$pass" | htpasswd -iBn "$user" >"$REGISTRY_DIR/htpasswd.new" ) && mv "$REGISTRY_DIR/htpasswd.new" "$REGISTRY_DIR/htpasswd"
  fi
  [ -s "$REGISTRY_DIR/http-secret" ] || ( umask 077; random_secret 32 >"$REGISTRY_DIR/http-secret" )
  ( umask 077; cat >"$REGISTRY_DIR/config.yml" <<EOF
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: $REGISTRY_DIR/data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: $REGISTRY_ADDR
  secret: $(cat "$REGISTRY_DIR/http-secret")
  headers:
    X-Content-Type-Options: [nosniff]
auth:
  htpasswd:
    realm: hpcci-local-registry
    path: $REGISTRY_DIR/htpasswd
EOF
  )
}

registry_up() {
  apt_install docker-registry apache2-utils curl
  if ! pid_alive registry; then
    [ "$(http_code "http://$REGISTRY_ADDR/v2/")" = 000 ] \
      || die 4 "something not started by local-stack already listens on $REGISTRY_ADDR; stop it first"
    _registry_config
    start_bg registry "$STACK_DIR/log/registry.log" docker-registry serve "$REGISTRY_DIR/config.yml"
  fi
  wait_for "registry at $REGISTRY_ADDR (log: $STACK_DIR/log/registry.log)" 30 _registry_answers
  # The base image needs dockerd (to load it) and the registry (to push it).
  # shellcheck source=docker.sh
  declare -F docker_up >/dev/null || . "$STACK_SRC/docker.sh"
  docker_up
  # shellcheck source=images/base.sh
  . "$STACK_SRC/images/base.sh"
  base_images_up
}

registry_down() { stop_pid registry; }

registry_status() {
  if ! pid_alive registry; then echo "registry not started (no live pid in $STACK_DIR/run/registry.pid)"; return 1; fi
  local code; code=$(http_code "http://$REGISTRY_ADDR/v2/")
  [ "$code" = 401 ] || { echo "registry pid $(cat "$STACK_DIR/run/registry.pid") runs but GET /v2/ gave HTTP $code, not 401"; return 1; }
  local user pass
  user=$(creds_get "$REGISTRY_CREDS" username); pass=$(creds_get "$REGISTRY_CREDS" password)
  code=$(http_code "http://$REGISTRY_ADDR/v2/" -K <(printf 'user = "%s:%s"\n' "$user" "$pass"))
  [ "$code" = 200 ] || { echo "registry at $REGISTRY_ADDR refuses the stored credentials (HTTP $code)"; return 1; }
  # shellcheck source=images/base.sh
  . "$STACK_SRC/images/base.sh"
  _base_in_registry || { echo "registry at $REGISTRY_ADDR lacks the base image list $REGISTRY_ADDR/$BASE_NAME:$BASE_TAG"; return 1; }
  echo "registry pid $(cat "$STACK_DIR/run/registry.pid") at http://$REGISTRY_ADDR, basic auth ok, base image $BASE_NAME:$BASE_TAG (${BASE_ARCHES[*]})"
}

registry_env() {
  [ -s "$REGISTRY_CREDS" ] || { warn "registry: no credentials yet; run scripts/local-stack up registry"; return 0; }
  echo "export HPCCI_REGISTRY=$REGISTRY_ADDR"
  echo "export HPCCI_REGISTRY_USERNAME=$(printf %q "$(creds_get "$REGISTRY_CREDS" username)")"
  echo "export HPCCI_REGISTRY_PASSWORD=$(printf %q "$(creds_get "$REGISTRY_CREDS" password)")"
  echo "export HPCCI_BASE_IMAGE=$REGISTRY_ADDR/hpcci/base:bookworm"
}
