# Docker engine (Debian's dockerd 20.10) with QEMU binfmt handlers so arm64 images run on amd64.
# State: $STACK_DIR/docker/ (daemon.json), pid: run/dockerd.pid, log: log/dockerd.log.
# The daemon keeps its data in the usual /var/lib/docker and listens on /var/run/docker.sock.
DOCKER_SOCK=/var/run/docker.sock
DOCKER_INSECURE_REGISTRY=127.0.0.1:5000

_docker_answers() { DOCKER_HOST="unix://$DOCKER_SOCK" timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# binfmt: qemu-aarch64 registered and enabled, with the F flag (interpreter opened at registration,
# so it also works inside containers whose rootfs has no qemu).
_binfmt_ok() {
  local f=/proc/sys/fs/binfmt_misc/qemu-aarch64
  [ -r "$f" ] && grep -qx enabled "$f" && grep -q '^flags: .*F' "$f"
}

_binfmt_up() {
  _binfmt_ok && return 0
  [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc \
    || die 4 "cannot mount binfmt_misc; arm64 containers need it (is this a container without CAP_SYS_ADMIN?)"
  update-binfmts --enable qemu-aarch64 >>"$STACK_DIR/log/docker.log" 2>&1 || true
  _binfmt_ok || die 4 "qemu-aarch64 binfmt handler not enabled with the F flag: see $STACK_DIR/log/docker.log"
}

_docker_config() {
  local d="$STACK_DIR/docker"
  mkdir -p "$d"
  cat >"$d/daemon.json.new" <<EOF
{
  "insecure-registries": ["$DOCKER_INSECURE_REGISTRY"],
  "storage-driver": "overlay2",
  "log-driver": "json-file",
  "log-opts": {"max-size": "10m", "max-file": "2"}
}
EOF
  mv "$d/daemon.json.new" "$d/daemon.json"
}

docker_up() {
  apt_install docker.io containerd runc iptables qemu-user-static binfmt-support buildah skopeo
  _binfmt_up
  if pid_alive dockerd && _docker_answers; then return 0; fi
  if ! pid_alive dockerd && _docker_answers; then
    # Never start a second daemon (it would fight over the docker0 bridge); use the one that runs.
    docker_insecure_ok || die 4 "a dockerd not started by local-stack runs on $DOCKER_SOCK without insecure-registries $DOCKER_INSECURE_REGISTRY; add it to its daemon.json or stop it"
    warn "docker: using the dockerd already running (not started by local-stack; down will not stop it)"
    return 0
  fi
  if pid_alive dockerd; then
    wait_for "dockerd (pid $(cat "$STACK_DIR/run/dockerd.pid"))" 60 _docker_answers
    return 0
  fi
  _docker_config
  # stale pid files from a killed daemon: dockerd would trust (and later kill) whatever process reused them
  rm -f /var/run/docker.pid /var/run/docker/containerd/containerd.pid
  start_bg dockerd "$STACK_DIR/log/dockerd.log" dockerd --config-file "$STACK_DIR/docker/daemon.json"
  wait_for "dockerd (log: $STACK_DIR/log/dockerd.log)" 60 _docker_answers
}

# docker_insecure_ok: the daemon talks plain http to the local registry (listed, or 127.0.0.0/8 allowed).
docker_insecure_ok() {
  local cfg
  cfg=$(DOCKER_HOST="unix://$DOCKER_SOCK" timeout 10 docker info --format '{{json .RegistryConfig}}' 2>/dev/null) || return 1
  grep -q "\"$DOCKER_INSECURE_REGISTRY\":{[^}]*\"Secure\":false" <<<"$cfg" || grep -q '"127.0.0.0/8"' <<<"$cfg"
}

docker_down() { stop_pid dockerd; }

docker_status() {
  _binfmt_ok || { echo "qemu-aarch64 binfmt handler missing or disabled"; return 1; }
  if ! _docker_answers; then
    if pid_alive dockerd; then echo "dockerd (pid $(cat "$STACK_DIR/run/dockerd.pid")) runs but does not answer on $DOCKER_SOCK"
    else echo "no dockerd answers on $DOCKER_SOCK"; fi
    return 1
  fi
  local v; v=$(DOCKER_HOST="unix://$DOCKER_SOCK" docker version --format '{{.Server.Version}}' 2>/dev/null)
  if pid_alive dockerd; then echo "dockerd $v pid $(cat "$STACK_DIR/run/dockerd.pid") on $DOCKER_SOCK, binfmt arm64 ok"
  else echo "dockerd $v on $DOCKER_SOCK (not started by local-stack), binfmt arm64 ok"; fi
}

docker_env() {
  echo "export DOCKER_HOST=unix://$DOCKER_SOCK"
  # buildah picks crun when it is installed, and crun refuses this machine's hybrid cgroups (v1 controllers plus
  # an empty /sys/fs/cgroup/unified): "cgroups in hybrid mode not supported". runc copes, so point buildah at it.
  if mountpoint -q /sys/fs/cgroup/unified 2>/dev/null && command -v runc >/dev/null; then
    echo "export BUILDAH_RUNTIME=runc"
  fi
}
