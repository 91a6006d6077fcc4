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
ROOT_DIR=$(pwd)

die() {
    echo "bench/verify.sh: $*" >&2
    exit 1
}
log() { echo "== $*" >&2; }

# --- preconditions --------------------------------------------------------------------------
command -v taskset >/dev/null || die "taskset is missing (package util-linux); it pins the server and the load generator to their cores"
command -v cargo >/dev/null || die "cargo is missing"
CORES=$(nproc --all 2>/dev/null || nproc)
((CORES >= 2)) || die "needs at least 2 cores (found $CORES): one for the server, one for the load generator"
((SERVER_CORE != LOAD_CORE)) || die "BENCH_SERVER_CORE and BENCH_LOAD_CORE must differ"
taskset -c "$SERVER_CORE,$LOAD_CORE" true 2>/dev/null || die "cannot pin to cores $SERVER_CORE and $LOAD_CORE"

# --- build ----------------------------------------------------------------------------------
if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    log "building release binaries"
    cargo build --release --quiet -p portcullis-bench -p portcullis
fi
BIN=${CARGO_TARGET_DIR:-$ROOT_DIR/target}/release
for b in portcullis bench-hello bench-load bench-seed bench-report; do
    [[ -x $BIN/$b ]] || die "$BIN/$b is missing (build with: cargo build --release -p portcullis-bench -p portcullis)"
done

# --- work and results directories, cleanup --------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-bench.XXXXXX")
OUT=$ROOT_DIR/bench-results/verify-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
RESULTS=$OUT/runs.jsonl
: >"$RESULTS"
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
        echo "kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The status line of GET $2 on 127.0.0.1:$1 is 200.
http_ok() {
    local status
    status=$({
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf 'GET %s HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n' "$2" >&3
        head -c 12 <&3
    } 2>/dev/null) || return 1
    [[ $status == "HTTP/1.1 200" ]]
}

port_free() {
    ! ({ exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null)
}

# start NAME PORT HEALTH_PATH -- COMMAND...: starts COMMAND pinned to the server core with one
# tokio worker, logs to $WORK/NAME.{out,err}, waits until GET HEALTH_PATH answers 200; the pid is
# left in $STARTED.
start() {
    local name=$1 port=$2 path=$3
    shift 4
    port_free "$port" || die "port $port is already in use (set BENCH_PORT)"
    TOKIO_WORKER_THREADS=1 taskset -c "$SERVER_CORE" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    STARTED=$!
    PIDS+=("$STARTED")
    local i
    for ((i = 0; i < 300; i++)); do
        if ! kill -0 "$STARTED" 2>/dev/null; then
            cat "$WORK/$name.out" "$WORK/$name.err" >&2
            die "$name exited during start-up"
        fi
        http_ok "$port" "$path" && return 0
        sleep 0.1
    done
    cat "$WORK/$name.err" >&2
    die "$name did not answer GET $path on port $port within 30 s"
}

stop() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    local kept=() pid
    for pid in "${PIDS[@]}"; do
        [[ $pid == "$1" ]] || kept+=("$pid")
    done
    PIDS=("${kept[@]}")
}

# The root admin key a first `portcullis serve` printed to $1.
root_key() {
    local i key
    for ((i = 0; i < 50; i++)); do
        key=$(grep -o 'pc_admin_[A-Za-z0-9]*' "$1" | head -n 1 || true)
        [[ -n $key ]] && {
            echo "$key"
            return 0
        }
        sleep 0.1
    done
    die "no root admin key in the first-start output ($1)"
}

# load LABELS... -- BENCH_LOAD_ARGS...: one bench-load run on the load core, its JSON line
# appended to $RESULTS.
load() {
    local labels=()
    while [[ $1 != -- ]]; do
        labels+=(--label "$1")
        shift
    done
    shift
    local line
    if ! line=$(taskset -c "$LOAD_CORE" "$BIN/bench-load" --duration "$DURATION" --warmup "$WARMUP" \
        --connections "$CONNECTIONS" "${labels[@]}" "$@"); then
        echo "$line" >&2
        die "bench-load failed (${labels[*]}): see the message above"
    fi
    echo "$line" >>"$RESULTS"
    echo "   $line" >&2
}

# Median of the "rps" of the result lines matching every pattern given.
median_rps() {
    local lines
    lines=$(cat "$RESULTS")
    local p
    for p in "$@"; do
        lines=$(grep -F -- "$p" <<<"$lines" || true)
    done
    grep -o '"rps":[0-9.]*' <<<"$lines" | cut -d: -f2 | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) exit 1; if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Share of the CPU time of both cores that was busy over one second (0..100).
busy_percent() {
    local a b
    read -r -a a < <(head -n 1 /proc/stat)
    sleep 1
    read -r -a b < <(head -n 1 /proc/stat)
    local idle=$(((b[4] + b[5]) - (a[4] + a[5]))) total=0 i
    for i in 1 2 3 4 5 6 7 8; do
        total=$((total + b[i] - a[i]))
    done
    ((total > 0)) && echo $((100 - 100 * idle / total)) || echo 0
}

# --- the machine ----------------------------------------------------------------------------
CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//' || echo unknown)
BUSY=$(busy_percent)
{
    echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
    echo "- machine: $CORES cores ($(nproc) usable), $CPU_MODEL, Linux $(uname -r), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "- $(rustc --version 2>/dev/null || echo 'rustc unknown')"
    echo "- servers on core $SERVER_CORE with TOKIO_WORKER_THREADS=1, bench-load on core $LOAD_CORE"
    echo "- $ROUNDS interleaved rounds, ${DURATION} s measured after ${WARMUP} s warm-up, $CONNECTIONS keep-alive connections"
    echo "- CPU busy before the run (both cores, 1 s): ${BUSY}%"
} >"$OUT/machine.md"
cat "$OUT/machine.md" >&2
((BUSY < 15)) || log "WARNING: the machine is not idle (${BUSY}% busy): figures will be noisy"

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

    log "portcullis with the cache disabled (PORTCULLIS_CACHE__CAPACITY=0)"
    PORTCULLIS_CACHE__CAPACITY=0 start miss "$MISS_PORT" /healthz -- \
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
