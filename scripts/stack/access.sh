# Access modes of the local cluster's login node (sourced by scripts/local-stack after `cluster`; needs lib.sh).
# Two more sshd instances in the login node's network namespace (hpcci-login, 10.77.0.2), each with its own config:
#   automation node  :2223  robot account hpcci-auto, one key constrained in authorized_keys with
#                           restrict,from="10.77.0.1",command="allowed_commands.py" (the Alliance's automation
#                           nodes); also trusts a local test CA for SSH user certificates of user hpcci (NERSC's
#                           sshproxy certificates), valid and expired ones made here.
#   MFA login node   :2224  publickey,keyboard-interactive: the key is only a first factor (TACC, NERSC, Alliance).
# State under $STACK_DIR/access/ and $STACK_DIR/cluster/ssh/{auto,ca}/, logs $STACK_DIR/log/access-*.log,
# pids $STACK_DIR/run/access-*.pid. Nothing of the cluster service is changed: its sshd keeps serving :2222.

ACCESS_DIR=$STACK_DIR/access
ACCESS_SRC=$STACK_SRC/access
ACCESS_NS=hpcci-login
ACCESS_LOGIN_IP=10.77.0.2
ACCESS_RUNNER_FROM=10.77.0.1   # where the runner (this host) comes from, as the login node sees it
ACCESS_AUTO_PORT=2223
ACCESS_MFA_PORT=2224
ACCESS_AUTO_USER=hpcci-auto
ACCESS_USER=hpcci               # the cluster's user: certificates and the MFA profile log in as it
ACCESS_ACCOUNT=hpcci            # its Slurm account, shared by the robot account
ACCESS_SSH=$STACK_DIR/cluster/ssh
ACCESS_SSHD=(automation mfa)

_ac_render() {
  sed -e "s|@PORT@|$3|g" -e "s|@LOGIN_IP@|$ACCESS_LOGIN_IP|g" -e "s|@HOST_KEY@|$ACCESS_SSH/host/ssh_host_ed25519_key|g" \
    -e "s|@AUTO_USER@|$ACCESS_AUTO_USER|g" -e "s|@USER@|$ACCESS_USER|g" -e "s|@CA@|$ACCESS_SSH/ca|g" \
    -e "s|@CLUSTER@|$STACK_DIR/cluster|g" "$1" >"$2.tmp"
  if cmp -s "$2.tmp" "$2"; then rm -f "$2.tmp"; return 0; fi
  mv -f "$2.tmp" "$2"
  local n
  n="access-sshd-$(basename "$2" .conf)"
  if pid_alive "$n"; then say "access: $(basename "$2") changed, restarting"; stop_pid "$n"; fi
}

_ac_files() {
  [ -s "$ACCESS_SSH/host/ssh_host_ed25519_key" ] || die 4 "access: the cluster's host key is missing: run scripts/local-stack up cluster first"
  mkdir -p "$ACCESS_DIR/etc" "$ACCESS_DIR/bin"
  chmod 755 "$ACCESS_DIR" "$ACCESS_DIR/bin"
  install -m 755 "$ACCESS_SRC/allowed_commands.py" "$ACCESS_DIR/bin/allowed_commands.py.new"
  mv -f "$ACCESS_DIR/bin/allowed_commands.py.new" "$ACCESS_DIR/bin/allowed_commands.py"
  _ac_render "$ACCESS_SRC/sshd_automation.conf.in" "$ACCESS_DIR/etc/automation.conf" "$ACCESS_AUTO_PORT"
  _ac_render "$ACCESS_SRC/sshd_mfa.conf.in" "$ACCESS_DIR/etc/mfa.conf" "$ACCESS_MFA_PORT"
  # known_hosts for the two profiles (same host key as the cluster's sshd)
  local hk
  hk=$(cut -d' ' -f1,2 "$ACCESS_SSH/host/ssh_host_ed25519_key.pub")
  printf '[%s]:%s %s\n' "$ACCESS_LOGIN_IP" "$ACCESS_AUTO_PORT" "$hk" "$ACCESS_LOGIN_IP" "$ACCESS_MFA_PORT" "$hk" \
    >"$ACCESS_DIR/known_hosts"
  chmod 600 "$ACCESS_DIR/known_hosts"
}

