#!/usr/bin/env bash
# The instruction count benchmark (docs/benchmarks.md): `bash bench/callgrind.sh`
#
# User-space instructions per request of each server, counted by valgrind's callgrind: steady
# figures, free of the machine's speed drift, for steering work on the hot path. Each server runs
# alone under `valgrind --tool=callgrind` with one tokio worker thread (callgrind counts all its
# threads in one total: the worker, the audit writer, the store's threads); the load generator
# and the upstream run natively. Per target: a warm-up of BENCH_CALLGRIND_WARMUP requests, a
# pause for the background work they caused (the audit writer's batch), the counters zeroed
# (`callgrind_control -z`), exactly BENCH_CALLGRIND_REQUESTS keep-alive requests on one
# connection (`bench-load --requests N --connections 1`), the same pause, a dump
# (`callgrind_control -d`); the dump's total over N is the figure. The counted time includes the
# second pause, so the figure includes the server's idle background work over it (portcullis:
# about 0.2 M instructions a second under callgrind, well under 1 % of its figures).
#   verify:  (a) hello           axum hello-world (bench-hello), the same POST /v1/verify request
#            (b) verify          portcullis POST /v1/verify, a valid cached tenant key, audit log on
#            (c) verify-noaudit  (b) with the audit log off (PORTCULLIS_AUDIT__ENABLED=false)
#   gateway: (d) gateway         portcullis gateway GET / with a valid key (scope, per-key rate
#                                limit, as bench/gateway.sh), upstream bench-hello, audit log on
#            (e) gateway-noaudit (d) with the audit log off
#            (f) proxy           bench-proxy, the bare hyper proxy, in front of the same upstream
# Reported: instructions per request, and the ratio to (a) for verify rows, to (f) for gateway
# rows. The table goes to bench-results/callgrind-<UTC>.md; the dumps (readable with
# `callgrind_annotate`) and bench-load's JSON lines to the directory of the same name.
# portcullis runs on mimalloc, bench-hello and bench-proxy on the system allocator: the
# allocators' instructions are part of each figure. valgrind does not offer the CPU's SHA
# extensions (SHA-NI) to the program, so under it SHA-256 runs in software (the sha2 crate's
# `soft::compress`), where natively it runs on those instructions where the CPU has them: the
# table shows that function's instructions per request apart, to be discounted for native cost.
#
# Settings (environment):
#   BENCH_CALLGRIND_REQUESTS=1000  requests counted per target
#   BENCH_CALLGRIND_WARMUP=200     requests before the counters are zeroed
#   BENCH_CALLGRIND_SETTLE=2       seconds waited after the warm-up and after the counted
#                                  requests, before zeroing and before dumping
#   BENCH_CALLGRIND_START=300      seconds a server under valgrind may take to start answering
#   BENCH_TARGETS="..."            measure only these of: hello verify verify-noaudit gateway
#                                  gateway-noaudit proxy (default: all)
#   BENCH_VALGRIND=valgrind        the valgrind binary (callgrind_control is looked up beside it)
#   BENCH_SERVER_CORE=0            core of the servers; BENCH_LOAD_CORE=1: load generator, upstream
#   BENCH_PORT=18280               first of four loopback ports used (server admin/verify API,
#                                  gateway, upstream, bench-proxy)
#   BENCH_SKIP_BUILD=1             use the release binaries already built
#   BENCH_KEEP=1                   keep the temporary directory (configuration, logs, data)
set -euo pipefail

REQUESTS=${BENCH_CALLGRIND_REQUESTS:-1000}
CG_WARMUP=${BENCH_CALLGRIND_WARMUP:-200}
SETTLE=${BENCH_CALLGRIND_SETTLE:-2}
START_SECONDS=${BENCH_CALLGRIND_START:-300}
SERVER_CORE=${BENCH_SERVER_CORE:-0}
LOAD_CORE=${BENCH_LOAD_CORE:-1}
PORT=${BENCH_PORT:-18280}
VALGRIND=${BENCH_VALGRIND:-valgrind}
API_PORT=$PORT
GATEWAY_PORT=$((PORT + 1))
UPSTREAM_PORT=$((PORT + 2))
PROXY_PORT=$((PORT + 3))
ALL_TARGETS=(hello verify verify-noaudit gateway gateway-noaudit proxy)

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BENCH_SCRIPT=bench/callgrind.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh

[[ $REQUESTS =~ ^[1-9][0-9]*$ ]] || die "BENCH_CALLGRIND_REQUESTS must be a positive number"
[[ $CG_WARMUP =~ ^[1-9][0-9]*$ ]] || die "BENCH_CALLGRIND_WARMUP must be a positive number"
command -v "$VALGRIND" >/dev/null || die "valgrind is missing ($VALGRIND; Debian package valgrind)"
CONTROL=$(dirname "$(command -v "$VALGRIND")")/callgrind_control
[[ -x $CONTROL ]] || CONTROL=$(command -v callgrind_control) ||
    die "callgrind_control is missing (it comes with valgrind)"
ANNOTATE=$(dirname "$CONTROL")/callgrind_annotate
[[ -x $ANNOTATE ]] || ANNOTATE=""
TARGETS=("${ALL_TARGETS[@]}")
if [[ -n ${BENCH_TARGETS:-} ]]; then
    TARGETS=()
    for t in "${ALL_TARGETS[@]}"; do
        [[ " $BENCH_TARGETS " == *" $t "* ]] && TARGETS+=("$t")
    done
    ((${#TARGETS[@]} > 0)) || die "BENCH_TARGETS names none of: ${ALL_TARGETS[*]}"
fi

bench_preconditions
bench_binaries portcullis bench-hello bench-load bench-proxy
bench_workdirs callgrind
# Servers under valgrind start slowly: wait_ok's time limit (lib.sh).
WAIT_SECONDS=$START_SECONDS
bench_machine "$("$VALGRIND" --version) --tool=callgrind, servers with TOKIO_WORKER_THREADS=1 on core $SERVER_CORE; bench-load and the upstream natively on core $LOAD_CORE" \
    "$CG_WARMUP warm-up requests, then $REQUESTS counted keep-alive requests on one connection, ${SETTLE} s pauses"

# --- set-up: data directory, keys, configuration (natively) ---------------------------------
gateway_config "$WORK/portcullis.toml" "$API_PORT" "$GATEWAY_PORT" "$UPSTREAM_PORT"
log "setting up the data directory ($WORK/data)"
start setup "$API_PORT" /healthz -- "$BIN/portcullis" serve --data-dir "$WORK/data" --listen "127.0.0.1:$API_PORT"
ADMIN_KEY=$(root_key "$WORK/setup.out")
stop "$STARTED"
"$BIN/portcullis" tenant create --data-dir "$WORK/data" --id bench --name Bench --output json >/dev/null
TENANT_KEY=$("$BIN/portcullis" key create --data-dir "$WORK/data" --tenant bench --name k1 \
    --environment live --scopes invoices:read,hello:read --output json |
    grep -o '"secret": *"[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/')
[[ $TENANT_KEY == sk_live_* ]] || die "could not create a tenant key with the CLI"
VERIFY_BODY="{\"key\":\"$TENANT_KEY\",\"tenant\":\"bench\",\"scopes\":[\"invoices:read\"]}"
AUTH="Authorization: Bearer $TENANT_KEY"

if [[ " ${TARGETS[*]} " == *" proxy "* || " ${TARGETS[*]} " == *" gateway"* ]]; then
    log "starting the upstream (bench-hello on core $LOAD_CORE, port $UPSTREAM_PORT), natively"
    start_on "$LOAD_CORE" upstream "$UPSTREAM_PORT" / -- \
        "$BIN/bench-hello" --listen "127.0.0.1:$UPSTREAM_PORT"
fi

# --- one measurement ------------------------------------------------------------------------
# cg_load NAME COUNT ARGS...: COUNT requests on one connection with bench-load; every one must
# be answered with the expected 2xx.
cg_load() {
    local name=$1 count=$2 line field
    shift 2
    if ! line=$(taskset -c "$LOAD_CORE" "$BIN/bench-load" --requests "$count" --connections 1 \
        --timeout 120 --label "target=$name" --label "requests_sent=$count" "$@"); then
        echo "$line" >&2
        die "bench-load failed against $name: see the message above"
    fi
    for field in "\"requests\":$count" '"non_2xx":0' '"unexpected":0' '"errors":0'; do
        [[ $line == *"$field"[,}]* ]] || die "$name: expected $field in bench-load's answer: $line"
    done
    echo "$line" >>"$RESULTS"
}

# The instruction total of a callgrind dump: its `totals:` line (the costs of all its lines,
# every thread together), else its `summary:` line.
dump_total() {
    local total
    total=$(sed -n 's/^totals: *\([0-9]*\).*/\1/p' "$1" | head -n 1)
    [[ -n $total ]] || total=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$1" | head -n 1)
    [[ -n $total ]] || die "no totals: or summary: line in $1"
    echo "$total"
}

declare -A INSTR=()
# measure NAME PORT HEALTH_PATH EXPECT ENV... -- COMMAND... -- BENCH_LOAD_ARGS...: runs COMMAND
# under callgrind (ENV, `NAME=value`, added to its environment), then the warm-up, the counted
# requests and the dump; sets INSTR[NAME] to the instructions per request.
measure() {
    local name=$1 port=$2 path=$3 expect=$4 env=() cmd=() args=() out dump before after pid
    shift 4
    while [[ $1 != -- ]]; do
        env+=("$1")
        shift
    done
    shift
    while [[ $1 != -- ]]; do
        cmd+=("$1")
        shift
    done
    shift
    args=("$@" --expect "$expect")
    out=$WORK/$name.callgrind
    log "$name: starting under callgrind (port $port)"
    start "$name" "$port" "$path" -- env "${env[@]}" "$VALGRIND" --tool=callgrind \
        --separate-threads=no --callgrind-out-file="$out" "${cmd[@]}"
    pid=$STARTED
    if [[ $name == gateway* ]]; then
        wait_ok "$name" "$pid" "$GATEWAY_PORT" / "$AUTH"
    fi
    log "$name: $CG_WARMUP warm-up requests"
    cg_load "$name-warmup" "$CG_WARMUP" "${args[@]}"
    sleep "$SETTLE"
    before=$(find "$WORK" -maxdepth 1 -name "$name.callgrind.*" | wc -l)
    "$CONTROL" -z "$pid" >"$WORK/$name.control" 2>&1 || {
        cat "$WORK/$name.control" >&2
        die "$name: callgrind_control -z $pid failed"
    }
    log "$name: $REQUESTS counted requests"
    cg_load "$name" "$REQUESTS" "${args[@]}"
    sleep "$SETTLE"
    "$CONTROL" -d "$pid" >>"$WORK/$name.control" 2>&1 || {
        cat "$WORK/$name.control" >&2
        die "$name: callgrind_control -d $pid failed"
    }
    after=$(find "$WORK" -maxdepth 1 -name "$name.callgrind.*" | wc -l)
    ((after == before + 1)) || die "$name: expected one new dump after callgrind_control -d (found $((after - before)))"
    # Dumps are numbered from 1: the one made after the zeroing is the newest.
    dump=$out.$after
    [[ -s $dump ]] || die "$name: the dump $dump is missing or empty"
    cp "$dump" "$OUT/$name.callgrind"
    stop "$pid"
    INSTR[$name]=$(dump_total "$dump")
    log "$name: ${INSTR[$name]} instructions over $REQUESTS requests: $(per_request "$name") per request"
}

per_request() { awk -v t="${INSTR[$1]}" -v n="$REQUESTS" 'BEGIN { printf "%.0f", t / n }'; }

# The instructions per request of NAME's dump spent in SHA-256's software block function (see
# the top), or "-" without callgrind_annotate.
sha_per_request() {
    [[ -n $ANNOTATE ]] || {
        echo -
        return
    }
    "$ANNOTATE" --auto=no --threshold=100 "$OUT/$1.callgrind" 2>/dev/null |
        awk -v n="$REQUESTS" '/sha2::sha256::soft::compress/ { gsub(",", "", $1); s += $1 }
            END { printf "%.0f", s / n }'
}

VERIFY_ARGS=(--url "http://127.0.0.1:$API_PORT/v1/verify" --method POST --body "$VERIFY_BODY"
    --header "Authorization: Bearer $ADMIN_KEY")
SERVE=("$BIN/portcullis" serve --data-dir "$WORK/data" --listen "127.0.0.1:$API_PORT")
GATEWAY=("$BIN/portcullis" serve --config "$WORK/portcullis.toml" --data-dir "$WORK/data")
for t in "${TARGETS[@]}"; do
    case $t in
    hello)
        measure hello "$API_PORT" / '"valid":true' -- \
            "$BIN/bench-hello" --listen "127.0.0.1:$API_PORT" -- "${VERIFY_ARGS[@]}"
        ;;
    verify)
        measure verify "$API_PORT" /healthz '"valid":true' -- "${SERVE[@]}" -- "${VERIFY_ARGS[@]}"
        ;;
    verify-noaudit)
        measure verify-noaudit "$API_PORT" /healthz '"valid":true' PORTCULLIS_AUDIT__ENABLED=false -- \
            "${SERVE[@]}" -- "${VERIFY_ARGS[@]}"
        ;;
    proxy)
        measure proxy "$PROXY_PORT" /healthz Hello -- "$BIN/bench-proxy" \
            --listen "127.0.0.1:$PROXY_PORT" --upstream "127.0.0.1:$UPSTREAM_PORT" -- \
            --url "http://127.0.0.1:$PROXY_PORT/"
        ;;
    gateway)
        measure gateway "$API_PORT" /healthz Hello -- "${GATEWAY[@]}" -- \
            --url "http://127.0.0.1:$GATEWAY_PORT/" --header "$AUTH"
        ;;
    gateway-noaudit)
        measure gateway-noaudit "$API_PORT" /healthz Hello PORTCULLIS_AUDIT__ENABLED=false -- \
            "${GATEWAY[@]}" -- --url "http://127.0.0.1:$GATEWAY_PORT/" --header "$AUTH"
        ;;
    esac
