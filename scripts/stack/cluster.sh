# The local HPC cluster of the local stack (sourced by scripts/local-stack; needs lib.sh).
# A real Slurm 22.05 cluster on this machine: munged, MariaDB (unix socket only), slurmdbd and slurmctld on the host
# at 10.77.0.1 (Linux bridge hpcci-br0), compute nodes node1, node2 ... (one slurmd each, in its own network
# namespace hpcci-nodeN at 10.77.0.(10+N) and its own UTS namespace, so jobs see hostname nodeN), and an SSH login
# node: sshd inside network namespace hpcci-login at 10.77.0.2:2222 (key-only, users hpcci and hpcci-user2, both in
# group hpcci-users). All share the file system (one machine), so jobs see the same paths, modules and stand-ins as
# the login node. Two module systems, as at sites: Lmod (the default `module`) and Tcl environment-modules.
# Container runtimes on the "cluster": podman, charliecloud, and an `apptainer`/`singularity` STAND-IN
# (the Python package scripts/stack/cluster/apptainer_standin; the real Apptainer is not packaged for this machine),
# reached with `module load apptainer` like on a real site.
# State under $STACK_DIR/cluster/, logs $STACK_DIR/log/cluster-*.log, pids $STACK_DIR/run/cluster-*.pid.

CLUSTER_NS=hpcci-login
CLUSTER_VETH_HOST=hpcci-veth0
CLUSTER_VETH_NS=hpcci-veth1
CLUSTER_BRIDGE=hpcci-br0
CLUSTER_HOST_IP=10.77.0.1
CLUSTER_LOGIN_IP=10.77.0.2
# Compute node nodeN lives in netns hpcci-nodeN at 10.77.0.(10+N), its host-side veth is named like the netns.
CLUSTER_NODES=(node1 node2)
CLUSTER_SSH_PORT=2222
CLUSTER_USER=hpcci
# A second user of the cluster (the users a release is installed for), its key pair in ssh/user2/.
CLUSTER_USER2=hpcci-user2
# The unix group of both users, owner of the shared project space project/ ($PROJECT in their login environment).
CLUSTER_GROUP=hpcci-users
CLUSTER_ACCOUNT=hpcci
CLUSTER_DIR=$STACK_DIR/cluster
CLUSTER_SRC=$STACK_SRC/cluster
# Local-stack services the login node reaches at the same address as the host (127.0.0.1:PORT): registry, S3.
CLUSTER_FORWARD_PORTS=(5000 8080)
CLUSTER_PKGS=(slurm-wlm slurmdbd munge mariadb-server openssh-server podman charliecloud skopeo umoci
  squashfs-tools environment-modules openmpi-bin curl python3 iproute2 iptables uidmap busybox-static socat
  lua5.3 lua-posix lua-filesystem lua-json lua-term tcl)   # the last line: what Debian's lmod depends on

# Lmod next to environment-modules, both Debian's. Debian's lmod package declares "Conflicts: environment-modules"
# (each gives the shell a `module`), so apt will not install both: the lmod .deb is fetched with `apt-get download`
# and unpacked at its own paths (it shares no file with environment-modules; its dependencies are in CLUSTER_PKGS).
# Its /etc/profile.d/lmod.sh is left out: the site profile login-env.sh makes Lmod the default `module` (why: there).
CLUSTER_LMOD_PKG=lmod
CLUSTER_LMOD_STAMP=/usr/share/lmod/.hpcci-unpacked

# _cl_node_ip NODE: nodeN's address, 10.77.0.(10+N).
_cl_node_ip() { echo "${CLUSTER_HOST_IP%.*}.$((10 + ${1##*[!0-9]}))"; }

# _cl_node_lines: the slurm.conf NodeName lines, one per node (\n-separated for sed).
_cl_node_lines() {
  local n out=""
  for n in "${CLUSTER_NODES[@]}"; do out="$out${out:+\\n}NodeName=$n NodeAddr=$(_cl_node_ip "$n")"; done
  printf '%s' "$out"
}

