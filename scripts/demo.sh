#!/usr/bin/env bash
# `make demo`: start the reference server on loopback, mount it, show it working, leave it up.
# `make demo-stop`: unmount and stop the server.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=$PWD/.demo
MNT=$STATE/mnt
BIN=$PWD/.venv/bin

stop() {
  if mountpoint -q "$MNT" 2>/dev/null || grep -q " $MNT fuse" /proc/mounts; then
    fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT" 2>/dev/null || true
    echo "unmounted $MNT"
  fi
  if [ -f "$STATE/server.pid" ]; then
    kill "$(cat "$STATE/server.pid")" 2>/dev/null && echo "stopped the reference server" || true
    rm -f "$STATE/server.pid"
  fi
}

run() {
  printf '\n\033[1m$ %s\033[0m\n' "$*"
  (cd "$MNT" && bash -c "$*") || echo "(exit status $?)"
}

start() {
  stop >/dev/null
  mkdir -p "$MNT"
  : > "$STATE/server.out"
  "$BIN/agfs-fuse" serve --addr 127.0.0.1:0 >"$STATE/server.out" 2>"$STATE/server.log" &
  echo $! > "$STATE/server.pid"
  for _ in $(seq 100); do
    grep -q '^listening on ' "$STATE/server.out" && break
    sleep 0.1
  done
  URL=$(sed -n 's/^listening on //p' "$STATE/server.out")
  [ -n "$URL" ] || { echo "the reference server did not start:"; cat "$STATE/server.log"; exit 1; }
  echo "reference AGFS server: $URL (memfs at /memfs, queuefs at /queuefs)"
  "$BIN/agfs-fuse" mount "$URL" "$MNT" --log-file "$STATE/mount.log"
  echo "mounted on $MNT"
  run "ls -l"
  run "mkdir -p memfs/demo"
  run "echo hello > memfs/demo/f"
  run "cat memfs/demo/f"
  run "ls -l memfs/demo"
  printf '\n\033[1m$ curl -s "%s/files?path=/memfs/demo/f"  # the server has it too\033[0m\n' "$URL"
  "$BIN/python" -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())' "$URL/files?path=/memfs/demo/f"
  run "mkdir queuefs/jobs && echo job1 > queuefs/jobs/enqueue && cat queuefs/jobs/size; echo"
  run "cat queuefs/jobs/dequeue; echo"
  run "echo > reload  # reconnect to the server"
  run "df -h ."
  cat <<MSG

The mount stays up. Explore it:   cd $MNT
Server log: $STATE/server.log    Mount log: $STATE/mount.log
Stop both:  make demo-stop
MSG
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop"; exit 2 ;;
esac
