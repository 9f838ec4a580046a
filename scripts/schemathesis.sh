#!/usr/bin/env bash
# A property-based run of the API against its own description: schemathesis reads
# /v1/openapi.json from the real `dwell serve` (fresh data directory, counter and probe
# deployed, a few actors and requests to find) and sends generated requests, valid and
# invalid, to every operation, with every check it has (`--checks all`): a 5xx; a status,
# content type, header or body the document does not describe; a request that fits the
# document refused, or one that does not accepted; a missing or ignored key; a deleted
# thing still found. Any finding, or a panic in the server's log, fails the run (and CI).
# No check is left out; where a request that fits the document is refused for a reason no
# schema can state, the statuses that says are listed, with the reason, below.
#
# Three runs on the same server, one after the other, each operation with the key its
# security scheme names: the tenant's operations, then deleting modules, then the admin
# operations (each may take away what the earlier ones need).
#
#   scripts/schemathesis.sh                             # CI: about 1,900 cases, fixed seed
#   ST_EXAMPLES=300 ST_SEED=7 scripts/schemathesis.sh   # a longer or different run
#
# Extra arguments go to every `schemathesis run` (e.g. `--max-failures 1`).
set -euo pipefail
cd "$(dirname "$0")/.."

# The checks and their options depend on the version; CI runs the one this was written for.
version=4.32.5
examples=${ST_EXAMPLES:-60}
seed=${ST_SEED:-20261201}

if [ "$(python3 -c 'import schemathesis; print(schemathesis.__version__)' 2>/dev/null)" != "$version" ]; then
  python3 -m pip install --quiet "schemathesis==$version"
fi

scripts/build-guests.sh
cargo build -p dwell
guests=target/guests/wasm32-wasip2/guest

work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# Port 9 (discard) refuses connections: outbound calls and callbacks stay pending.
target/debug/dwell serve --listen 127.0.0.1:0 --data "$work/data" \
  --deploy "counter=$guests/counter.wasm" --deploy "probe=$guests/probe.wasm" \
  --allow-private-net --allow-http 127.0.0.1:9 \
  >"$work/stdout" 2>"$work/server.log" &
