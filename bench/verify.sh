#!/usr/bin/env bash
# The verify benchmark (docs/benchmarks.md): `bash bench/verify.sh`
#
# Authenticated `POST /v1/verify` throughput of portcullis with one server worker thread, as a
# ratio to an axum hello-world with one worker thread, both measured in the same run: servers
# pinned to one core, the load generator pinned to the other, baseline and candidate interleaved
# round by round. Then latency at a fixed rate, and the cache-miss path with 1,000,000 keys in
# SQLite. Raw JSON lines and a Markdown summary go to bench-results/ (git-ignored).
#
# Settings (environment):
#   BENCH_ROUNDS=3          interleaved rounds of each measurement
#   BENCH_DURATION=10       seconds measured per run (after BENCH_WARMUP=2 seconds of warm-up)
#   BENCH_CONNECTIONS=32    keep-alive connections of the load generator
#   BENCH_RATE_SHARE=0.5    fixed-rate runs at this share of portcullis' median max throughput
#   BENCH_MISS_KEYS=1000000 keys seeded for the cache-miss part (0 skips that part)
#   BENCH_SAMPLE=10000      seeded keys used as verify bodies in the cache-miss load
#   BENCH_LOOKUPS=20000     in-process Store::find_key lookups timed
#   BENCH_SERVER_CORE=0     core of the servers; BENCH_LOAD_CORE=1: core of the load generator
#   BENCH_PORT=18080        first of three loopback ports used
#   BENCH_SKIP_BUILD=1      use the release binaries already built
#   BENCH_KEEP=1            keep the temporary data directories
set -euo pipefail

ROUNDS=${BENCH_ROUNDS:-3}
DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-2}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
RATE_SHARE=${BENCH_RATE_SHARE:-0.5}
MISS_KEYS=${BENCH_MISS_KEYS:-1000000}
SAMPLE=${BENCH_SAMPLE:-10000}
LOOKUPS=${BENCH_LOOKUPS:-20000}
SERVER_CORE=${BENCH_SERVER_CORE:-0}
LOAD_CORE=${BENCH_LOAD_CORE:-1}
PORT=${BENCH_PORT:-18080}
HELLO_PORT=$PORT
CANDIDATE_PORT=$((PORT + 1))
MISS_PORT=$((PORT + 2))

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BENCH_SCRIPT=bench/verify.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh

bench_preconditions
bench_binaries portcullis bench-hello bench-load bench-seed bench-report
bench_workdirs verify
bench_machine "servers on core $SERVER_CORE with TOKIO_WORKER_THREADS=1, bench-load on core $LOAD_CORE" \
    "$ROUNDS interleaved rounds, ${DURATION} s measured after ${WARMUP} s warm-up, $CONNECTIONS keep-alive connections"

# --- throughput and fixed-rate latency: baseline and candidate ------------------------------
log "setting up portcullis (data dir $WORK/verify)"
start portcullis "$CANDIDATE_PORT" /healthz -- \
    "$BIN/portcullis" serve --data-dir "$WORK/verify" --listen "127.0.0.1:$CANDIDATE_PORT"
CANDIDATE=$STARTED
ADMIN_KEY=$(root_key "$WORK/portcullis.out")
"$BIN/portcullis" tenant create --data-dir "$WORK/verify" --id bench --name Bench --output json >/dev/null
TENANT_KEY=$("$BIN/portcullis" key create --data-dir "$WORK/verify" --tenant bench --name k1 \
    --environment live --scopes invoices:read --output json |
    grep -o '"secret": *"[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/')
[[ $TENANT_KEY == sk_live_* ]] || die "could not create a tenant key with the CLI"
VERIFY_BODY="{\"key\":\"$TENANT_KEY\",\"tenant\":\"bench\",\"scopes\":[\"invoices:read\"]}"

log "starting the baseline (bench-hello)"
start hello "$HELLO_PORT" / -- "$BIN/bench-hello" --listen "127.0.0.1:$HELLO_PORT"
HELLO=$STARTED

# Both get the same request bytes and must answer "valid":true; anything else fails the run.
run_target() { # phase target round [bench-load args...]
    local phase=$1 target=$2 round=$3 pid port
    shift 3
    if [[ $target == baseline ]]; then
        pid=$HELLO port=$HELLO_PORT
    else
        pid=$CANDIDATE port=$CANDIDATE_PORT
    fi
    load "phase=$phase" "target=$target" "round=$round" -- "$@" --server-pid "$pid" \
        --url "http://127.0.0.1:$port/v1/verify" --method POST --body "$VERIFY_BODY" \
        --header "Authorization: Bearer $ADMIN_KEY" --expect '"valid":true'
}