# _cl_render SRC DST [MODE]: copy a template, filling in @STATE@, @LOG@, @HOST@ (slurmctld's host), @USERS@,
# @GROUP@, @NODES@, @NODE_LINES@; a changed file is listed in _CL_CHANGED so `up` restarts the daemon that reads it.
_CL_CHANGED=""
_cl_render() {
  local nodes
  nodes=$(IFS=,; echo "${CLUSTER_NODES[*]}")
  sed -e "s|@STATE@|$CLUSTER_DIR|g" -e "s|@LOG@|$STACK_DIR/log|g" -e "s|@HOST@|$(hostname -s)|g" \
    -e "s|@USERS@|$CLUSTER_USER $CLUSTER_USER2|g" -e "s|@GROUP@|$CLUSTER_GROUP|g" \
    -e "s|@NODES@|$nodes|g" -e "s|@NODE_LINES@|$(_cl_node_lines)|" "$1" >"$2.tmp"
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
  local n
  for n in "${CLUSTER_NODES[@]}"; do mkdir -p "$d/slurmd/$n"; done
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

# _cl_lmod: unpack Debian's lmod .deb into / once (the stamp names the .deb unpacked; a new one replaces it).
_cl_lmod() {
  [ -s "$CLUSTER_LMOD_STAMP" ] && return 0
  local d=$CLUSTER_DIR/pkgs deb
  rm -rf "$d" && mkdir -p "$d/root"
  apt_update_once
  say "cluster: unpacking Debian's $CLUSTER_LMOD_PKG next to environment-modules"
  ( cd "$d" && apt-get download -qq -o APT::Sandbox::User=root "$CLUSTER_LMOD_PKG" ) >>"$STACK_DIR/log/apt.log" 2>&1 \
    || die 3 "apt-get download $CLUSTER_LMOD_PKG failed: see $STACK_DIR/log/apt.log"
  deb=$(echo "$d"/"$CLUSTER_LMOD_PKG"_*.deb)
  dpkg-deb -x "$deb" "$d/root"
  rm -f "$d/root/etc/profile.d/lmod.sh"
  tar -C "$d/root" -cf - . | tar -C / -xf - --no-overwrite-dir
  /usr/share/lmod/lmod/libexec/lmod --version >/dev/null 2>&1 || die 3 "Lmod from $(basename "$deb") does not run"
  basename "$deb" >"$CLUSTER_LMOD_STAMP"
  rm -rf "$d"
}

# _cl_user: both users, their group and its shared project space (setgid: what is made there belongs to the group).
_cl_user() {
  getent group "$CLUSTER_GROUP" >/dev/null || groupadd "$CLUSTER_GROUP"
  local s=$CLUSTER_DIR/ssh
  [ -s "$s/host/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C "hpcci-login host key" -f "$s/host/ssh_host_ed25519_key"
  chmod 600 "$s/host/ssh_host_ed25519_key"
  printf '[%s]:%s %s\n' "$CLUSTER_LOGIN_IP" "$CLUSTER_SSH_PORT" "$(cut -d' ' -f1,2 "$s/host/ssh_host_ed25519_key.pub")" >"$s/known_hosts"
  chmod 600 "$s/known_hosts"
  _cl_account "$CLUSTER_USER" "$s" "hpcci local cluster user"
  install -d -m 700 "$s/user2"
  _cl_account "$CLUSTER_USER2" "$s/user2" "hpcci local cluster second user"
  install -d -m 2770 -o root -g "$CLUSTER_GROUP" "$CLUSTER_DIR/project"
}

# _cl_account USER KEYDIR COMMENT: a key-only login user in $CLUSTER_GROUP with its scratch, and the kit's client key
# pair for it in KEYDIR/id_ed25519 (root-only).
_cl_account() {
  local u=$1 k=$2 home
  id "$u" >/dev/null 2>&1 || useradd -m -s /bin/bash -c "$3" "$u"
  usermod -p '*' "$u"   # unlocked for key-only sshd without PAM ('!' would be refused)
  id -nG "$u" | tr ' ' '\n' | grep -qx "$CLUSTER_GROUP" || usermod -aG "$CLUSTER_GROUP" "$u"
  home=$(getent passwd "$u" | cut -d: -f6)
  if ! grep -q "^$u:" /etc/subuid; then   # rootless podman needs subordinate ids (useradd usually adds them)
    local next
    next=$(awk -F: 'BEGIN{m=100000} {e=$2+$3; if (e>m) m=e} END{print m}' /etc/subuid /etc/subgid)
    usermod --add-subuids "$next-$((next + 65535))" --add-subgids "$next-$((next + 65535))" "$u"
  fi
  mkdir -p "$CLUSTER_DIR/scratch/$u"
  chown "$u:$u" "$CLUSTER_DIR/scratch/$u"; chmod 700 "$CLUSTER_DIR/scratch/$u"
  [ -s "$k/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C "hpcci local-stack client ($u)" -f "$k/id_ed25519"
  chmod 600 "$k/id_ed25519" "$k/id_ed25519.pub"
  install -d -m 700 -o "$u" -g "$u" "$home/.ssh"
  if ! grep -qF "$(cut -d' ' -f2 "$k/id_ed25519.pub")" "$home/.ssh/authorized_keys" 2>/dev/null; then
    cat "$k/id_ed25519.pub" >>"$home/.ssh/authorized_keys"
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

# _cl_made WHAT: record that `up` created WHAT (a netns, veth, bridge or firewall rule), so `down` removes exactly it.
_cl_made() { touch "$CLUSTER_DIR/run/$1.made"; }

# _cl_attach NS HOST_VETH NS_VETH IP: netns NS with a veth pair, the host end a port of the bridge, IP/24 inside.
_cl_attach() {
  local ns=$1 hv=$2 nv=$3 ip=$4
  if [ ! -e "/run/netns/$ns" ]; then ip netns add "$ns"; _cl_made "netns-$ns"; fi
  if ! ip link show "$hv" >/dev/null 2>&1; then
    ip link add "$hv" type veth peer name "$nv" netns "$ns"
    _cl_made "veth-$hv"
  fi
  # a single-node stack had the host address on the login veth itself: it moves to the bridge
  ip addr del "$CLUSTER_HOST_IP/24" dev "$hv" 2>/dev/null || true
  ip link set "$hv" master "$CLUSTER_BRIDGE" up
  ip -n "$ns" addr replace "$ip/24" dev "$nv"
  ip -n "$ns" link set "$nv" up
  ip -n "$ns" link set lo up
  ip -n "$ns" route replace default via "$CLUSTER_HOST_IP"
}

# _cl_migrate: a stack made before the compute nodes had one slurmd on the host (pid cluster-slurmd) and
# unnamed made-markers; stop the one and name the others, so up and down handle such a stack without manual steps.
_cl_migrate() {
  if [ -e "$STACK_DIR/run/cluster-slurmd.pid" ]; then
    stop_pid cluster-slurmd
    find "$CLUSTER_DIR/slurmd" -maxdepth 1 ! -type d -delete 2>/dev/null || true   # its spool files
  fi
  [ -e "$CLUSTER_DIR/run/netns.made" ] && mv -f "$CLUSTER_DIR/run/netns.made" "$CLUSTER_DIR/run/netns-$CLUSTER_NS.made"
  [ -e "$CLUSTER_DIR/run/veth.made" ] && mv -f "$CLUSTER_DIR/run/veth.made" "$CLUSTER_DIR/run/veth-$CLUSTER_VETH_HOST.made"
  return 0
}

# Bridged traffic between namespaces (node to node: srun, MPI) passes the host's iptables FORWARD chain when
# br_netfilter is loaded (Docker loads it and sets the policy to DROP): accept what stays on the bridge.
_CL_FORWARD_RULE=(FORWARD -i "$CLUSTER_BRIDGE" -o "$CLUSTER_BRIDGE" -m comment --comment "hpcci local cluster" -j ACCEPT)

_cl_netns() {
  if ! ip link show "$CLUSTER_BRIDGE" >/dev/null 2>&1; then
    ip link add "$CLUSTER_BRIDGE" type bridge
    _cl_made "bridge-$CLUSTER_BRIDGE"
  fi
  ip link set "$CLUSTER_BRIDGE" up
  _cl_attach "$CLUSTER_NS" "$CLUSTER_VETH_HOST" "$CLUSTER_VETH_NS" "$CLUSTER_LOGIN_IP"
  ip addr replace "$CLUSTER_HOST_IP/24" dev "$CLUSTER_BRIDGE"
  local n
  for n in "${CLUSTER_NODES[@]}"; do _cl_attach "hpcci-$n" "hpcci-$n" eth0 "$(_cl_node_ip "$n")"; done
  if ! iptables -C "${_CL_FORWARD_RULE[@]}" 2>/dev/null; then
    iptables -I "${_CL_FORWARD_RULE[@]}"
    _cl_made forward-rule
  fi
}

# The nodes' names in /etc/hosts, as a site's DNS would have them: the namespaces cannot reach this machine's DNS
# server, so a lookup of a node name (a job resolving its own hostname) would otherwise hang for 20 s.
# Rewritten in place (cat >), not replaced: /etc/hosts may be a bind mount.
_CL_HOSTS_TAG="# hpcci local cluster node"
_cl_hosts() {
  local want n
  want=$(for n in "${CLUSTER_NODES[@]}"; do printf '%s %s %s\n' "$(_cl_node_ip "$n")" "$n" "$_CL_HOSTS_TAG"; done)
  [ "$(grep -F "$_CL_HOSTS_TAG" /etc/hosts)" = "$want" ] && return 0
  _cl_hosts_without >"$CLUSTER_DIR/run/hosts.new"
  echo "$want" >>"$CLUSTER_DIR/run/hosts.new"
  cat "$CLUSTER_DIR/run/hosts.new" >/etc/hosts && rm -f "$CLUSTER_DIR/run/hosts.new"
}

_cl_hosts_without() { grep -vF "$_CL_HOSTS_TAG" /etc/hosts || true; }

_cl_hosts_remove() {
  grep -qF "$_CL_HOSTS_TAG" /etc/hosts || return 0
  _cl_hosts_without >"$CLUSTER_DIR/run/hosts.new"
  cat "$CLUSTER_DIR/run/hosts.new" >/etc/hosts && rm -f "$CLUSTER_DIR/run/hosts.new"
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
  local n
  for n in "${CLUSTER_NODES[@]}"; do _cl_slurmd "$n"; done
  sacctmgr -n -P show account "$CLUSTER_ACCOUNT" format=account | grep -qx "$CLUSTER_ACCOUNT" \
    || sacctmgr -i add account "$CLUSTER_ACCOUNT" Cluster=local Description="hpcci CI" Organization=hpcci >/dev/null
  local u
  for u in "$CLUSTER_USER" "$CLUSTER_USER2"; do
    sacctmgr -n -P show assoc where user="$u" account="$CLUSTER_ACCOUNT" format=user | grep -qx "$u" \
      || sacctmgr -i add user "$u" Account="$CLUSTER_ACCOUNT" DefaultAccount="$CLUSTER_ACCOUNT" >/dev/null
  done
  WAIT_PIDS="${CLUSTER_NODES[*]/#/cluster-slurmd-}" wait_for "Slurm nodes ${CLUSTER_NODES[*]} (idle)" 30 _cl_nodes_ready
}

# _cl_slurmd NODE: the node's slurmd inside its network namespace and a new UTS namespace named NODE (slurmd
# takes its node name from the hostname; jobs inherit both). nsenter, unshare and sh exec in turn, so the recorded
# pid is slurmd's own.
_cl_slurmd() {
  pid_alive "cluster-slurmd-$1" && return 0
  start_bg "cluster-slurmd-$1" "$STACK_DIR/log/cluster-slurmd-$1.log" \
    nsenter --net="/run/netns/hpcci-$1" unshare --uts sh -c 'hostname "$1" && exec /usr/sbin/slurmd -D' sh "$1"
}

# Every node usable. A node left DRAINED or DOWN (a killed session, a stopped slurmd) stays so in Slurm's saved
# state: resume it once its slurmd runs.
_cl_nodes_ready() {
  local states n state ok=0
  states=$(sinfo -h -N -o '%N %T' 2>/dev/null | sort -u) || return 1
  for n in "${CLUSTER_NODES[@]}"; do
    state=$(awk -v n="$n" '$1 == n {print $2; exit}' <<<"$states")
    case "$state" in
      idle|mixed|allocated|completing) ;;
      drain*|down*|fail*) scontrol update nodename="$n" state=resume >/dev/null 2>&1 || true; ok=1 ;;
      *) ok=1 ;;
    esac
  done
  return $ok
}

# A changed sshd_config is reloaded with SIGHUP (sshd re-executes itself, same pid): no stop and start, so the
# login node refuses new connections for a moment only, and open sessions (other tests' jobs) go on.
_cl_sshd() {
  install -d -m 755 /run/sshd
  /usr/sbin/sshd -t -f "$CLUSTER_DIR/etc/sshd_config" || die 4 "sshd config invalid: $CLUSTER_DIR/etc/sshd_config"
  if pid_alive cluster-sshd; then
    case " $_CL_CHANGED " in *" sshd_config "*) ;; *) return 0 ;; esac
    say "cluster: sshd_config changed, reloading sshd"
    kill -HUP "$(cat "$STACK_DIR/run/cluster-sshd.pid")"
    sleep 0.5
    wait_for "sshd on $CLUSTER_LOGIN_IP:$CLUSTER_SSH_PORT" 15 _cl_ssh_answers
    return 0
  fi
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

