# S3: OpenStack Swift 2.38.3 with its s3api layer at http://127.0.0.1:8080 (path-style, SigV4 checked),
# tempauth user hpcci:admin with a generated secret, bucket `hpcci` made on up.
# State: $STACK_DIR/s3/ (venv/, etc/ configs + rings, data/d1, credentials (mode 600)).
# Processes: memcached (127.0.0.1:11211, the proxy's token and info cache; without it every request logs errors)
# and swift-{account,container,object,proxy}-server; pids run/swift-<name>.pid, logs log/swift-<name>.log.
S3_DIR="$STACK_DIR/s3"
S3_CREDS="$S3_DIR/credentials"
S3_PORT=8080
S3_URL="http://127.0.0.1:$S3_PORT"
S3_BUCKET=hpcci
S3_SWIFT_VERSION=2.38.3
S3_SERVERS=(memcached account container object proxy)
S3_MEMCACHED=127.0.0.1:11211
declare -gA S3_RING_PORT=([object]=6200 [container]=6201 [account]=6202)

_s3_healthy() { [ "$(http_code "$S3_URL/healthcheck")" = 200 ]; }

_s3_install() {
  apt_install python3-venv curl memcached
  if [ ! -x "$S3_DIR/venv/bin/swift-proxy-server" ] \
     || [ "$("$S3_DIR/venv/bin/python" -c 'import importlib.metadata as m; import boto3; print(m.version("swift"))' 2>/dev/null)" \
          != "$S3_SWIFT_VERSION" ]; then
    say "installing swift==$S3_SWIFT_VERSION into $S3_DIR/venv"
    mkdir -p "$S3_DIR"
    { [ -x "$S3_DIR/venv/bin/pip" ] || python3 -m venv "$S3_DIR/venv"; } >>"$STACK_DIR/log/s3-install.log" 2>&1 \
      || die 3 "python3 -m venv $S3_DIR/venv failed: see $STACK_DIR/log/s3-install.log"
    "$S3_DIR/venv/bin/pip" install -q --disable-pip-version-check "swift==$S3_SWIFT_VERSION" boto3 >>"$STACK_DIR/log/s3-install.log" 2>&1 \
      || die 3 "pip install swift==$S3_SWIFT_VERSION failed: see $STACK_DIR/log/s3-install.log"
  fi
}

_s3_server_conf() { # NAME PORT: the [DEFAULT] section every server shares
  cat <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $2
swift_dir = $S3_DIR/etc
devices = $S3_DIR/data
mount_check = false
workers = 1
# the servers keep root (no separate swift account on a CI machine); they listen on 127.0.0.1 only
user = root
log_name = $1-server
log_level = INFO
recon_cache_path = $S3_DIR/cache
EOF
}

