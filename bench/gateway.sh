#!/usr/bin/env bash
# The gateway benchmark (docs/benchmarks.md): `bash bench/gateway.sh`
#
# `GET /` of an upstream hello-world (bench-hello, "Hello, World!") three ways, measured in the
# same run, interleaved round by round:
#   (a) direct to the upstream,
#   (b) through nginx as a plain reverse proxy (one worker process, upstream keep-alive),
#   (c) through the portcullis gateway with authentication (Bearer key, scope) and a per-key rate
#       limit, one tokio worker thread,
#   (d) through bench-proxy, a bare reverse proxy on the same HTTP stack as the gateway (axum,
#       hyper-util's pooled client) with nothing else: the floor of that stack, so the report
#       separates what portcullis' own work costs ((c)/(d)) from what the stack costs ((d)/(b)),
#   (e) portcullis as (c) with the audit log off ([audit] enabled = false), on the same data
#       directory: (c)/(e) is what recording every request costs (goal >= 0.95),
#   (f) portcullis as (e) with anomaly detection off too ([events.anomaly] enabled = false):
#       (e)/(f) is what anomaly detection costs on the request path (goal >= 0.97).
# (c) and (e) are also measured side by side (phase "side_by_side", when both are targets): both
# loaded at once, for the same seconds, sharing the server core in equal parts (each process in a
# CPU control group of its own, where the machine allows it). Runs one after the other feel the
# machine's speed drift (a virtual machine's neighbours: +-10-30 % from one run to the next);
# side by side, both feel the same drift, and (c)/(e) is the throughput each gets from the same
# share of the same core: the steadier measure of what the audit log costs.
# Placement on two cores: the proxy of (b) and (c) alone on the server core, so the two proxies'
# own work is compared, not diluted by the upstream's; the upstream and the load generator share
# the other core in (a), (b) and (c) alike, so all three have the very same upstream and client
# path, and at a fixed rate the difference to (a) is what the proxy adds (including the four
# crossings between the cores per request that any proxy on its own core costs; nginx's figure
# shows how much that is). Reported: closed-loop throughput and the ratios (c)/(b) and (c)/(a),
# then p50/p99/p99.9 at 50% of portcullis' maximum, open loop, and the added p99.
# Goals: (c) >= 0.95 x (b); p99 of (c) at most 0.2 ms above (a).
#
# nginx comes from the Debian package `nginx`; when it is missing the script installs it with
# apt-get (as root, or through passwordless sudo) and says so; when it cannot, it measures (a) and
# (c) only and says why (b) is missing (BENCH_REQUIRE_NGINX=1 makes that an error instead).
#
# Settings (environment):
#   BENCH_ROUNDS=3          interleaved rounds of each measurement
#   BENCH_DURATION=10       seconds measured per run (after BENCH_WARMUP=2 seconds of warm-up)
#   BENCH_CONNECTIONS=32    keep-alive connections of the load generator
#   BENCH_RATE_SHARE=0.5    fixed-rate runs at this share of portcullis' median max throughput
#   BENCH_SIDE_ROUNDS=N     rounds of the side-by-side phase (default: BENCH_ROUNDS; 0: none)
#   BENCH_SERVER_CORE=0     core of the proxies; BENCH_LOAD_CORE=1: upstream and load generator
#   BENCH_PORT=18180        first of nine loopback ports used (upstream, admin API, gateway, nginx,
#                           bare hyper proxy, admin API and gateway of (e), of (f))
#   BENCH_TARGETS="..."     measure only these of: direct nginx portcullis hyper noaudit noanomaly
#                           (default: all; the fixed-rate phase needs portcullis)
#   BENCH_NGINX=nginx       the nginx binary
#   BENCH_REQUIRE_NGINX=1   fail instead of skipping (b) when nginx is missing
#   BENCH_PATH=/            the path requested (bench-hello answers /bytes/N with N bytes, for
#                           answers larger than its 13-byte "Hello, World!")
#   BENCH_AUDIT="..."       settings of (c)'s [audit] table, one per line (e.g.
#                           BENCH_AUDIT="batch_linger_ms = 50"); (e) and (f) keep the audit log off
#   BENCH_SKIP_BUILD=1      use the release binaries already built
#   BENCH_KEEP=1            keep the temporary directory (configurations, logs, data directory)
set -euo pipefail