# Inside a namespace 127.0.0.1 is its own loopback. Relays make the host's 127.0.0.1:PORT services (registry, S3)
# answer there too, on the login node and on every compute node (conversion can run inside jobs):
# ns 127.0.0.1:P -> host 10.77.0.1:(20000+P) -> host 127.0.0.1:P. The host-side port is a different one so it never
# collides with a service that listens on every address (S3 does, so namespaces can also use 10.77.0.1:8080).
_cl_forward() {
  local p n
  for p in "${CLUSTER_FORWARD_PORTS[@]}"; do
    pid_alive "cluster-fwd-host-$p" || start_bg "cluster-fwd-host-$p" "$STACK_DIR/log/cluster-forward.log" \
      socat "TCP-LISTEN:$((20000 + p)),bind=$CLUSTER_HOST_IP,reuseaddr,fork" "TCP:127.0.0.1:$p"
    _cl_forward_in "$CLUSTER_NS" "cluster-fwd-ns-$p" "$p"
    for n in "${CLUSTER_NODES[@]}"; do _cl_forward_in "hpcci-$n" "cluster-fwd-$n-$p" "$p"; done
  done
}

# _cl_forward_in NS NAME PORT: the in-namespace relay 127.0.0.1:PORT -> host 10.77.0.1:(20000+PORT).
_cl_forward_in() {
  pid_alive "$2" || start_bg "$2" "$STACK_DIR/log/cluster-forward.log" \
    nsenter --net="/run/netns/$1" socat "TCP-LISTEN:$3,bind=127.0.0.1,reuseaddr,fork" \
    "TCP:$CLUSTER_HOST_IP:$((20000 + $3))"
}

