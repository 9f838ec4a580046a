#!/usr/bin/env bash
# A local Dwell cluster in one command: a private PostgreSQL (scripts/pg.sh) and three
# nodes on 127.0.0.1:8081-8083 sharing it, the example modules deployed through the
# first. Any node takes any call (calls for actors another node runs are forwarded).
# Ctrl-C stops the nodes (each hands its partitions over) and the database.
# Data: ./cluster (the database in ./cluster/pg, each node's directory in ./cluster/nK).
# Extra arguments go to every `dwell serve`, e.g. `--lease 2s`.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${DWELL_CLUSTER_DIR:-cluster}
scripts/build-guests.sh
cargo build --release -p dwell
mkdir -p "$dir"
pids=()
stop() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  scripts/pg.sh stop "$dir/pg" || true
}
trap stop EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
if [ -f "$dir/pg/data/postmaster.pid" ]; then scripts/pg.sh stop "$dir/pg" || true; fi
rm -rf "$dir/pg"
url=$(scripts/pg.sh start "$dir/pg")
# Every node shares the sealing key of tenants' secrets and the callback signing secret.
[ -f "$dir/secrets.key" ] || head -c 32 /dev/urandom | base64 > "$dir/secrets.key"
[ -f "$dir/webhook.secret" ] || echo "whsec_$(head -c 32 /dev/urandom | base64)" > "$dir/webhook.secret"
[ -f "$dir/admin.key" ] || echo "dw_admin_$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')" > "$dir/admin.key"
deploys=()
for name in counter checkin payment trip; do
  deploys+=(--deploy "$name=target/guests/wasm32-wasip2/guest/$name.wasm")
done
for n in 1 2 3; do
  extra=()
  [ "$n" = 1 ] && extra=("${deploys[@]}")
  DWELL_ADMIN_KEY=$(cat "$dir/admin.key") target/release/dwell serve \
    --listen "127.0.0.1:808$n" --advertise "127.0.0.1:808$n" --node-id "n$n" \
    --data "$dir/n$n" --store "$url/postgres" \
    --secrets-key "$(cat "$dir/secrets.key")" --webhook-secret "$(cat "$dir/webhook.secret")" \
    "${extra[@]}" "$@" &
  pids+=($!)
  # The first node makes the cluster and the default tenant before the others join.
  if [ "$n" = 1 ]; then
    for _ in $(seq 1 100); do
      curl -fs "http://127.0.0.1:8081/healthz" >/dev/null && break
      sleep 0.2
    done
  fi
done
echo "cluster: nodes on http://127.0.0.1:8081 8082 8083, PostgreSQL at $url"
echo "  tenant key (default): $(cat "$dir/n1/default-tenant.key")"
echo "  admin key:            $(cat "$dir/admin.key")   (GET /v1/cluster)"
wait -n "${pids[@]}"