done

# --- report ---------------------------------------------------------------------------------
# ratio NAME BASE: NAME's instructions per request over BASE's, or "-" when BASE was not measured.
ratio() {
    [[ -n ${INSTR[$2]:-} ]] || {
        echo -
        return
    }
    awk -v a="${INSTR[$1]}" -v b="${INSTR[$2]}" 'BEGIN { printf "%.2f", a / b }'
}
describe() {
    case $1 in
    hello) echo "(a) axum hello-world (bench-hello), POST /v1/verify" ;;
    verify) echo "(b) portcullis POST /v1/verify, cached key, audit on" ;;
    verify-noaudit) echo "(c) portcullis POST /v1/verify, cached key, audit off" ;;
    proxy) echo "(f) bench-proxy (bare hyper proxy), GET /" ;;
    gateway) echo "(d) portcullis gateway GET /, valid key, audit on" ;;
    gateway-noaudit) echo "(e) portcullis gateway GET /, valid key, audit off" ;;
    esac
}
REPORT=$OUT.md
{
    echo "## callgrind: instructions per request, $(date -u +%Y-%m-%d)"
    echo
    echo "Command: \`bash bench/callgrind.sh\`"
    echo
    cat "$OUT/machine.md"
    echo
    echo "| target | instructions/request | ratio | of which SHA-256 in software |"
    echo "| --- | ---: | ---: | ---: |"
    for t in "${TARGETS[@]}"; do
        case $t in
        hello | verify | verify-noaudit) r="$(ratio "$t" hello) x hello" ;;
        *) r="$(ratio "$t" proxy) x bench-proxy" ;;
        esac
        echo "| $(describe "$t") | $(per_request "$t") | $r | $(sha_per_request "$t") |"
    done
} >"$REPORT"
cat "$REPORT"
echo
echo "results: $REPORT; dumps (callgrind_annotate) and bench-load lines: $OUT" >&2
