#!/usr/bin/env bash
# A one-node SLURM cluster on 127.0.0.1 for the pipeline's cluster tests (Debian 12, run as root).
#   cluster.sh install   apt-get install slurmctld slurmd slurm-client munge
#   cluster.sh start     write the config, start munged, slurmctld and slurmd, wait until the node is idle
#   cluster.sh stop      cancel leftover jobs and end the daemons this script started (by their pid files)
# State, logs and pid files live in $SCBLOSS_SLURM_DIR (default /tmp/scbloss-slurm). The node offers a stand-in
# GPU per CPU (up to 4; gres backed by /dev/null, /dev/zero, ...), so jobs asking for --gpus=1 schedule. No
# accounting daemon: its site values (tests/slurm/site.yaml) make profiles/slurm check job states with squeue.
set -euo pipefail
DIR=${SCBLOSS_SLURM_DIR:-/tmp/scbloss-slurm}
HOST=$(hostname -s)
GPUS=$(( $(nproc) < 4 ? $(nproc) : 4 ))

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
      && command -v sbatch >/dev/null; then
    echo "slurm and munge already installed"; return
  fi
  # Without root or apt-get the other tests still run; the cluster tests (root starts the daemons) skip themselves.
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "cluster.sh: not root on Debian: Slurm not installed, the cluster tests will be skipped" >&2; return
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge
}

write_config() {
  mkdir -p "$DIR"/{state,spool,log}
  local mem_mib=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) * 85 / 100 / 1024 ))
  cat > "$DIR/slurm.conf" <<CONF
ClusterName=scbloss-ci
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
MinJobAge=300
ReturnToService=2
GresTypes=gpu
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$mem_mib Gres=gpu:$GPUS State=UNKNOWN
PartitionName=ci Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
  # Stand-in GPUs: character devices every machine has; one per CPU so jobs run side by side as on a GPU node.
  local devices=(/dev/null /dev/zero /dev/full /dev/urandom)
  : > "$DIR/gres.conf"
  for device in "${devices[@]:0:$GPUS}"; do echo "NodeName=$HOST Name=gpu File=$device" >> "$DIR/gres.conf"; done
  mkdir -p /etc/slurm
  # The plugin's job-step wrapper drops SLURM_CONF, so the config must sit at the default path.
  for name in slurm.conf gres.conf; do
    if [ -e "/etc/slurm/$name" ] && [ ! -L "/etc/slurm/$name" ]; then
      echo "cluster.sh: /etc/slurm/$name exists and is not ours; refusing to replace it" >&2; exit 1
    fi
    ln -sfn "$DIR/$name" "/etc/slurm/$name"
  done
}

start_cluster() {
  if pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null; then
    echo "cluster.sh: slurmctld or slurmd is already running (pids: $(pgrep -x 'slurmctld|slurmd' | xargs)); stop it first" >&2
    exit 1
  fi
  write_config
  if [ ! -s /etc/munge/munge.key ]; then mungekey --create; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; fi
  install -d -o munge -g munge -m 0755 /run/munge
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged
    cp /run/munge/munged.pid "$DIR/munged.pid" 2>/dev/null || pgrep -x munged | head -1 > "$DIR/munged.pid"
  fi
  /usr/sbin/slurmctld -i
  /usr/sbin/slurmd
  for _ in $(seq 1 60); do
    state=$(sinfo -h -N -o %T 2>/dev/null | head -1 || true)
    if [ "$state" = "idle" ]; then echo "slurm: node $HOST idle"; return; fi
    sleep 0.5
  done
  echo "cluster.sh: node did not become idle (state: ${state:-none}); logs in $DIR/log" >&2
  exit 1
}

stop_cluster() {
  scancel --user=root >/dev/null 2>&1 || true
  for daemon in slurmd slurmctld munged; do
    pidfile="$DIR/$daemon.pid"
    if [ -s "$pidfile" ]; then
      pid=$(cat "$pidfile")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      rm -f "$pidfile"
    fi
  done
  for name in slurm.conf gres.conf; do
    [ -L "/etc/slurm/$name" ] && [ "$(readlink "/etc/slurm/$name")" = "$DIR/$name" ] && rm -f "/etc/slurm/$name"
  done
  echo "slurm: stopped"
}

case "${1:-}" in
  install) install_packages ;;
  start) start_cluster ;;
  stop) stop_cluster ;;
  *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