_s3_config() {
  local etc="$S3_DIR/etc" n secret
  creds_file "$S3_CREDS" "access_key=hpcci:admin" "secret_key=$(random_secret 40)" \
    "hash_prefix=$(random_secret 24)" "hash_suffix=$(random_secret 24)"
  secret=$(creds_get "$S3_CREDS" secret_key)
  mkdir -p "$etc" "$S3_DIR/data/d1" "$S3_DIR/cache"
  ( umask 077
  cat >"$etc/swift.conf" <<EOF
[swift-hash]
swift_hash_path_prefix = $(creds_get "$S3_CREDS" hash_prefix)
swift_hash_path_suffix = $(creds_get "$S3_CREDS" hash_suffix)

[storage-policy:0]
name = Policy-0
default = yes
EOF
  for n in account container object; do
    { _s3_server_conf "$n" "${S3_RING_PORT[$n]}"
      printf '\n[pipeline:main]\npipeline = healthcheck recon %s-server\n\n' "$n"
      printf '[app:%s-server]\nuse = egg:swift#%s\n\n' "$n" "$n"
      printf '[filter:healthcheck]\nuse = egg:swift#healthcheck\n\n'
      printf '[filter:recon]\nuse = egg:swift#recon\n'
    } >"$etc/$n-server.conf"
  done
  # The proxy listens on every address: the cluster's login node (netns, 10.77.0.1) and containers (docker0)
  # fetch presigned URLs from it. Every request still needs a signature or a token.
  { _s3_server_conf proxy "$S3_PORT" | sed 's/^bind_ip = .*/bind_ip = 0.0.0.0/'
    cat <<EOF

[pipeline:main]
# cache stays even without memcached: without it every request fails with 500.
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk tempurl s3api tempauth copy slo dlo versioned_writes symlink proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
allow_account_management = true

[filter:tempauth]
use = egg:swift#tempauth
user_hpcci_admin = $secret .admin

[filter:s3api]
use = egg:swift#s3api
location = us-east-1
max_upload_part_num = 10000

[filter:slo]
use = egg:swift#slo
max_manifest_segments = 10000
# s3api deletes a multipart object with async=on, which only the object expirer (not run here) would finish: its
# parts stayed in <bucket>+segments. Synchronous: the S3 DELETE removes them.
allow_async_delete = false

[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:cache]
use = egg:swift#memcache
memcache_servers = $S3_MEMCACHED
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:bulk]
use = egg:swift#bulk
[filter:tempurl]
use = egg:swift#tempurl
[filter:copy]
use = egg:swift#copy
[filter:dlo]
use = egg:swift#dlo
[filter:versioned_writes]
use = egg:swift#versioned_writes
[filter:symlink]
use = egg:swift#symlink
EOF
  } >"$etc/proxy-server.conf"
  )
  for n in account container object; do
    [ -s "$etc/$n.ring.gz" ] && continue
    ( cd "$etc" && rm -f "$n.builder" \
      && "$S3_DIR/venv/bin/swift-ring-builder" "$n.builder" create 8 1 1 \
      && "$S3_DIR/venv/bin/swift-ring-builder" "$n.builder" add --region 1 --zone 1 --ip 127.0.0.1 \
           --port "${S3_RING_PORT[$n]}" --device d1 --weight 100 \
      && "$S3_DIR/venv/bin/swift-ring-builder" "$n.builder" rebalance ) >>"$STACK_DIR/log/s3-install.log" 2>&1 \
      || die 4 "making the swift $n ring failed: see $STACK_DIR/log/s3-install.log"
  done
}

# _s3_bucket check|ensure: is the bucket there / make it unless it is. boto3 (in the Swift venv) talks SigV4;
# curl --aws-sigv4 cannot: tempauth access keys contain a colon, which curl takes as the user:password separator.
# Credentials go through the environment, never argv. Prints one line; rc 0 ok.
_s3_bucket() {
  AWS_ENDPOINT_URL=$S3_URL AWS_DEFAULT_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=$(creds_get "$S3_CREDS" access_key) AWS_SECRET_ACCESS_KEY=$(creds_get "$S3_CREDS" secret_key) \
    "$S3_DIR/venv/bin/python" - "$1" "$S3_BUCKET" <<'PY'
import sys
import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

action, bucket = sys.argv[1:3]
s3 = boto3.client("s3", config=Config(s3={"addressing_style": "path"}, connect_timeout=5, read_timeout=10,
                                      retries={"max_attempts": 1}))
try:
    s3.head_bucket(Bucket=bucket)
    print(f"bucket {bucket} ok")
    sys.exit(0)
except ClientError as e:
    code = str(e.response.get("Error", {}).get("Code"))
    if action == "check" or code not in ("404", "NoSuchBucket", "NotFound"):
        print(f"bucket {bucket}: HEAD refused ({code})")
        sys.exit(1)
except BotoCoreError as e:
    print(f"bucket {bucket}: {e}")
    sys.exit(1)
try:
    s3.create_bucket(Bucket=bucket)
except (ClientError, BotoCoreError) as e:
    print(f"bucket {bucket}: create failed ({e})")
    sys.exit(1)
print(f"bucket {bucket} created")
PY
}