# The robot account: its own key pair, the constrained authorized_keys line, scratch, a Slurm association.
_ac_auto_user() {
  local u=$ACCESS_AUTO_USER home k=$ACCESS_SSH/auto
  id "$u" >/dev/null 2>&1 || useradd -m -s /bin/bash -c "hpcci local cluster automation (robot) account" "$u"
  usermod -p '*' "$u"   # unlocked for key-only sshd without PAM
  home=$(getent passwd "$u" | cut -d: -f6)
  install -d -m 700 "$k"
  [ -s "$k/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C "hpcci local-stack automation key" -f "$k/id_ed25519"
  install -d -m 700 -o "$u" -g "$u" "$home/.ssh"
  printf 'restrict,from="%s",command="%s" %s\n' "$ACCESS_RUNNER_FROM" "$ACCESS_DIR/bin/allowed_commands.py" \
    "$(cut -d' ' -f1,2 "$k/id_ed25519.pub")" >"$home/.ssh/authorized_keys"
  chown "$u:$u" "$home/.ssh/authorized_keys"; chmod 600 "$home/.ssh/authorized_keys"
  mkdir -p "$STACK_DIR/cluster/scratch/$u"
  chown "$u:$u" "$STACK_DIR/cluster/scratch/$u"; chmod 700 "$STACK_DIR/cluster/scratch/$u"
  sacctmgr -n -P show assoc where user="$u" account="$ACCESS_ACCOUNT" format=user | grep -qx "$u" \
    || sacctmgr -i add user "$u" Account="$ACCESS_ACCOUNT" DefaultAccount="$ACCESS_ACCOUNT" >/dev/null
}

# The test CA and user certificates for $ACCESS_USER: one valid for a year, one that expired an hour ago.
_ac_ca() {
  local c=$ACCESS_SSH/ca
  install -d -m 700 "$c"
  [ -s "$c/ca" ] || ssh-keygen -q -t ed25519 -N '' -C "hpcci local-stack test user CA" -f "$c/ca"
  local name
  for name in user expired; do
    [ -s "$c/$name" ] || ssh-keygen -q -t ed25519 -N '' -C "hpcci local-stack certificate key ($name)" -f "$c/$name"
  done
  # re-signed when missing or close to expiry, so `up` a year later still gives a valid one
  if ! ssh-keygen -L -f "$c/user-cert.pub" 2>/dev/null | grep -q "Valid: from" \
     || [ -n "$(find "$c/user-cert.pub" -mtime +300 2>/dev/null)" ]; then
    ssh-keygen -q -s "$c/ca" -I hpcci-local-user -n "$ACCESS_USER" -V -1h:+52w "$c/user.pub"
  fi
  [ -s "$c/expired-cert.pub" ] || ssh-keygen -q -s "$c/ca" -I hpcci-local-expired -n "$ACCESS_USER" \
    -V 20250101000000:20250101010000 "$c/expired.pub"
  chmod 600 "$c"/*
  chmod 644 "$c/ca.pub"   # sshd reads it; a CA's public key is public
}

_ac_answers() {
  ip netns exec "$ACCESS_NS" timeout 5 bash -c "exec 3<>/dev/tcp/$ACCESS_LOGIN_IP/$1 && head -c 7 <&3" \
    2>/dev/null | grep -q '^SSH-2.0'
}

_ac_sshd() {
  local name=$1 port=$2 conf=$ACCESS_DIR/etc/$1.conf
  if pid_alive "access-sshd-$name"; then
    # still answering? (after the cluster re-made its namespace, an old sshd listens in the deleted one)
    _ac_answers "$port" && return 0
    say "access: sshd ($name) runs but does not answer on $ACCESS_LOGIN_IP:$port; restarting it"
    stop_pid "access-sshd-$name"
  fi
  install -d -m 755 /run/sshd
  /usr/sbin/sshd -t -f "$conf" || die 4 "access: sshd config invalid: $conf"
  # nsenter --net like the cluster's sshd (ip netns exec would remount /sys)
  start_bg "access-sshd-$name" "$STACK_DIR/log/access-sshd-$name.log" \
    nsenter --net="/run/netns/$ACCESS_NS" /usr/sbin/sshd -D -e -f "$conf"
  WAIT_PIDS="access-sshd-$name" wait_for "access: sshd ($name) on $ACCESS_LOGIN_IP:$port" 15 _ac_answers "$port"
}

access_up() {
  [ -e "/run/netns/$ACCESS_NS" ] || die 4 "access: network namespace $ACCESS_NS is missing: run scripts/local-stack up cluster first"
  _ac_files
  _ac_auto_user
  _ac_ca
  _ac_sshd automation "$ACCESS_AUTO_PORT"
  _ac_sshd mfa "$ACCESS_MFA_PORT"
}

access_down() {
  local n
  for n in "${ACCESS_SSHD[@]}"; do stop_pid "access-sshd-$n"; done
}

access_status() {
  local n down=()
  for n in "${ACCESS_SSHD[@]}"; do pid_alive "access-sshd-$n" || down+=("$n"); done
  [ ${#down[@]} -eq 0 ] || { echo "not running: sshd ${down[*]} (run: scripts/local-stack up access)"; return 1; }
  _ac_answers "$ACCESS_AUTO_PORT" || { echo "sshd does not answer on $ACCESS_LOGIN_IP:$ACCESS_AUTO_PORT"; return 1; }
  _ac_answers "$ACCESS_MFA_PORT" || { echo "sshd does not answer on $ACCESS_LOGIN_IP:$ACCESS_MFA_PORT"; return 1; }
  echo "automation node $ACCESS_AUTO_USER@$ACCESS_LOGIN_IP:$ACCESS_AUTO_PORT (forced command), certificates trusted there, MFA profile :$ACCESS_MFA_PORT"
}

# _ac_q VALUE: VALUE quoted for the shell
_ac_q() { printf %q "$1"; }

access_env() {
  echo "export HPCCI_ACCESS_HOST=$ACCESS_LOGIN_IP"
  echo "export HPCCI_ACCESS_KNOWN_HOSTS=$(_ac_q "$ACCESS_DIR/known_hosts")"
  echo "export HPCCI_AUTO_SSH_PORT=$ACCESS_AUTO_PORT"
  echo "export HPCCI_AUTO_SSH_USER=$ACCESS_AUTO_USER"
  echo "export HPCCI_AUTO_SSH_KEY_FILE=$(_ac_q "$ACCESS_SSH/auto/id_ed25519")"
  echo "export HPCCI_AUTO_SCRATCH=$(_ac_q "$STACK_DIR/cluster/scratch/$ACCESS_AUTO_USER")"
  echo "export HPCCI_CERT_SSH_USER=$ACCESS_USER"
  echo "export HPCCI_CERT_KEY_FILE=$(_ac_q "$ACCESS_SSH/ca/user")"
  echo "export HPCCI_CERT_FILE=$(_ac_q "$ACCESS_SSH/ca/user-cert.pub")"
  echo "export HPCCI_CERT_EXPIRED_KEY_FILE=$(_ac_q "$ACCESS_SSH/ca/expired")"
  echo "export HPCCI_CERT_EXPIRED_FILE=$(_ac_q "$ACCESS_SSH/ca/expired-cert.pub")"
  echo "export HPCCI_MFA_SSH_PORT=$ACCESS_MFA_PORT"
}
