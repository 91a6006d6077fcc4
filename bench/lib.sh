# shellcheck shell=bash
# Shell functions shared by the benchmark scripts (bench/verify.sh, bench/gateway.sh). Sourced from
# the repository root, never run on its own.
#
# The sourcing script sets BENCH_SCRIPT (its name, for messages) and SERVER_CORE, LOAD_CORE,
# DURATION, WARMUP and CONNECTIONS, then calls, in this order:
#   bench_preconditions          taskset, cargo, two cores that can be pinned
#   bench_binaries NAME...       builds (unless BENCH_SKIP_BUILD=1) and sets BIN
#   bench_workdirs NAME          sets WORK (temporary), OUT (bench-results/NAME-<UTC>), RESULTS
#                                (OUT/runs.jsonl), PIDS, and the cleanup trap
#   bench_machine LINE...        writes OUT/machine.md (the machine, the run's settings and LINEs)
# and uses the other functions below.

ROOT_DIR=$(pwd)

die() {
    echo "$BENCH_SCRIPT: $*" >&2
    exit 1
}
log() { echo "== $*" >&2; }

bench_preconditions() {
    command -v taskset >/dev/null || die "taskset is missing (package util-linux); it pins the server and the load generator to their cores"
    command -v cargo >/dev/null || die "cargo is missing"
    CORES=$(nproc --all 2>/dev/null || nproc)
    ((CORES >= 2)) || die "needs at least 2 cores (found $CORES): one for the server, one for the load generator"
    ((SERVER_CORE != LOAD_CORE)) || die "BENCH_SERVER_CORE and BENCH_LOAD_CORE must differ"
    taskset -c "$SERVER_CORE,$LOAD_CORE" true 2>/dev/null || die "cannot pin to cores $SERVER_CORE and $LOAD_CORE"
}

bench_binaries() {
    if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
        log "building release binaries"
        cargo build --release --quiet -p portcullis-bench -p portcullis
    fi
    BIN=${CARGO_TARGET_DIR:-$ROOT_DIR/target}/release
    local b
    for b in "$@"; do
        [[ -x $BIN/$b ]] || die "$BIN/$b is missing (build with: cargo build --release -p portcullis-bench -p portcullis)"
    done
}

bench_workdirs() {
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-bench.XXXXXX")
    OUT=$ROOT_DIR/bench-results/$1-$(date -u +%Y%m%dT%H%M%SZ)
    mkdir -p "$OUT"
    RESULTS=$OUT/runs.jsonl
    : >"$RESULTS"
    PIDS=()
    CGROUPS=()
    declare -gA CGROUP_ORIGIN=()
    trap cleanup EXIT
    trap 'exit 130' INT TERM
}

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    local group
    for group in "${CGROUPS[@]}"; do
        rmdir "$group" 2>/dev/null || true
    done
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
        echo "kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}

# http_ok PORT PATH [HEADER]: the status line of GET PATH on 127.0.0.1:PORT (with the request
# header HEADER, `Name: value`, if given) is 200.
http_ok() {
    local status extra=""
    [[ -n ${3:-} ]] && extra="$3"$'\r\n'
    status=$({
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf 'GET %s HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n%s\r\n' "$2" "$extra" >&3
        head -c 12 <&3
    } 2>/dev/null) || return 1
    [[ $status == "HTTP/1.1 200" ]]
}

