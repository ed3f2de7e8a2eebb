#!/usr/bin/env bash
# Make sure a RabbitMQ broker is reachable: the one in AMQP_URL if set, else 127.0.0.1:5672; when that is this
# machine and nothing answers, start the locally installed rabbitmq-server; otherwise say how to get one.
set -euo pipefail

url="${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/}"
read -r host port < <(python3 - "$url" <<'PY'
import sys
from urllib.parse import urlsplit
parts = urlsplit(sys.argv[1])
print(parts.hostname or "127.0.0.1", parts.port or (5671 if parts.scheme == "amqps" else 5672))
PY
)

reachable() { python3 -c "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()" "$host" "$port" 2>/dev/null; }

# A broker can accept TCP connections and still never answer the AMQP handshake (seen on a small single-node broker
# full of leftover quorum queues): then every test would hang. Send the AMQP 0-9-1 protocol header and wait for the
# server's first frame (Connection.Start: frame type 1 on channel 0).
answers_amqp() {
  python3 - "$host" "$port" <<'PY' 2>/dev/null
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=15) as s:
    s.settimeout(15)
    s.sendall(b"AMQP\x00\x00\x09\x01")
    frame = s.recv(7)
sys.exit(0 if len(frame) == 7 and frame[0] == 1 and frame[1:3] == b"\x00\x00" else 1)
PY
}

handshake_or_fail() {
  if answers_amqp; then
    echo "RabbitMQ answers AMQP at $host:$port"
    return 0
  fi
  cat >&2 <<MSG
RabbitMQ at $host:$port accepts connections but does not answer the AMQP handshake within 15 s; tests would hang.
Look at it with: rabbitmq-diagnostics status; rabbitmq-diagnostics log_tail
On a disposable development or CI broker, restarting it usually helps (rabbitmqctl stop, then rabbitmq-server -detached);
if it wedges again, leftover queues may be the cause: rabbitmqctl list_queues name | wc -l
MSG
  return 1
}

if reachable; then
  handshake_or_fail
  exit $?
fi

case "$host" in
  127.0.0.1|localhost|::1) ;;
  *) echo "RabbitMQ at $host:$port (from AMQP_URL) is not reachable; start it or point AMQP_URL at a running broker." >&2; exit 1 ;;
esac

if ! command -v rabbitmq-server >/dev/null 2>&1; then
  cat >&2 <<MSG
No RabbitMQ answers on $host:$port and rabbitmq-server is not installed.
Get one of:
  - Debian/Ubuntu:  sudo apt-get install rabbitmq-server && sudo rabbitmq-server -detached
  - Docker:         docker run -d --network host rabbitmq:3.13-management
  - a remote broker: export AMQP_URL=amqp://user:password@host:5672/
MSG
  exit 1
fi

echo "Starting the local RabbitMQ (rabbitmq-server -detached)..."
rabbitmq-server -detached || true
for _ in $(seq 1 120); do
  if reachable; then
    rabbitmqctl await_startup >/dev/null 2>&1 || true
    echo "RabbitMQ started on $host:$port"
    handshake_or_fail
    exit $?
  fi
  sleep 1
done
echo "RabbitMQ did not come up on $host:$port within 120 s; see its logs (rabbitmq-diagnostics status)." >&2
exit 1