# s3_prune: remove the test bucket's orphaned multipart segments (s3_prune.py: parts no object names and no upload in
# progress owns, kept by s3api in `<bucket>+segments`, invisible to S3 listings; they filled the disk, 60 GB seen).
# Objects stay: safe while others test. HPCCI_PRUNE_BUCKET picks another bucket (a test's own). Credentials via env.
s3_prune() {
  _s3_healthy || { warn "s3: not running, nothing pruned"; return 0; }
  HPCCI_S3_USER=$(creds_get "$S3_CREDS" access_key) HPCCI_S3_KEY=$(creds_get "$S3_CREDS" secret_key) \
    "$S3_DIR/venv/bin/python" "$STACK_SRC/s3_prune.py" "$S3_URL" "$S3_BUCKET"
}

s3_up() {
  _s3_install
  local n running=0
  for n in "${S3_SERVERS[@]}"; do pid_alive "swift-$n" && running=$((running + 1)); done
  if [ "$running" -ne ${#S3_SERVERS[@]} ]; then
    [ "$running" -eq 0 ] && [ "$(http_code "$S3_URL/healthcheck")" != 000 ] \
      && die 4 "something not started by local-stack already listens on port $S3_PORT; stop it first"
    _s3_config
    for n in "${S3_SERVERS[@]}"; do
      pid_alive "swift-$n" && continue
      if [ "$n" = memcached ]; then
        start_bg swift-memcached "$STACK_DIR/log/swift-memcached.log" \
          memcached -l "${S3_MEMCACHED%:*}" -p "${S3_MEMCACHED#*:}" -U 0 -m 64 -u memcache
      else
        start_bg "swift-$n" "$STACK_DIR/log/swift-$n.log" "$S3_DIR/venv/bin/swift-$n-server" "$S3_DIR/etc/$n-server.conf" --verbose
      fi
    done
  fi
  WAIT_PIDS="${S3_SERVERS[*]/#/swift-}" \
    wait_for "swift proxy at $S3_URL (logs: $STACK_DIR/log/swift-*.log)" 60 _s3_healthy
  local out
  out=$(_s3_bucket ensure 2>&1) || die 4 "S3 ${out:-bucket $S3_BUCKET check failed}; see $STACK_DIR/log/swift-proxy.log"
}

s3_down() {
  local i
  for (( i=${#S3_SERVERS[@]}-1; i>=0; i-- )); do stop_pid "swift-${S3_SERVERS[$i]}"; done
}

s3_status() {
  local n down=()
  for n in "${S3_SERVERS[@]}"; do pid_alive "swift-$n" || down+=("$n"); done
  [ ${#down[@]} -eq 0 ] || { echo "swift servers not running: ${down[*]}"; return 1; }
  _s3_healthy || { echo "swift proxy does not answer $S3_URL/healthcheck"; return 1; }
  local out
  out=$(_s3_bucket check 2>&1) || { echo "S3 ${out:-bucket $S3_BUCKET check failed}"; return 1; }
  echo "swift $S3_SWIFT_VERSION s3api at $S3_URL, bucket $S3_BUCKET ok"
}

s3_env() {
  [ -s "$S3_CREDS" ] || { warn "s3: no credentials yet; run scripts/local-stack up s3"; return 0; }
  echo "export AWS_ENDPOINT_URL=$S3_URL"
  echo "export AWS_ACCESS_KEY_ID=$(printf %q "$(creds_get "$S3_CREDS" access_key)")"
  echo "export AWS_SECRET_ACCESS_KEY=$(printf %q "$(creds_get "$S3_CREDS" secret_key)")"
  echo "export AWS_DEFAULT_REGION=us-east-1"
  echo "export HPCCI_S3_BUCKET=$S3_BUCKET"
}
