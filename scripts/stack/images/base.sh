# The multi-arch base image, made locally (nothing can be pulled from Docker Hub). Sourced by registry.sh.
#   rootfs:   $STACK_DIR/images/rootfs-bookworm-<arch>.tar (+ .sha256), made by rootfs.sh once per machine and
#             again when rootfs.sh changes (.def holds the sha256 of the rootfs.sh that made it)
#   dockerd:  hpcci/base:bookworm-amd64, hpcci/base:bookworm-arm64 (Architecture set right)
#   registry: 127.0.0.1:5000/hpcci/base:bookworm (manifest list) + :bookworm-<arch>
BASE_ARCHES=(amd64 arm64)
BASE_NAME=hpcci/base
BASE_TAG=bookworm
BASE_IMAGES_DIR="$STACK_DIR/images"

_base_docker() { DOCKER_HOST="unix://${DOCKER_SOCK:-/var/run/docker.sock}" DOCKER_CONFIG="$STACK_DIR/docker/client" docker "$@"; }

# _base_def: the sha256 of the rootfs definition (rootfs.sh: packages and options).
_base_def() { sha256sum "$STACK_SRC/images/rootfs.sh" | cut -d' ' -f1; }

# _base_rootfs ARCH...: make the rootfs tars that are missing or made by another rootfs.sh, all arches at once (the
# foreign one is the slow one).
_base_rootfs() {
  local arch tar pids=() names=() i def
  def=$(_base_def)
  mkdir -p "$BASE_IMAGES_DIR"
  for arch in "$@"; do
    tar="$BASE_IMAGES_DIR/rootfs-$BASE_TAG-$arch.tar"
    [ -s "$tar" ] && [ "$(cat "$tar.def" 2>/dev/null)" = "$def" ] && continue
    rm -f "$tar" "$tar.sha256" "$tar.def"
    say "making the $arch Debian $BASE_TAG rootfs (once per machine and definition; about 1 min amd64, 3-6 min arm64 under QEMU)"
    "$STACK_SRC/images/rootfs.sh" "$arch" "$tar" >"$STACK_DIR/log/rootfs-$arch.log" 2>&1 &
    pids+=($!); names+=("$arch")
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || die 4 "making the ${names[$i]} rootfs failed: see $STACK_DIR/log/rootfs-${names[$i]}.log"
    echo "$def" >"$BASE_IMAGES_DIR/rootfs-$BASE_TAG-${names[$i]}.tar.def"
  done
  for arch in "$@"; do
    tar="$BASE_IMAGES_DIR/rootfs-$BASE_TAG-$arch.tar"
    [ -s "$tar.sha256" ] && [ "$tar.sha256" -nt "$tar" ] && continue
    sha256sum "$tar" | cut -d' ' -f1 >"$tar.sha256"
  done
}

# _base_loaded ARCH: dockerd has the per-arch image, made from the current rootfs, with the right architecture.
_base_loaded() {
  local got want
  want="sha256:$(cat "$BASE_IMAGES_DIR/rootfs-$BASE_TAG-$1.tar.sha256" 2>/dev/null)"
  got=$(_base_docker image inspect -f '{{.Architecture}} {{index .RootFS.Layers 0}}' "$BASE_NAME:$BASE_TAG-$1" 2>/dev/null) || return 1
  [ "$got" = "$1 $want" ]
}

# _base_in_registry: the registry has the manifest list naming every arch.
_base_in_registry() {
  local body user pass a
  user=$(creds_get "$REGISTRY_CREDS" username); pass=$(creds_get "$REGISTRY_CREDS" password)
  body=$(curl -sf -m 10 -K <(printf 'user = "%s:%s"\n' "$user" "$pass") \
    -H 'Accept: application/vnd.docker.distribution.manifest.list.v2+json' \
    "http://$REGISTRY_ADDR/v2/$BASE_NAME/manifests/$BASE_TAG") || return 1
  grep -q 'manifest.list.v2+json' <<<"$body" || return 1
  for a in "${BASE_ARCHES[@]}"; do grep -q "\"architecture\": *\"$a\"" <<<"$body" || return 1; done
  # ... and the entries are the images dockerd has now (their pushed digests).
  local digests d
  for a in "${BASE_ARCHES[@]}"; do
    digests=$(_base_docker image inspect -f '{{range .RepoDigests}}{{println .}}{{end}}' "$BASE_NAME:$BASE_TAG-$a" 2>/dev/null \
      | sed -n "s|^$REGISTRY_ADDR/$BASE_NAME@||p")
    for d in $digests; do grep -q "$d" <<<"$body" && continue 2; done
    return 1
  done
}

base_images_up() {
  apt_install mmdebstrap arch-test qemu-user-static python3
  local a pushed=""
  _base_rootfs "${BASE_ARCHES[@]}"
  for a in "${BASE_ARCHES[@]}"; do
    _base_loaded "$a" && continue
    say "loading $BASE_NAME:$BASE_TAG-$a into dockerd"
    python3 "$STACK_SRC/images/docker_archive.py" "$BASE_IMAGES_DIR/rootfs-$BASE_TAG-$a.tar" "$a" "$BASE_NAME:$BASE_TAG-$a" \
      | _base_docker load -q >>"$STACK_DIR/log/images.log" 2>&1 || die 4 "docker load of the $a base image failed: see $STACK_DIR/log/images.log"
    _base_loaded "$a" || die 4 "$BASE_NAME:$BASE_TAG-$a in dockerd does not have architecture $a"
    pushed=no
  done
  [ -z "$pushed" ] && _base_in_registry && return 0
  say "pushing $REGISTRY_ADDR/$BASE_NAME:$BASE_TAG (manifest list: ${BASE_ARCHES[*]})"
  mkdir -p "$STACK_DIR/docker/client"; chmod 700 "$STACK_DIR/docker/client"
  creds_get "$REGISTRY_CREDS" password | _base_docker login -u "$(creds_get "$REGISTRY_CREDS" username)" --password-stdin \
    "$REGISTRY_ADDR" >>"$STACK_DIR/log/images.log" 2>&1 || die 4 "docker login to $REGISTRY_ADDR failed: see $STACK_DIR/log/images.log"
  local refs=()
  for a in "${BASE_ARCHES[@]}"; do
    _base_docker tag "$BASE_NAME:$BASE_TAG-$a" "$REGISTRY_ADDR/$BASE_NAME:$BASE_TAG-$a"
    _base_docker push -q "$REGISTRY_ADDR/$BASE_NAME:$BASE_TAG-$a" >>"$STACK_DIR/log/images.log" 2>&1 \
      || die 4 "docker push of the $a base image failed: see $STACK_DIR/log/images.log"
    refs+=("$REGISTRY_ADDR/$BASE_NAME:$BASE_TAG-$a")
  done
  _base_docker manifest rm "$REGISTRY_ADDR/$BASE_NAME:$BASE_TAG" >/dev/null 2>&1 || true
  _base_docker manifest create --insecure "$REGISTRY_ADDR/$BASE_NAME:$BASE_TAG" "${refs[@]}" >>"$STACK_DIR/log/images.log" 2>&1 \
    || die 4 "docker manifest create failed: see $STACK_DIR/log/images.log"
  _base_docker manifest push --insecure --purge "$REGISTRY_ADDR/$BASE_NAME:$BASE_TAG" >>"$STACK_DIR/log/images.log" 2>&1 \
    || die 4 "docker manifest push failed: see $STACK_DIR/log/images.log"
  _base_in_registry || die 4 "$REGISTRY_ADDR/$BASE_NAME:$BASE_TAG is not a manifest list of ${BASE_ARCHES[*]} after the push"
}