cluster_up() {
  apt_install "${CLUSTER_PKGS[@]}"
  _cl_lmod
  _cl_migrate
  _cl_files
  local nodes=() n
  for n in "${CLUSTER_NODES[@]}"; do nodes+=("cluster-slurmd-$n"); done
  _cl_restart_if_changed slurmdbd.conf cluster-slurmdbd
  _cl_restart_if_changed slurm.conf "${nodes[@]}" cluster-slurmctld
  _cl_restart_if_changed gres.conf "${nodes[@]}" cluster-slurmctld
  _cl_user
  _cl_netns
  _cl_hosts
  _cl_munge
  _cl_mariadb
  _cl_slurm
  _cl_sshd
  _cl_forward
}

# _cl_unmake WHAT CMD...: run CMD (failure ignored) if `up` made WHAT, and forget it.
_cl_unmake() {
  local m="$CLUSTER_DIR/run/$1.made"; shift
  [ -e "$m" ] || return 0
  "$@" 2>/dev/null || true
  rm -f "$m"
}

# _cl_kill_netns NS: end what still runs in a namespace `up` made (job steps of a stopped slurmd), so deleting the
# namespace leaves no unreachable processes behind.
_cl_kill_netns() {
  [ -e "$CLUSTER_DIR/run/netns-$1.made" ] || return 0
  local pids
  pids=$(ip netns pids "$1" 2>/dev/null | tr '\n' ' ')
  [ -n "$pids" ] || return 0
  # shellcheck disable=SC2086  # a list of pids
  kill -TERM $pids 2>/dev/null || true
  sleep 1
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
}