port_free() {
    ! ({ exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null)
}

# wait_ok NAME PID PORT PATH [HEADER]: waits up to WAIT_SECONDS (default 30) seconds until
# http_ok PORT PATH [HEADER]; dies with NAME's log if the process PID exits or the time runs out.
wait_ok() {
    local name=$1 pid=$2 port=$3 path=$4 header=${5:-} i
    for ((i = 0; i < ${WAIT_SECONDS:-30} * 10; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            cat "$WORK/$name.out" "$WORK/$name.err" >&2
            die "$name exited during start-up"
        fi
        http_ok "$port" "$path" "$header" && return 0
        sleep 0.1
    done
    cat "$WORK/$name.err" >&2
    die "$name did not answer GET $path on port $port with 200 within ${WAIT_SECONDS:-30} s"
}

# start_on CORE NAME PORT HEALTH_PATH -- COMMAND...: starts COMMAND pinned to CORE with one tokio
# worker, logs to $WORK/NAME.{out,err}, waits until GET HEALTH_PATH answers 200; the pid is left
# in $STARTED.
start_on() {
    local core=$1 name=$2 port=$3 path=$4
    shift 5
    port_free "$port" || die "port $port is already in use (set BENCH_PORT)"
    TOKIO_WORKER_THREADS=1 taskset -c "$core" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    STARTED=$!
    PIDS+=("$STARTED")
    wait_ok "$name" "$STARTED" "$port" "$path"
}

# start NAME PORT HEALTH_PATH -- COMMAND...: start_on the server core.
start() { start_on "$SERVER_CORE" "$@"; }

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

# own_cpu_group NAME PID: moves process PID (all its threads, and those it starts later) into a
# CPU control group of its own with the default weight, so that processes run side by side on
# one core get equal shares of it when all are busy (without groups the scheduler shares the core
# between threads, and a process with more busy threads would get more of it). cgroup v2 where
# its cpu controller is enabled, else v1's cpu hierarchy; needs write access to it (root).
# Returns 1, changing nothing, where neither can be used. leave_cpu_group PID moves it back.
own_cpu_group() {
    local name=$1 pid=$2 base group origin
    if [[ -w /sys/fs/cgroup/cgroup.subtree_control ]] &&
        grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null; then
        base=/sys/fs/cgroup
        origin=$(sed -n 's/^0:://p' "/proc/$pid/cgroup")
    elif [[ -d /sys/fs/cgroup/cpu && -w /sys/fs/cgroup/cpu ]]; then
        base=/sys/fs/cgroup/cpu
        origin=$(sed -n 's/^[0-9]*:\([^:]*,\)\{0,1\}cpu\(,[^:]*\)\{0,1\}://p' "/proc/$pid/cgroup")
    else
        return 1
    fi
    [[ -n $origin && -w $base$origin/cgroup.procs ]] || return 1
    group=$base/portcullis-bench-$$-$name
    mkdir "$group" 2>/dev/null || return 1
    CGROUPS+=("$group")
    echo "$pid" >"$group/cgroup.procs" 2>/dev/null || return 1
    CGROUP_ORIGIN[$pid]=$base$origin
}

leave_cpu_group() {
    local pid=$1
    [[ -n ${CGROUP_ORIGIN[$pid]:-} ]] || return 0
    echo "$pid" >"${CGROUP_ORIGIN[$pid]}/cgroup.procs" 2>/dev/null || true
    unset "CGROUP_ORIGIN[$pid]"
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

# bench_machine LINE...: the machine and the run's settings to $OUT/machine.md (and stderr), each
# LINE added as a list item; warns when the machine is busy.
bench_machine() {
    local cpu_model busy line
    cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//' || echo unknown)
    busy=$(busy_percent)
    {
        echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
        echo "- machine: $CORES cores ($(nproc) usable), $cpu_model, Linux $(uname -r), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
        echo "- $(rustc --version 2>/dev/null || echo 'rustc unknown')"
        for line in "$@"; do
            echo "- $line"
        done
        echo "- CPU busy before the run (both cores, 1 s): ${busy}%"
    } >"$OUT/machine.md"
    cat "$OUT/machine.md" >&2
    ((busy < 15)) || log "WARNING: the machine is not idle (${busy}% busy): figures will be noisy"
}

# gateway_config FILE API_PORT GATEWAY_PORT UPSTREAM_PORT: the configuration of the gateway
# benchmarks: one route to the upstream needing a key with `hello:read`, under a per-key rate limit
# high enough never to refuse (so what is measured is its cost, not its effect).
gateway_config() {
    cat >"$1" <<EOF
listen = "127.0.0.1:$2"

[gateway]
listen = "127.0.0.1:$3"

[gateway.upstreams.main]
url = "http://127.0.0.1:$4"

[gateway.policies.bench]
requests = 1000000
per_seconds = 1
burst = 1000000

[[gateway.routes]]
name = "hello"
path_prefix = "/"
upstream = "main"
scopes = ["hello:read"]
rate_limit = "bench"
EOF
}
