# The local HPC cluster of the local stack (sourced by scripts/local-stack; needs lib.sh).
# A real Slurm 22.05 cluster on this machine: munged, MariaDB (unix socket only), slurmdbd, slurmctld, slurmd,
# and an SSH login node: sshd inside network namespace hpcci-login at 10.77.0.2:2222 (key-only, user hpcci).
# Container runtimes on the "cluster": podman, charliecloud, and an `apptainer`/`singularity` STAND-IN
# (the Python package scripts/stack/cluster/apptainer_standin; the real Apptainer is not packaged for this machine),
# reached with `module load apptainer` like on a real site.
# State under $STACK_DIR/cluster/, logs $STACK_DIR/log/cluster-*.log, pids $STACK_DIR/run/cluster-*.pid.

CLUSTER_NS=hpcci-login
CLUSTER_VETH_HOST=hpcci-veth0
CLUSTER_VETH_NS=hpcci-veth1
CLUSTER_HOST_IP=10.77.0.1
CLUSTER_LOGIN_IP=10.77.0.2
CLUSTER_SSH_PORT=2222
CLUSTER_USER=hpcci
CLUSTER_ACCOUNT=hpcci
CLUSTER_DIR=$STACK_DIR/cluster
CLUSTER_SRC=$STACK_SRC/cluster
# Local-stack services the login node reaches at the same address as the host (127.0.0.1:PORT): registry, S3.
CLUSTER_FORWARD_PORTS=(5000 8080)
CLUSTER_PKGS=(slurm-wlm slurmdbd munge mariadb-server openssh-server podman charliecloud skopeo umoci
  squashfs-tools environment-modules openmpi-bin curl python3 iproute2 uidmap busybox-static socat)

# _cl_render SRC DST [MODE]: copy a template, filling in @STATE@, @LOG@, @NODE@; a changed file is listed in
# _CL_CHANGED so `up` restarts the daemon that reads it.
_CL_CHANGED=""
_cl_render() {
  sed -e "s|@STATE@|$CLUSTER_DIR|g" -e "s|@LOG@|$STACK_DIR/log|g" -e "s|@NODE@|$(hostname -s)|g" "$1" >"$2.tmp"
  chmod "${3:-644}" "$2.tmp"
  cmp -s "$2.tmp" "$2" || _CL_CHANGED="$_CL_CHANGED $(basename "$2")"
  mv -f "$2.tmp" "$2"
}

# _cl_restart_if_changed FILE PIDNAME...: stop the running daemons whose config file changed (up starts them again).
_cl_restart_if_changed() {
  local f=$1 n; shift
  case " $_CL_CHANGED " in *" $f "*) ;; *) return 0 ;; esac
  for n in "$@"; do
    if pid_alive "$n"; then say "cluster: $f changed, restarting ${n#cluster-}"; stop_pid "$n"; fi
  done
}

# _cl_link TARGET LINK: make LINK a symlink to TARGET, keeping a copy of a file that was there before.
_cl_link() {
  if [ -e "$2" ] && [ ! -L "$2" ] && [ ! -e "$2.hpcci-orig" ]; then mv "$2" "$2.hpcci-orig"; fi
  ln -sfn "$1" "$2"
}