cluster_down() {
  local n p
  _cl_migrate
  for p in "${CLUSTER_FORWARD_PORTS[@]}"; do
    stop_pid "cluster-fwd-ns-$p"
    for n in "${CLUSTER_NODES[@]}"; do stop_pid "cluster-fwd-$n-$p"; done
    stop_pid "cluster-fwd-host-$p"
  done
  stop_pid cluster-sshd
  for n in "${CLUSTER_NODES[@]}"; do stop_pid "cluster-slurmd-$n"; done
  for n in slurmctld slurmdbd mariadb munged; do stop_pid "cluster-$n"; done
  for n in "${CLUSTER_NODES[@]}"; do
    _cl_unmake "veth-hpcci-$n" ip link del "hpcci-$n"
    _cl_kill_netns "hpcci-$n"
    _cl_unmake "netns-hpcci-$n" ip netns del "hpcci-$n"
  done
  _cl_unmake "veth-$CLUSTER_VETH_HOST" ip link del "$CLUSTER_VETH_HOST"
  _cl_unmake "netns-$CLUSTER_NS" ip netns del "$CLUSTER_NS"
  _cl_unmake "bridge-$CLUSTER_BRIDGE" ip link del "$CLUSTER_BRIDGE"
  _cl_unmake forward-rule iptables -D "${_CL_FORWARD_RULE[@]}"
  _cl_hosts_remove
}

