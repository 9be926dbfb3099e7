#!/usr/bin/env bash
# Starts a throwaway OpenSSH server on 127.0.0.1:2222 for `npm run bench` to compare against, with
# fresh keys in $TMPDIR/agent-bench-sshd. Stop it with:
#   kill "$(cat "${TMPDIR:-/tmp}/agent-bench-sshd/sshd.pid")"
# Needs sshd (Debian: apt-get install openssh-server).
#
# OpenSSH at its best, so the comparison is fair:
# - commands run through a login shell that reads no startup files: as root, a dedicated user
#   `agent-bench` whose shell is /bin/dash (sshd runs `dash -c CMD`; dash reads no rc file there);
#   as another user, your own shell (the bench prints which, and what it costs per command);
# - the sftp subsystem is sshd's built-in internal-sftp, so scp and sftp work;
# - the bench picks the cipher itself (aes256-gcm@openssh.com and chacha20-poly1305@openssh.com)
#   and multiplexes where it says so.
set -euo pipefail
dir="${TMPDIR:-/tmp}/agent-bench-sshd"
port="${BENCH_SSH_PORT:-2222}"
sshd="$(command -v sshd || echo /usr/sbin/sshd)"
[ -x "$sshd" ] || { echo "no sshd found: install openssh-server first" >&2; exit 1; }
mkdir -p "$dir" /run/sshd 2>/dev/null || mkdir -p "$dir"
chmod 755 "$dir"
[ -f "$dir/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key"
[ -f "$dir/client_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/client_key"
cp "$dir/client_key.pub" "$dir/authorized_keys"
chmod 644 "$dir/authorized_keys"
user="$(id -un)"
if [ "$(id -u)" = 0 ]; then
  user=agent-bench
  if ! id "$user" >/dev/null 2>&1; then
    useradd --system --create-home --home-dir "$dir/home" --shell /bin/dash "$user"
    usermod -p "*" "$user" # no password, but not locked: sshd refuses locked accounts even for keys
  fi
  mkdir -p "$dir/home" && chown "$user" "$dir/home"
fi
echo "$user" > "$dir/user"
"$sshd" -f /dev/null -o Port="$port" -o ListenAddress=127.0.0.1 -o HostKey="$dir/host_key" \
  -o AuthorizedKeysFile="$dir/authorized_keys" -o PidFile="$dir/sshd.pid" -o StrictModes=no \
  -o UsePAM=no -o PermitRootLogin=prohibit-password -o PasswordAuthentication=no \
  -o "Subsystem=sftp internal-sftp" -o PrintMotd=no -o PrintLastLog=no
echo "sshd listening on 127.0.0.1:$port as user $user (login shell $(getent passwd "$user" | cut -d: -f7)); keys in $dir"