_cl_files() {
  local d=$CLUSTER_DIR
  mkdir -p "$d"/{etc,run,ssh/host,slurmctld,slurmd,scratch,modulefiles,sw/apptainer/bin,sw/singularity/bin}
  chmod 755 "$STACK_DIR" "$d" "$d"/{etc,run,scratch,modulefiles,sw}
  chmod 700 "$d/ssh"
  chown slurm:slurm "$d/slurmctld" "$d/run"
  _cl_render "$CLUSTER_SRC/slurm.conf.in" "$d/etc/slurm.conf"
  _cl_render "$CLUSTER_SRC/gres.conf.in" "$d/etc/gres.conf"
  _cl_render "$CLUSTER_SRC/slurmdbd.conf.in" "$d/etc/slurmdbd.conf" 600
  chown slurm:slurm "$d/etc/slurmdbd.conf"
  _cl_render "$CLUSTER_SRC/sshd_config.in" "$d/etc/sshd_config"
  _cl_render "$CLUSTER_SRC/login-env.sh.in" "$d/etc/login-env.sh"
  _cl_render "$CLUSTER_SRC/task-prolog.sh.in" "$d/etc/task-prolog.sh" 755
  # Slurm clients (sbatch as hpcci on the login node, in any shell) read /etc/slurm/*.conf.
  mkdir -p /etc/slurm
  local f
  for f in slurm.conf gres.conf slurmdbd.conf; do _cl_link "$d/etc/$f" "/etc/slurm/$f"; done
  _cl_link "$d/etc/login-env.sh" /etc/profile.d/zz-hpcci-cluster.sh
  # Site modulefiles and the apptainer/singularity stand-in.
  local m v
  for m in "$CLUSTER_SRC"/modulefiles/*/; do
    m=$(basename "$m"); mkdir -p "$d/modulefiles/$m"
    for v in "$CLUSTER_SRC/modulefiles/$m"/*; do _cl_render "$v" "$d/modulefiles/$m/$(basename "$v")"; done
  done
  _cl_apptainer
}

# _cl_apptainer: install the apptainer/singularity stand-in: its entry script apptainer.py and the apptainer_standin
# package into sw/apptainer/lib, and bin/apptainer as a link to the entry (Python puts the directory of a script's
# resolved path on sys.path, so the system python3 imports the package from there). The new lib is swapped in by
# rename, so a job starting during an install never imports a half-copied package.
_cl_apptainer() {
  local a=$CLUSTER_DIR/sw/apptainer
  rm -rf "$a/lib.new" "$a/lib.old"
  mkdir -p "$a/lib.new" "$a/bin" "$CLUSTER_DIR/sw/singularity/bin"
  cp -R "$CLUSTER_SRC/apptainer.py" "$CLUSTER_SRC/apptainer_standin" "$a/lib.new/"
  rm -rf "$a/lib.new/apptainer_standin/__pycache__"
  chmod -R u=rwX,go=rX "$a/lib.new"; chmod 755 "$a/lib.new/apptainer.py"
  if [ -d "$a/lib" ]; then mv -T "$a/lib" "$a/lib.old"; fi
  mv -T "$a/lib.new" "$a/lib"
  rm -rf "$a/lib.old"
  ln -sfn ../lib/apptainer.py "$a/bin/apptainer.new" && mv -Tf "$a/bin/apptainer.new" "$a/bin/apptainer"
  ln -sfn apptainer "$a/bin/singularity"
  ln -sfn ../../apptainer/bin/apptainer "$CLUSTER_DIR/sw/singularity/bin/singularity"
}

_cl_user() {
  local u=$CLUSTER_USER home
  id "$u" >/dev/null 2>&1 || useradd -m -s /bin/bash -c "hpcci local cluster user" "$u"
  usermod -p '*' "$u"   # unlocked for key-only sshd without PAM ('!' would be refused)
  home=$(getent passwd "$u" | cut -d: -f6)
  if ! grep -q "^$u:" /etc/subuid; then   # rootless podman needs subordinate ids (useradd usually adds them)
    local next
    next=$(awk -F: 'BEGIN{m=100000} {e=$2+$3; if (e>m) m=e} END{print m}' /etc/subuid /etc/subgid)
    usermod --add-subuids "$next-$((next + 65535))" --add-subgids "$next-$((next + 65535))" "$u"
  fi
  mkdir -p "$CLUSTER_DIR/scratch/$u"
  chown "$u:$u" "$CLUSTER_DIR/scratch/$u"; chmod 700 "$CLUSTER_DIR/scratch/$u"
  # Client key pair and known_hosts for the kit (root-only), server host key, authorized_keys.
  local s=$CLUSTER_DIR/ssh
  [ -s "$s/host/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C "hpcci-login host key" -f "$s/host/ssh_host_ed25519_key"
  [ -s "$s/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C "hpcci local-stack client" -f "$s/id_ed25519"
  chmod 600 "$s/id_ed25519" "$s/id_ed25519.pub" "$s/host/ssh_host_ed25519_key"
  printf '[%s]:%s %s\n' "$CLUSTER_LOGIN_IP" "$CLUSTER_SSH_PORT" "$(cut -d' ' -f1,2 "$s/host/ssh_host_ed25519_key.pub")" >"$s/known_hosts"
  chmod 600 "$s/known_hosts"
  install -d -m 700 -o "$u" -g "$u" "$home/.ssh"
  if ! grep -qF "$(cut -d' ' -f2 "$s/id_ed25519.pub")" "$home/.ssh/authorized_keys" 2>/dev/null; then
    cat "$s/id_ed25519.pub" >>"$home/.ssh/authorized_keys"
  fi
  chown "$u:$u" "$home/.ssh/authorized_keys"; chmod 600 "$home/.ssh/authorized_keys"
  # bash run by sshd for `ssh host cmd` reads ~/.bashrc (not BASH_ENV): site environment first, before the
  # skeleton's "not interactive: return".
  local line=". $CLUSTER_DIR/etc/login-env.sh  # hpcci local cluster site environment"
  if ! grep -qF "$line" "$home/.bashrc" 2>/dev/null; then
    { echo "$line"; cat "$home/.bashrc" 2>/dev/null; } >"$home/.bashrc.tmp"
    mv -f "$home/.bashrc.tmp" "$home/.bashrc"; chown "$u:$u" "$home/.bashrc"
  fi
}

_cl_netns() {
  if ! ip netns list | grep -qw "$CLUSTER_NS"; then
    ip netns add "$CLUSTER_NS"
    touch "$CLUSTER_DIR/run/netns.made"
  fi
  if ! ip link show "$CLUSTER_VETH_HOST" >/dev/null 2>&1; then
    ip link add "$CLUSTER_VETH_HOST" type veth peer name "$CLUSTER_VETH_NS"
    ip link set "$CLUSTER_VETH_NS" netns "$CLUSTER_NS"
    touch "$CLUSTER_DIR/run/veth.made"
  fi
  ip addr replace "$CLUSTER_HOST_IP/24" dev "$CLUSTER_VETH_HOST"
  ip link set "$CLUSTER_VETH_HOST" up
  ip -n "$CLUSTER_NS" addr replace "$CLUSTER_LOGIN_IP/24" dev "$CLUSTER_VETH_NS"
  ip -n "$CLUSTER_NS" link set "$CLUSTER_VETH_NS" up
  ip -n "$CLUSTER_NS" link set lo up
  ip -n "$CLUSTER_NS" route replace default via "$CLUSTER_HOST_IP"
}

_cl_munge() {
  pid_alive cluster-munged && return 0
  install -d -m 755 -o munge -g munge /run/munge
  install -d -m 700 -o munge -g munge /var/lib/munge /var/log/munge /etc/munge
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
  start_bg cluster-munged "$STACK_DIR/log/cluster-munged.log" \
    setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F --force
  wait_for munged 15 munge -n
}

_cl_mysql_q() { mariadb --no-defaults --socket=/run/mysqld/mysqld.sock -u root -N -e "$1"; }

_cl_mariadb() {
  local db=$CLUSTER_DIR/mysql
  if ! pid_alive cluster-mariadb; then
    install -d -m 755 -o mysql -g mysql /run/mysqld
    if [ ! -d "$db/mysql" ]; then
      install -d -m 750 -o mysql -g mysql "$db"
      mariadb-install-db --no-defaults --user=mysql --datadir="$db" --auth-root-authentication-method=socket \
        --skip-test-db >>"$STACK_DIR/log/cluster-mariadb.log" 2>&1 || die 4 "mariadb-install-db failed: see $STACK_DIR/log/cluster-mariadb.log"
    fi
    start_bg cluster-mariadb "$STACK_DIR/log/cluster-mariadb.log" \
      /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$db" --socket=/run/mysqld/mysqld.sock \
      --skip-networking --pid-file="$db/mariadbd.pid" --innodb-buffer-pool-size=64M \
      --innodb-lock-wait-timeout=900
    wait_for MariaDB 30 _cl_mysql_q "SELECT 1"
  fi
  _cl_mysql_q "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED VIA unix_socket;
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
}

_cl_slurm() {
  if ! pid_alive cluster-slurmdbd; then
    start_bg cluster-slurmdbd "$STACK_DIR/log/cluster-slurmdbd.log" /usr/sbin/slurmdbd -D
    wait_for slurmdbd 30 sacctmgr -n show cluster
  fi
  sacctmgr -n -P show cluster format=cluster | grep -qx local || sacctmgr -i add cluster local >/dev/null
  if ! pid_alive cluster-slurmctld; then
    start_bg cluster-slurmctld "$STACK_DIR/log/cluster-slurmctld.log" /usr/sbin/slurmctld -D -i
    wait_for slurmctld 30 scontrol ping
  fi
  if ! pid_alive cluster-slurmd; then
    start_bg cluster-slurmd "$STACK_DIR/log/cluster-slurmd.log" /usr/sbin/slurmd -D
  fi
  sacctmgr -n -P show account "$CLUSTER_ACCOUNT" format=account | grep -qx "$CLUSTER_ACCOUNT" \
    || sacctmgr -i add account "$CLUSTER_ACCOUNT" Cluster=local Description="hpcci CI" Organization=hpcci >/dev/null
  sacctmgr -n -P show assoc where user="$CLUSTER_USER" account="$CLUSTER_ACCOUNT" format=user | grep -qx "$CLUSTER_USER" \
    || sacctmgr -i add user "$CLUSTER_USER" Account="$CLUSTER_ACCOUNT" DefaultAccount="$CLUSTER_ACCOUNT" >/dev/null
  wait_for "Slurm node $(hostname -s) (idle)" 30 _cl_node_ready
}

# A node left DRAINED or DOWN by a killed session stays so in Slurm's saved state: resume it.
_cl_node_ready() {
  local name state
  read -r name state < <(sinfo -h -N -o '%N %T' 2>/dev/null | head -n 1) || return 1
  case "$state" in
    drain*|down*|fail*) scontrol update nodename="$name" state=resume >/dev/null 2>&1 || true; return 1 ;;
  esac
  [[ "$state" =~ ^(idle|mixed|allocated) ]]
}

_cl_sshd() {
  pid_alive cluster-sshd && return 0
  install -d -m 755 /run/sshd
  /usr/sbin/sshd -t -f "$CLUSTER_DIR/etc/sshd_config" || die 4 "sshd config invalid: $CLUSTER_DIR/etc/sshd_config"
  # nsenter --net, not `ip netns exec`: the latter also remounts /sys, which hides /sys/fs/cgroup from login
  # sessions and breaks rootless podman (and its long-lived pause process) for the user.
  start_bg cluster-sshd "$STACK_DIR/log/cluster-sshd.log" \
    nsenter --net="/run/netns/$CLUSTER_NS" /usr/sbin/sshd -D -e -f "$CLUSTER_DIR/etc/sshd_config"
  wait_for "sshd on $CLUSTER_LOGIN_IP:$CLUSTER_SSH_PORT" 15 _cl_ssh_answers
}

_cl_ssh_answers() {
  ip netns exec "$CLUSTER_NS" timeout 5 bash -c "exec 3<>/dev/tcp/$CLUSTER_LOGIN_IP/$CLUSTER_SSH_PORT && head -c 7 <&3" \
    2>/dev/null | grep -q '^SSH-2.0'
}

# Inside the namespace 127.0.0.1 is the login node's own loopback. Two socat relays per port make the host's
# 127.0.0.1:PORT services (registry, S3) answer there too: ns 127.0.0.1:P -> host 10.77.0.1:(20000+P) ->
# host 127.0.0.1:P. The host-side port is a different one so it never collides with a service that listens on
# every address (S3 does, so the login node can also use 10.77.0.1:8080 directly).
_cl_forward() {
  local p
  for p in "${CLUSTER_FORWARD_PORTS[@]}"; do
    pid_alive "cluster-fwd-host-$p" || start_bg "cluster-fwd-host-$p" "$STACK_DIR/log/cluster-forward.log" \
      socat "TCP-LISTEN:$((20000 + p)),bind=$CLUSTER_HOST_IP,reuseaddr,fork" "TCP:127.0.0.1:$p"
    pid_alive "cluster-fwd-ns-$p" || start_bg "cluster-fwd-ns-$p" "$STACK_DIR/log/cluster-forward.log" \
      ip netns exec "$CLUSTER_NS" socat "TCP-LISTEN:$p,bind=127.0.0.1,reuseaddr,fork" \
      "TCP:$CLUSTER_HOST_IP:$((20000 + p))"
  done
}

cluster_up() {
  apt_install "${CLUSTER_PKGS[@]}"
  _cl_files
  _cl_restart_if_changed slurmdbd.conf cluster-slurmdbd
  _cl_restart_if_changed slurm.conf cluster-slurmd cluster-slurmctld
  _cl_restart_if_changed gres.conf cluster-slurmd cluster-slurmctld
  _cl_restart_if_changed sshd_config cluster-sshd
  _cl_user
  _cl_netns
  _cl_munge
  _cl_mariadb
  _cl_slurm
  _cl_sshd
  _cl_forward
}

cluster_down() {
  local n p
  for p in "${CLUSTER_FORWARD_PORTS[@]}"; do stop_pid "cluster-fwd-ns-$p"; stop_pid "cluster-fwd-host-$p"; done
  for n in sshd slurmd slurmctld slurmdbd mariadb munged; do stop_pid "cluster-$n"; done
  if [ -e "$CLUSTER_DIR/run/veth.made" ]; then
    ip link del "$CLUSTER_VETH_HOST" 2>/dev/null || true
    rm -f "$CLUSTER_DIR/run/veth.made"
  fi
  if [ -e "$CLUSTER_DIR/run/netns.made" ]; then
    ip netns del "$CLUSTER_NS" 2>/dev/null || true
    rm -f "$CLUSTER_DIR/run/netns.made"
  fi
}

cluster_status() {
  local n down=()
  for n in munged mariadb slurmdbd slurmctld slurmd sshd; do pid_alive "cluster-$n" || down+=("$n"); done
  [ ${#down[@]} -eq 0 ] || { echo "not running: ${down[*]} (run: scripts/local-stack up cluster)"; return 1; }
  local state
  state=$(sinfo -h -N -o '%N %T' 2>&1 | sort -u) || { echo "sinfo failed: $state"; return 1; }
  echo "$state" | grep -qE ' (idle|mixed|allocated)$' || { echo "node not usable: $state"; return 1; }
  _cl_ssh_answers || { echo "sshd does not answer on $CLUSTER_LOGIN_IP:$CLUSTER_SSH_PORT"; return 1; }
  echo "slurm node $state, ssh $CLUSTER_USER@$CLUSTER_LOGIN_IP:$CLUSTER_SSH_PORT"
}

cluster_env() {
  echo "export HPCCI_LOCAL_SSH_HOST=$CLUSTER_LOGIN_IP"
  echo "export HPCCI_LOCAL_SSH_PORT=$CLUSTER_SSH_PORT"
  echo "export HPCCI_LOCAL_SSH_USER=$CLUSTER_USER"
  echo "export HPCCI_LOCAL_SSH_KEY_FILE=$(printf %q "$CLUSTER_DIR/ssh/id_ed25519")"
  echo "export HPCCI_LOCAL_KNOWN_HOSTS=$(printf %q "$CLUSTER_DIR/ssh/known_hosts")"
}