cluster_status() {
  local n down=()
  for n in munged mariadb slurmdbd slurmctld; do pid_alive "cluster-$n" || down+=("$n"); done
  for n in "${CLUSTER_NODES[@]}"; do pid_alive "cluster-slurmd-$n" || down+=("slurmd@$n"); done
  pid_alive cluster-sshd || down+=(sshd)
  [ ${#down[@]} -eq 0 ] || { echo "not running: ${down[*]} (run: scripts/local-stack up cluster)"; return 1; }
  local states state nodes="" bad=""
  states=$(sinfo -h -N -o '%N %T' 2>&1 | sort -u) || { echo "sinfo failed: $states"; return 1; }
  for n in "${CLUSTER_NODES[@]}"; do
    state=$(awk -v n="$n" '$1 == n {print $2; exit}' <<<"$states")
    nodes="$nodes${nodes:+, }$n ${state:-missing} ($(_cl_node_ip "$n"))"
    [[ "$state" =~ ^(idle|mixed|allocated|completing)$ ]] || bad=1
  done
  [ -z "$bad" ] || { echo "slurm nodes not all usable: $nodes (run: scripts/local-stack up cluster)"; return 1; }
  _cl_ssh_answers || { echo "sshd does not answer on $CLUSTER_LOGIN_IP:$CLUSTER_SSH_PORT"; return 1; }
  local lmod
  lmod=$(/usr/share/lmod/lmod/libexec/lmod --version 2>&1 | sed -n 's/.*Version \([0-9.]*\).*/\1/p')
  [ -n "$lmod" ] || { echo "Lmod is not installed (run: scripts/local-stack up cluster)"; return 1; }
  echo "slurm nodes $nodes, ssh $CLUSTER_USER@$CLUSTER_LOGIN_IP:$CLUSTER_SSH_PORT (and $CLUSTER_USER2), Lmod $lmod"
}

cluster_env() {
  echo "export HPCCI_LOCAL_SSH_HOST=$CLUSTER_LOGIN_IP"
  echo "export HPCCI_LOCAL_SSH_PORT=$CLUSTER_SSH_PORT"
  echo "export HPCCI_LOCAL_SSH_USER=$CLUSTER_USER"
  echo "export HPCCI_LOCAL_SSH_KEY_FILE=$(printf %q "$CLUSTER_DIR/ssh/id_ed25519")"
  echo "export HPCCI_LOCAL_KNOWN_HOSTS=$(printf %q "$CLUSTER_DIR/ssh/known_hosts")"
  echo "export HPCCI_LOCAL_SSH_USER2=$CLUSTER_USER2"
  echo "export HPCCI_LOCAL_SSH_USER2_KEY_FILE=$(printf %q "$CLUSTER_DIR/ssh/user2/id_ed25519")"
  echo "export HPCCI_LOCAL_RELEASE_GROUP=$CLUSTER_GROUP"
  echo "export HPCCI_LOCAL_PROJECT_DIR=$(printf %q "$CLUSTER_DIR/project")"
}