# Odd rounds run the baseline first, even rounds the candidate first.
interleaved() { # phase [bench-load args...]
    local phase=$1 r
    shift
    for ((r = 1; r <= ROUNDS; r++)); do
        log "$phase round $r/$ROUNDS"
        if ((r % 2)); then
            run_target "$phase" baseline "$r" "$@"
            run_target "$phase" candidate "$r" "$@"
        else
            run_target "$phase" candidate "$r" "$@"
            run_target "$phase" baseline "$r" "$@"
        fi
    done
}

interleaved throughput
MAX_RPS=$(median_rps '"phase":"throughput"' '"target":"candidate"')
RATE=$(awk -v m="$MAX_RPS" -v s="$RATE_SHARE" 'BEGIN { printf "%.0f", m * s }')
log "fixed rate: $RATE req/s ($RATE_SHARE of portcullis' median $MAX_RPS req/s) for both"
interleaved fixed_rate --rate "$RATE"
stop "$HELLO"
stop "$CANDIDATE"

# --- cache miss: many keys in SQLite, cache disabled ----------------------------------------
if ((MISS_KEYS > 0)); then
    log "cache miss: first start of a second data dir ($WORK/miss)"
    start miss-setup "$MISS_PORT" /healthz -- \
        "$BIN/portcullis" serve --data-dir "$WORK/miss" --listen "127.0.0.1:$MISS_PORT"
    MISS_ADMIN_KEY=$(root_key "$WORK/miss-setup.out")
    stop "$STARTED"

    log "seeding $MISS_KEYS keys (bench-seed, pinned to core $SERVER_CORE like the server)"
    SEED_LINE=$(TOKIO_WORKER_THREADS=1 taskset -c "$SERVER_CORE" "$BIN/bench-seed" \
        --data-dir "$WORK/miss" --keys "$MISS_KEYS" --sample "$SAMPLE" --lookups "$LOOKUPS" \
        --sample-out "$WORK/miss-bodies.jsonl") || die "bench-seed failed"
    echo "{\"phase\":\"seed\",${SEED_LINE#\{}" >>"$RESULTS"
    echo "   $SEED_LINE" >&2

    # The audit log runs in best_effort mode here: this part measures key lookups in the store,
    # and right after seeding 1,000,000 keys the machine's disk is busy writing them back, so the
    # audit writer's WAL checkpoints can stall for seconds; in the default fail_closed mode the
    # server then refuses requests (503 audit_unavailable) by design, which would end the run.
    log "portcullis with the cache disabled (PORTCULLIS_CACHE__CAPACITY=0, PORTCULLIS_AUDIT__MODE=best_effort)"
    PORTCULLIS_CACHE__CAPACITY=0 PORTCULLIS_AUDIT__MODE=best_effort start miss "$MISS_PORT" /healthz -- \
        "$BIN/portcullis" serve --data-dir "$WORK/miss" --listen "127.0.0.1:$MISS_PORT"
    MISS=$STARTED
    miss_load() { # mode [bench-load args...]
        local mode=$1
        shift
        load phase=miss "mode=$mode" -- "$@" --server-pid "$MISS" \
            --url "http://127.0.0.1:$MISS_PORT/v1/verify" --method POST \
            --body-file "$WORK/miss-bodies.jsonl" \
            --header "Authorization: Bearer $MISS_ADMIN_KEY" --expect '"valid":true'
    }
    miss_load max
    MISS_RPS=$(median_rps '"phase":"miss"' '"mode":"max"')
    MISS_RATE=$(awk -v m="$MISS_RPS" -v s="$RATE_SHARE" 'BEGIN { printf "%.0f", m * s }')
    miss_load fixed_rate --rate "$MISS_RATE"
    stop "$MISS"
fi

# --- report ---------------------------------------------------------------------------------
{
    echo "## verify benchmark, $(date -u +%Y-%m-%d)"
    echo
    echo "Command: \`bash bench/verify.sh\`"
    echo
    cat "$OUT/machine.md"
    echo
    "$BIN/bench-report" "$RESULTS"
} >"$OUT/summary.md"
cat "$OUT/summary.md"
echo
echo "results: $OUT (runs.jsonl, summary.md)" >&2