ROUNDS=${BENCH_ROUNDS:-3}
DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-2}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
RATE_SHARE=${BENCH_RATE_SHARE:-0.5}
SERVER_CORE=${BENCH_SERVER_CORE:-0}
LOAD_CORE=${BENCH_LOAD_CORE:-1}
PORT=${BENCH_PORT:-18180}
REQUEST_PATH=${BENCH_PATH:-/}
[[ $REQUEST_PATH == /* ]] || { echo "BENCH_PATH must start with /" >&2; exit 2; }
EXPECT=Hello
[[ $REQUEST_PATH == /bytes/* ]] && EXPECT=xxxx
UPSTREAM_PORT=$PORT
ADMIN_PORT=$((PORT + 1))
GATEWAY_PORT=$((PORT + 2))
NGINX_PORT=$((PORT + 3))
HYPER_PORT=$((PORT + 4))
NOAUDIT_ADMIN_PORT=$((PORT + 5))
NOAUDIT_PORT=$((PORT + 6))
NOANOMALY_ADMIN_PORT=$((PORT + 7))
NOANOMALY_PORT=$((PORT + 8))

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BENCH_SCRIPT=bench/gateway.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh

bench_preconditions
bench_binaries portcullis bench-hello bench-load bench-report bench-proxy
bench_workdirs gateway

# --- nginx: find it, or install the Debian package ------------------------------------------
# Sets NGINX to the binary (one that runs), or leaves it empty with the reason in NGINX_MISSING.
NGINX="" NGINX_MISSING=""
find_nginx() {
    local candidate
    for candidate in "${BENCH_NGINX:-nginx}" /usr/sbin/nginx; do
        if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -v >/dev/null 2>&1; then
            NGINX=$(command -v "$candidate")
            return 0
        fi
    done
    return 1
}
install_nginx() {
    local sudo=()
    if ((EUID != 0)); then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            NGINX_MISSING="nginx is not installed, and it cannot be installed here (not root, and no passwordless sudo): install the Debian package nginx (apt-get install nginx) and run again"
            return 1
        fi
    fi
    if ! command -v apt-get >/dev/null; then
        NGINX_MISSING="nginx is not installed, and apt-get is missing to install it: install nginx and run again (or set BENCH_NGINX to its binary)"
        return 1
    fi
    log "nginx is missing: installing the Debian package with: ${sudo[*]} apt-get install -y nginx"
    if ! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q nginx >"$WORK/apt.log" 2>&1; then
        log "apt-get install failed; updating the package lists (apt-get update) and trying again"
        if ! { DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -q &&
            DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q nginx; } >>"$WORK/apt.log" 2>&1; then
            tail -n 5 "$WORK/apt.log" >&2
            NGINX_MISSING="nginx is not installed, and apt-get install -y nginx failed (see the lines above)"
            return 1
        fi
    fi
    log "installed nginx ($(dpkg-query -W -f '${Version}' nginx 2>/dev/null || echo 'version unknown')); the package may also have started the system's nginx service on port 80, which this benchmark neither uses nor stops"
}
if ! find_nginx && install_nginx && ! find_nginx; then
    NGINX_MISSING="nginx is still not found after installing it"
fi
if [[ -z $NGINX ]]; then
    [[ ${BENCH_REQUIRE_NGINX:-0} != 1 ]] || die "$NGINX_MISSING"
    log "WARNING: $NGINX_MISSING. Measuring (a) direct and (c) portcullis only."
    NGINX_LINE="nginx: not available ($NGINX_MISSING)"
else
    NGINX_LINE="$("$NGINX" -v 2>&1 | sed 's/^nginx version: //') ($NGINX) with one worker process (master_process off)"
fi

bench_machine "proxies (nginx, portcullis) on core $SERVER_CORE, alone; upstream (bench-hello) and bench-load together on core $LOAD_CORE, for (a), (b) and (c) alike" \
    "portcullis, bench-proxy and bench-hello with TOKIO_WORKER_THREADS=1; $NGINX_LINE" \
    "$ROUNDS interleaved rounds, ${DURATION} s measured after ${WARMUP} s warm-up, $CONNECTIONS keep-alive connections, GET $REQUEST_PATH"

# --- the upstream ---------------------------------------------------------------------------
log "starting the upstream (bench-hello on core $LOAD_CORE, port $UPSTREAM_PORT)"
start_on "$LOAD_CORE" upstream "$UPSTREAM_PORT" / -- \
    "$BIN/bench-hello" --listen "127.0.0.1:$UPSTREAM_PORT"
UPSTREAM=$STARTED

# --- (b) nginx ------------------------------------------------------------------------------
NGINX_PID=""
if [[ -n $NGINX ]]; then
    mkdir -p "$WORK/nginx"
    # The error log is named on the command line too (-e, nginx >= 1.19.5), so nginx never opens
    # the system's log file; all temporary paths are in the work directory.
    NGINX_ARGS=(-p "$WORK/nginx/" -c "$WORK/nginx/nginx.conf")
    "$NGINX" -h 2>&1 | grep -q -- '-e filename' && NGINX_ARGS+=(-e "$WORK/nginx/error.log")
    cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
error_log $WORK/nginx/error.log warn;
pid $WORK/nginx/nginx.pid;
events {
    worker_connections 1024;
}
http {
    access_log off;
    client_body_temp_path $WORK/nginx/client_body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    # No connection is closed after a number of requests (the default is 1000), as portcullis.
    keepalive_requests 1000000;
    upstream hello {
        server 127.0.0.1:$UPSTREAM_PORT;
        keepalive 32;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://hello;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    "$NGINX" -t -q "${NGINX_ARGS[@]}" 2>"$WORK/nginx-test.err" || {
        cat "$WORK/nginx-test.err" >&2
        die "nginx refused the generated configuration ($WORK/nginx/nginx.conf; BENCH_KEEP=1 keeps it)"
    }
    log "starting nginx on core $SERVER_CORE (port $NGINX_PORT, $NGINX)"
    start nginx "$NGINX_PORT" / -- "$NGINX" "${NGINX_ARGS[@]}"
    NGINX_PID=$STARTED
else
    echo "{\"phase\":\"skipped\",\"target\":\"nginx\",\"reason\":\"$NGINX_MISSING\"}" >>"$RESULTS"
fi

# --- (c) portcullis -------------------------------------------------------------------------
# Authentication and a per-key rate limit on the route; the limit is high enough never to refuse
# (every refusal would fail the run), so what is measured is its cost, not its effect.
gateway_config "$WORK/portcullis.toml" "$ADMIN_PORT" "$GATEWAY_PORT" "$UPSTREAM_PORT"
if [[ -n ${BENCH_AUDIT:-} ]]; then
    printf '\n[audit]\n%s\n' "$BENCH_AUDIT" >>"$WORK/portcullis.toml"
fi
log "starting portcullis on core $SERVER_CORE (admin port $ADMIN_PORT, gateway port $GATEWAY_PORT)"
start portcullis "$ADMIN_PORT" /healthz -- \
    "$BIN/portcullis" serve --config "$WORK/portcullis.toml" --data-dir "$WORK/data"
PORTCULLIS=$STARTED
"$BIN/portcullis" tenant create --data-dir "$WORK/data" --id bench --name Bench --output json >/dev/null
KEY=$("$BIN/portcullis" key create --data-dir "$WORK/data" --tenant bench --name k1 \
    --environment live --scopes hello:read --output json |
    grep -o '"secret": *"[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/')
[[ $KEY == sk_live_* ]] || die "could not create a tenant key with the CLI"
AUTH="Authorization: Bearer $KEY"
wait_ok portcullis "$PORTCULLIS" "$GATEWAY_PORT" / "$AUTH"
if http_ok "$GATEWAY_PORT" /; then
    die "the gateway answered 200 without a key: authentication is not on"
fi

# --- (e) portcullis without the audit log ---------------------------------------------------
sed -e "s/127.0.0.1:$ADMIN_PORT/127.0.0.1:$NOAUDIT_ADMIN_PORT/" \
    -e "s/127.0.0.1:$GATEWAY_PORT/127.0.0.1:$NOAUDIT_PORT/" -e '/^\[audit\]$/,$d' \
    "$WORK/portcullis.toml" >"$WORK/portcullis-noaudit.toml"
printf '\n[audit]\nenabled = false\n' >>"$WORK/portcullis-noaudit.toml"
log "starting portcullis without the audit log on core $SERVER_CORE (gateway port $NOAUDIT_PORT)"
start portcullis-noaudit "$NOAUDIT_ADMIN_PORT" /healthz -- \
    "$BIN/portcullis" serve --config "$WORK/portcullis-noaudit.toml" --data-dir "$WORK/data"
NOAUDIT=$STARTED
wait_ok portcullis-noaudit "$NOAUDIT" "$NOAUDIT_PORT" / "$AUTH"

# --- (f) portcullis without the audit log and without anomaly detection --------------------
sed -e "s/127.0.0.1:$NOAUDIT_ADMIN_PORT/127.0.0.1:$NOANOMALY_ADMIN_PORT/" \
    -e "s/127.0.0.1:$NOAUDIT_PORT/127.0.0.1:$NOANOMALY_PORT/" "$WORK/portcullis-noaudit.toml" >"$WORK/portcullis-noanomaly.toml"
printf '\n[events.anomaly]\nenabled = false\n' >>"$WORK/portcullis-noanomaly.toml"
log "starting portcullis without the audit log and anomaly detection on core $SERVER_CORE (gateway port $NOANOMALY_PORT)"
start portcullis-noanomaly "$NOANOMALY_ADMIN_PORT" /healthz -- \
    "$BIN/portcullis" serve --config "$WORK/portcullis-noanomaly.toml" --data-dir "$WORK/data"
NOANOMALY=$STARTED
wait_ok portcullis-noanomaly "$NOANOMALY" "$NOANOMALY_PORT" / "$AUTH"

# --- (d) the bare hyper proxy ----------------------------------------------------------------
log "starting bench-proxy on core $SERVER_CORE (port $HYPER_PORT)"
start bench-proxy "$HYPER_PORT" /healthz -- \
    "$BIN/bench-proxy" --listen "127.0.0.1:$HYPER_PORT" --upstream "127.0.0.1:$UPSTREAM_PORT"
HYPER=$STARTED

# --- the runs -------------------------------------------------------------------------------
TARGETS=(direct)
[[ -n $NGINX_PID ]] && TARGETS+=(nginx)
TARGETS+=(portcullis hyper noaudit noanomaly)
if [[ -n ${BENCH_TARGETS:-} ]]; then
    CHOSEN=()
    for t in "${TARGETS[@]}"; do
        [[ " $BENCH_TARGETS " == *" $t "* ]] && CHOSEN+=("$t")
    done
    TARGETS=("${CHOSEN[@]}")
    ((${#TARGETS[@]} > 0)) || die "BENCH_TARGETS names none of the available targets"
fi

# Every answer must be 2xx with "Hello" in the body ("xxxx" for /bytes/N; bench-load --expect);
# otherwise the run fails.
run_target() { # phase target round [bench-load args...]
    local phase=$1 target=$2 round=$3
    shift 3
    local extra=()
    case $target in
    direct) extra=(--url "http://127.0.0.1:$UPSTREAM_PORT$REQUEST_PATH") ;;
    nginx) extra=(--url "http://127.0.0.1:$NGINX_PORT$REQUEST_PATH" --server-pid "$NGINX_PID") ;;
    portcullis) extra=(--url "http://127.0.0.1:$GATEWAY_PORT$REQUEST_PATH" --server-pid "$PORTCULLIS" --header "$AUTH") ;;
    hyper) extra=(--url "http://127.0.0.1:$HYPER_PORT$REQUEST_PATH" --server-pid "$HYPER") ;;
    noaudit) extra=(--url "http://127.0.0.1:$NOAUDIT_PORT$REQUEST_PATH" --server-pid "$NOAUDIT" --header "$AUTH") ;;
    noanomaly) extra=(--url "http://127.0.0.1:$NOANOMALY_PORT$REQUEST_PATH" --server-pid "$NOANOMALY" --header "$AUTH") ;;
    esac
    load "phase=$phase" "target=$target" "round=$round" -- "$@" "${extra[@]}" \
        --upstream-pid "$UPSTREAM" --expect "$EXPECT"
}

# Round r starts with target number r-1 (mod the number of targets) and keeps the order, so the
# targets take turns at running first.
interleaved() { # phase [bench-load args...]
    local phase=$1 r i n=${#TARGETS[@]}
    shift
    for ((r = 1; r <= ROUNDS; r++)); do
        log "$phase round $r/$ROUNDS"
        for ((i = 0; i < n; i++)); do
            run_target "$phase" "${TARGETS[(r - 1 + i) % n]}" "$r" "$@"
        done
    done
}

interleaved throughput

# --- (c) and (e) side by side ---------------------------------------------------------------
SIDE_ROUNDS=${BENCH_SIDE_ROUNDS:-$ROUNDS}
if [[ " ${TARGETS[*]} " == *" portcullis "* && " ${TARGETS[*]} " == *" noaudit "* ]] &&
    ((SIDE_ROUNDS > 0)); then
    if own_cpu_group c "$PORTCULLIS" && own_cpu_group e "$NOAUDIT"; then
        log "side by side: (c) and (e) in CPU control groups of equal weight"
        SIDE_SHARES=cgroups
    else
        # Both or neither: (c) alone in a group would get half the core against (e)'s threads.
        leave_cpu_group "$PORTCULLIS"
        log "WARNING: no CPU control groups here (not root, or no cpu controller): side by side, (c) and (e) share the core by the scheduler's fairness between threads, which favours the process with more busy threads, (c); compare their CPU time per request instead"
        SIDE_SHARES=threads
    fi
    echo "{\"phase\":\"side_by_side_setup\",\"shares\":\"$SIDE_SHARES\"}" >>"$RESULTS"
    for ((r = 1; r <= SIDE_ROUNDS; r++)); do
        log "side_by_side round $r/$SIDE_ROUNDS"
        run_target side_by_side portcullis "$r" &
        side_c=$!
        run_target side_by_side noaudit "$r" &
        side_e=$!
        wait "$side_c" || die "the side-by-side run of (c) failed"
        wait "$side_e" || die "the side-by-side run of (e) failed"
    done
fi

if [[ " ${TARGETS[*]} " != *" portcullis "* ]]; then
    log "portcullis (c) not among the targets: no fixed-rate phase"
else
MAX_RPS=$(median_rps '"phase":"throughput"' '"target":"portcullis"')
RATE=$(awk -v m="$MAX_RPS" -v s="$RATE_SHARE" 'BEGIN { printf "%.0f", m * s }')
log "fixed rate: $RATE req/s ($RATE_SHARE of portcullis' median $MAX_RPS req/s) for all"
interleaved fixed_rate --rate "$RATE"
fi

# --- report ---------------------------------------------------------------------------------
{
    echo "## gateway benchmark, $(date -u +%Y-%m-%d)"
    echo
    echo "Command: \`bash bench/gateway.sh\`"
    echo
    cat "$OUT/machine.md"
    echo
    "$BIN/bench-report" --gateway "$RESULTS"
} >"$OUT/summary.md"
cp "$WORK/portcullis.toml" "$WORK/portcullis-noaudit.toml" "$WORK/portcullis-noanomaly.toml" "$OUT/"
[[ -f $WORK/nginx/nginx.conf ]] && cp "$WORK/nginx/nginx.conf" "$OUT/"
cat "$OUT/summary.md"
echo
echo "results: $OUT (runs.jsonl, summary.md, the proxies' configurations)" >&2