pid=$!
base=
for _ in $(seq 600); do
  base=$(sed -n 's/^dwell listening on //p' "$work/stdout")
  [ -n "$base" ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$base" ]; then
  echo "schemathesis.sh: dwell did not start; its log:" >&2
  cat "$work/server.log" >&2
  exit 1
fi
DWELL_TENANT_KEY=$(cat "$work/data/default-tenant.key")
DWELL_ADMIN_KEY=$(cat "$work/data/admin.key")
export DWELL_TENANT_KEY DWELL_ADMIN_KEY

# Things for the generated requests to find (their names are in the dictionaries below):
# actors with state, a timer, a pending outbound call, a dead letter, a completed
# process, and requests, one with a callback.
api() { # METHOD PATH [BODY [HEADER...]]
  local method=$1 path=$2 body=${3:-} args=()
  shift 3 || shift $#
  for h in "$@"; do args+=(-H "$h"); done
  curl -sS --fail-with-body -X "$method" "$base$path" -H "authorization: Bearer $DWELL_TENANT_KEY" \
    -H 'content-type: application/json' ${body:+--data "$body"} "${args[@]}"
}
api POST /v1/actors/counter/a '{"add":2}' >/dev/null
request=$(api POST /v1/actors/counter/a '{"add":1}' 'prefer: respond-async' \
  'callback-url: http://127.0.0.1:9/callback' | jq -r .request_id)
api POST /v1/actors/counter/b/events '{"subtract":1}' >/dev/null
api POST /v1/actors/probe/p '{"op":"set_timer","name":"later","after_ms":3600000}' >/dev/null
api POST /v1/actors/probe/p '{"op":"http","call_id":"c1","url":"http://127.0.0.1:9/x","attempts":10}' >/dev/null
api POST /v1/actors/probe/done '{"op":"complete"}' >/dev/null
seq=
for _ in $(seq 100); do
  seq=$(api GET /v1/actors/counter/b | jq -r '.dead_letters[0].seq // empty')
  [ -n "$seq" ] && break
  sleep 0.1
done
[ -n "$seq" ] || { echo "schemathesis.sh: no dead letter to retry" >&2; exit 1; }

# The serializer for module uploads: the document says `application/wasm` (bytes).
cat >"$work/hooks.py" <<'EOF'
import schemathesis

schemathesis.serializer.alias("application/wasm", "application/octet-stream")
EOF

cat >"$work/schemathesis.toml" <<EOF
hooks = "$work/hooks.py"

# The seed alone decides the cases: no examples replayed from earlier runs.
generation.database = "none"
[cache]
enabled = false

# Each operation gets the key its security scheme names.
[auth.openapi.tenant_key]
bearer = "\${DWELL_TENANT_KEY}"
[auth.openapi.admin_key]
bearer = "\${DWELL_ADMIN_KEY}"

# Warnings that mean operations were not really exercised fail the run.
[warnings]
fail-on = ["missing_auth", "unused_openapi_auth", "missing_deserializer", "unsupported_regex",
  "unresolvable_reference", "unmatched_filter"]

# Module names that exist, and preferences the server acts on, some of the time, so
# calls reach a guest and answer 202 with a request to follow.
[dictionaries.modules]
values = ["counter", "probe"]
[dictionaries.keys]
values = ["a", "b", "p", "done"]
[dictionaries.seqs]
values = [$seq]
[dictionaries.requests]
values = ["$request"]
[dictionaries.prefer]
values = ["respond-async", "wait=0", "wait=0.5", "respond-async, wait=1"]
[parameters]
"path.module" = { dictionary = "modules", probability = 0.5 }
"path.key" = { dictionary = "keys", probability = 0.5 }
"path.seq" = { dictionary = "seqs", probability = 0.3 }
"path.id" = { dictionary = "requests", probability = 0.3 }
"header.Prefer" = { dictionary = "prefer", probability = 0.3 }

# A request that fits the document may still be refused for what no schema can say;
# these statuses are then not a finding of "schema-valid request rejected".
# Any bytes fit the upload's "format: binary", but only a component of the dwell:actor
# world is a module (422). (No backticks in this document: the heredoc expands them.)
[[operations]]
include-name = "PUT /v1/modules/{name}"
checks.positive_data_acceptance.expected-statuses = ["2xx", 401, 403, 404, 409, 422, 429]

# A call's body is the process's own business: it may refuse it (404, 409, 412, 422).
# A Callback-Url is refused (400) unless its host is on an outbound allowlist. An
# Idempotency-Key an earlier case used with another body is refused (422), here and for
# events.
[[operations]]
include-name = "POST /v1/actors/{module}/{key}"
checks.positive_data_acceptance.expected-statuses = ["2xx", 400, 401, 403, 404, 409, 412, 422, 429]
[[operations]]
include-name = "POST /v1/actors/{module}/{key}/events"
checks.positive_data_acceptance.expected-statuses = ["2xx", 401, 403, 404, 409, 422, 429]

# An upgrade names versions the module may not have (422), or the same one twice (422).
# A dead letter retried on another version: no such version (422), or the actor took a
# turn while it moved (409).
[[operations]]
include-name = "POST /v1/modules/{name}/upgrades"
checks.positive_data_acceptance.expected-statuses = ["2xx", 401, 403, 404, 422, 429]
[[operations]]
include-name = "POST /v1/actors/{module}/{key}/dead-letters/{seq}/retry"
checks.positive_data_acceptance.expected-statuses = ["2xx", 401, 403, 404, 409, 422, 429]

# Deleting modules runs after the calls: let it find the deployed ones.
[[operations]]
include-name = "DELETE /v1/modules/{name}"
parameters = { "path.name" = { dictionary = "modules", probability = 0.3 } }
EOF

status=0
run() { # in $work: hypothesis keeps a cache in the working directory
  (cd "$work" && python3 -m schemathesis.cli --config-file schemathesis.toml \
    run "$base/v1/openapi.json" \
    --checks all --max-examples "$examples" --seed "$seed" \
    --workers 1 --request-timeout 30 --no-color "$@") || status=1
}
# Operations that would take away what the others need run after them: deleting a
# module (the calls need counter and probe), then the admin operations (they may
# delete or throttle the default tenant).
# Together the three selections are every operation.
deleting='DELETE /v1/modules/' admin='[A-Z]+ /v1/(tenants|cluster)'
echo "== schemathesis 1/3: the tenant's operations"
run --exclude-name-regex "^($deleting|$admin)" "$@"
echo "== schemathesis 2/3: deleting modules"
run --include-name-regex "^$deleting" "$@"
echo "== schemathesis 3/3: the admin operations"
run --include-name-regex "^$admin" "$@"

if ! kill -0 "$pid" 2>/dev/null; then
  echo "schemathesis.sh: dwell exited during the run" >&2
  status=1
fi
if grep -q "panicked" "$work/server.log"; then
  echo "schemathesis.sh: dwell panicked during the run:" >&2
  grep -A5 "panicked" "$work/server.log" >&2
  status=1
fi
if [ "$status" -ne 0 ]; then
  echo "schemathesis.sh: FAILED (seed $seed, $examples examples per operation); server log tail:" >&2
  tail -n 40 "$work/server.log" >&2
fi
exit "$status"
