#!/usr/bin/env bash
# Starts a throwaway OpenSSH server on 127.0.0.1:2222 for `npm run bench` to compare against,
# for the current user, with fresh keys in $TMPDIR/agent-bench-sshd. Stop it with:
#   kill "$(cat "${TMPDIR:-/tmp}/agent-bench-sshd/sshd.pid")"
# Needs sshd (Debian: apt-get install openssh-server).
set -euo pipefail
dir="${TMPDIR:-/tmp}/agent-bench-sshd"
port="${BENCH_SSH_PORT:-2222}"
sshd="$(command -v sshd || echo /usr/sbin/sshd)"
[ -x "$sshd" ] || { echo "no sshd found: install openssh-server first" >&2; exit 1; }
mkdir -p "$dir" /run/sshd 2>/dev/null || mkdir -p "$dir"
chmod 700 "$dir"
[ -f "$dir/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key"
[ -f "$dir/client_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/client_key"
cp "$dir/client_key.pub" "$dir/authorized_keys"
"$sshd" -f /dev/null -o Port="$port" -o ListenAddress=127.0.0.1 -o HostKey="$dir/host_key" \
  -o AuthorizedKeysFile="$dir/authorized_keys" -o PidFile="$dir/sshd.pid" -o StrictModes=no \
  -o UsePAM=no -o PermitRootLogin=prohibit-password -o PasswordAuthentication=no
echo "sshd listening on 127.0.0.1:$port (keys in $dir); npm run bench will use it"
