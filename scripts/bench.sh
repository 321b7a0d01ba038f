#!/usr/bin/env bash
# make bench: prints the figures the README quotes. Loopback only, bounded in time.
#   scripts/bench.sh BUILD_DIR
set -euo pipefail
build=${1:-build}
bin=$build/bench
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 - <<'PY' 2>/dev/null || echo $((20000 + RANDOM % 20000))
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

wait_port() {
    for _ in $(seq 1 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "bench: server on port $1 did not start" >&2
    return 1
}

echo "== log line (bench_log)"
"$bin/bench_log" 1000000

echo "== log line, instructions (callgrind, 20000 lines)"
valgrind --tool=callgrind --callgrind-out-file="$work/cg.log" \
    --toggle-collect=bench_access_line "$bin/bench_log" 20000 --callgrind >/dev/null 2>&1
ir=$(callgrind_annotate "$work/cg.log" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')
echo "instructions per access line (format + enqueue): $((ir / 20000))"

echo "== metrics (bench_metrics)"
"$bin/bench_metrics"
valgrind --tool=callgrind --callgrind-out-file="$work/cgm" --toggle-collect=bench_observe \
    "$bin/bench_metrics" --callgrind >/dev/null 2>&1
ir=$(callgrind_annotate "$work/cgm" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')
echo "instructions per histogram observe: $((ir / 100000))"

echo "== idempotency stores (bench_idempotency, with a redis-server on a free loopback port)"
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
pids+=($!)
wait_port "$redis_port"
"$bin/bench_idempotency" "$redis_port"

echo "== Server-Sent Events (bench_sse, generation-service on a free loopback port)"
"$bin/bench_sse"
echo "== waiting streams: suspend/resume vs a blocking reader per thread (bench_stream_modes)"
"$bin/bench_stream_modes" 1000

threads=${BENCH_THREADS:-1}
duration=${BENCH_SECONDS:-5}
conns=${BENCH_CONNECTIONS:-50}
echo "== middleware: the same GET, libmicrohttpd bare vs wrapped by o11y (wrk -t1 -c$conns -d${duration}s, server threads $threads)"
# A middleware server in the background: PROGRAM MODE PORT [ARGS...] (bench_server takes the
# thread count then the log file, bench_h2o the log file).
start_bench() {
    local prog=$1 mode=$2 port=$3
    shift 3
    "$prog" "$mode" "$port" "$@" >/dev/null 2>&1 &
    pids+=($!)
    wait_port "$port"
}
rps() { wrk -t1 -c"$conns" -d"${duration}s" "http://127.0.0.1:$1/projects/proj_1" | awk '/Requests\/sec/ {print $2}'; }
median() { printf '%s\n' "$@" | sort -g | sed -n 2p; }
# PROGRAM bare, wrapped and wrapped without the access line, side by side, wrk rounds
# interleaved so all three see the same machine. The servers are left running (pids);
# quiet_port is the third one's.
#   compare_middleware NAME PROGRAM [ARGS BEFORE THE LOG FILE...]
compare_middleware() {
    local name=$1 prog=$2 bare_port wrap_port
    shift 2
    bare_port=$(free_port); start_bench "$prog" bare "$bare_port" "$@"
    wrap_port=$(free_port); start_bench "$prog" wrapped "$wrap_port" "$@" "$work/$name-access.log"
    quiet_port=$(free_port); start_bench "$prog" quiet "$quiet_port" "$@" "$work/$name-quiet.log"
    local -a bare_r wrap_r quiet_r
    for round in 1 2 3; do
        bare_r+=("$(rps "$bare_port")")
        wrap_r+=("$(rps "$wrap_port")")
        quiet_r+=("$(rps "$quiet_port")")
    done
    local b w q
    b=$(median "${bare_r[@]}"); w=$(median "${wrap_r[@]}"); q=$(median "${quiet_r[@]}")
    echo "$name bare:                ${bare_r[*]} req/s (median $b)"
    echo "wrapped, access log on:  ${wrap_r[*]} req/s (median $w), lines: $(wc -l < "$work/$name-access.log")"
    echo "wrapped, access log off: ${quiet_r[*]} req/s (median $q)"
    awk -v b="$b" -v w="$w" -v q="$q" \
        'BEGIN { printf "wrapped / bare = %.3f (log on), %.3f (log off)\n", w / b, q / b }'
}
# Instructions per request (callgrind): the difference of 3000 and 1000 requests, per request.
#   count_ir REQUESTS PROGRAM MODE [ARGS BEFORE THE LOG FILE...]
count_ir() {
    local n=$1 prog=$2 mode=$3 port pid
    shift 3
    port=$(free_port)
    valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" \
        "$prog" "$mode" "$port" "$@" "$work/cg-access.log" >/dev/null 2>&1 &
    pid=$!
    wait_port "$port"
    curl -s -o /dev/null "http://127.0.0.1:$port/projects/p[1-$n]"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    callgrind_annotate "$work/cg.$pid" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}'
}
#   ir_added NAME PROGRAM [ARGS BEFORE THE LOG FILE...]: bare, wrapped, and the difference
ir_added() {
    local name=$1 prog=$2 mode lo hi bare_ir=0 per
    shift 2
    for mode in bare wrapped; do
        lo=$(count_ir 1000 "$prog" "$mode" "$@"); hi=$(count_ir 3000 "$prog" "$mode" "$@")
        per=$(( (hi - lo) / 2000 ))
        echo "$mode: $per instructions per request"
        if [ "$mode" = bare ]; then bare_ir=$per; fi
    done
    echo "added by o11y on $name: $((per - bare_ir)) instructions per request"
}
compare_middleware libmicrohttpd "$bin/bench_server" "$threads"
echo "== /health from cached results vs a plain handler on the same server (wrk, same settings)"
rps_path() { wrk -t1 -c"$conns" -d"${duration}s" "http://127.0.0.1:$1$2" | awk '/Requests\/sec/ {print $2}'; }
declare -a plain_r health_r
for round in 1 2 3; do
    plain_r+=("$(rps_path "$quiet_port" /projects/proj_1)")
    health_r+=("$(rps_path "$quiet_port" /health)")
done
p=$(median "${plain_r[@]}"); h=$(median "${health_r[@]}")
echo "plain handler: ${plain_r[*]} req/s (median $p)"
echo "/health:       ${health_r[*]} req/s (median $h)"
awk -v p="$p" -v h="$h" 'BEGIN { printf "/health / plain = %.3f\n", h / p }'
for p in "${pids[@]}"; do kill "$p"; done
wait 2>/dev/null || true
pids=()

echo "== middleware, instructions per request (callgrind, difference of 3000 and 1000 requests)"
ir_added libmicrohttpd "$bin/bench_server" 1

echo "== rate limiting: the memory store's decisions, the Redis store's round trips (bench_ratelimit)"
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
pids+=($!)
wait_port "$redis_port"
"$bin/bench_ratelimit" "$redis_port"

echo "== a limited route vs the same route unlimited: generation-service, GET /projects/{id} (wrk, interleaved)"
svc=$build/services/generation-service/generation-service
start_gs() { # port extra-args...
    local port=$1; shift
    "$svc" --port "$port" --db "$work/rl-$port.db" --log-file "$work/rl-$port.log" \
        --threads "$threads" "$@" >/dev/null 2>&1 &
    pids+=($!)
    wait_port "$port"
}
free_p=$(free_port); start_gs "$free_p" --rate-limit-generations 0
mem_p=$(free_port); start_gs "$mem_p" --rate-limit-all 1000000/86400
red_p=$(free_port); start_gs "$red_p" --rate-limit-all 1000000/86400 --rate-limit-store redis \
    --redis "127.0.0.1:$redis_port"
declare -a free_r mem_r red_r
for round in 1 2 3; do
    free_r+=("$(rps_path "$free_p" /projects/proj_1)")
    mem_r+=("$(rps_path "$mem_p" /projects/proj_1)")
    red_r+=("$(rps_path "$red_p" /projects/proj_1)")
done
f=$(median "${free_r[@]}"); m=$(median "${mem_r[@]}"); r=$(median "${red_r[@]}")
echo "unlimited:        ${free_r[*]} req/s (median $f)"
echo "limited (memory): ${mem_r[*]} req/s (median $m)"
echo "limited (redis):  ${red_r[*]} req/s (median $r)"
awk -v f="$f" -v m="$m" -v r="$r" \
    'BEGIN { printf "limited / unlimited = %.3f (memory), %.3f (redis)\n", m / f, r / f }'

echo "== o11y-trace: scanning 1 GiB of log lines (cached) for one trace, vs grep -F on the same file"
logs=$work/trace-bench.log
"$bin/bench_trace_logs" "$logs" 1024 bench-target-trace
cat "$logs" >/dev/null # into the page cache: both read it from memory
tool=$build/tools/o11y-trace/o11y-trace
seconds() { /usr/bin/time -f %e "$@" 2>&1 >/dev/null | tail -1; }
declare -a ot_r grep_r
for round in 1 2 3; do
    ot_r+=("$(seconds "$tool" --json bench-target-trace "$logs")")
    # grep must write its lines somewhere real: with stdout on /dev/null it stops at the first.
    grep_r+=("$( { /usr/bin/time -f %e grep -F bench-target-trace "$logs" >"$work/grep.out"; } 2>&1)")
done
o=$(median "${ot_r[@]}"); g=$(median "${grep_r[@]}")
echo "o11y-trace: ${ot_r[*]} s (median $o); grep -F: ${grep_r[*]} s (median $g)"
awk -v o="$o" -v g="$g" 'BEGIN { printf "o11y-trace %.1f GB/s, grep -F %.1f GB/s (1 GiB = 1.074 GB)\n", 1.074 / o, 1.074 / g }'
rm -f "$logs"

echo "== client kit: o11y_client_call vs plain libcurl, the same GET on one kept-alive loopback connection (bench_client)"
"$bin/bench_client" 20000

echo "== the TypeScript kit and the console: bundle sizes (esbuild --minify, then gzip -9)"
ts=clients/typescript
if [ -x "$ts/node_modules/.bin/esbuild" ]; then
    "$ts/node_modules/.bin/esbuild" "$ts/src/index.ts" --bundle --minify --format=esm \
        --target=es2022 --log-level=error --outfile="$work/kit.js"
    "$ts/node_modules/.bin/esbuild" "$ts/console/main.ts" --bundle --minify --format=esm \
        --target=es2022 --log-level=error --outfile="$work/console.js"
    for f in kit console; do
        printf '%-8s %6d bytes minified, %6d gzip\n' "$f" "$(wc -c <"$work/$f.js")" \
            "$(gzip -9 -c "$work/$f.js" | wc -c)"
    done
else
    echo "(npm ci in clients/typescript first)"
fi

echo "== the console in Chromium vs curl: from the click (or the POST) to the first progress event"
if [ -x /usr/bin/chromium ] && [ -f "$build/console/console.js" ]; then
    node bench/console_latency.mjs "$build/services/generation-service/generation-service" "$build/console"
else
    echo "(needs chromium and the built console: scripts/deps.sh test, then make)"
fi

echo "== generation-service on libmicrohttpd vs h2o, one server thread each (wrk -t1 -c50 -d4s, interleaved)"
# (--help read whole first: grep -q would stop reading early, and under pipefail the writer's
# SIGPIPE would fail the test)
gs_help=$("$build/services/generation-service/generation-service" --help 2>&1 || true)
if [[ $gs_help == *h2o* ]]; then
    for round in 1 2; do
        for srv in mhd h2o; do
            port=$(free_port)
            "$build/services/generation-service/generation-service" --server "$srv" --port "$port" \
                --db "$work/adapters-$srv.db" --log-file "$work/adapters-$srv.log" --threads 1 \
                --rate-limit-generations 0 &
            pid=$!
            wait_port "$port"
            printf '%s round %d: ' "$srv" "$round"
            wrk -t1 -c50 -d4s "http://127.0.0.1:$port/projects/proj_00000000000000000000000000000000" \
                | awk '/Requests\/sec/ {print $2 " requests/s"}'
            kill "$pid"; wait "$pid" 2>/dev/null || true
        done
    done
    echo "== h2o: HTTP/2 (h2c, 1 connection x 100 streams) vs HTTP/1.1 (100 connections), h2load"
    port=$(free_port)
    "$build/services/generation-service/generation-service" --server h2o --port "$port" \
        --db "$work/h2.db" --log-file "$work/h2.log" --threads 1 --rate-limit-generations 0 \
        --step-ms 1 &
    pid=$!
    wait_port "$port"
    h2rps() { h2load "$@" | awk '/^finished in/ {gsub(",", ""); print $4 " req/s"}'; }
    echo "h2c, 1 connection, 100 streams: $(h2rps -n 100000 -c 1 -m 100 "http://127.0.0.1:$port/health/live")"
    echo "h2c, 10 connections x 10:       $(h2rps -n 100000 -c 10 -m 10 "http://127.0.0.1:$port/health/live")"
    echo "HTTP/1.1, 100 connections:      $(h2rps --h1 -n 100000 -c 100 -m 1 "http://127.0.0.1:$port/health/live")"
    echo "== h2o: SSE to 1,000 subscribers (a finished generation's events replayed), h2 over 10 connections vs HTTP/1.1"
    api="http://127.0.0.1:$port"
    json_id() { python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'; }
    proj=$(curl -s -X POST "$api/projects" -H 'Content-Type: application/json' -d '{"name":"bench"}' | json_id)
    ep=$(curl -s -X POST "$api/projects/$proj/episodes" -H 'Content-Type: application/json' \
        -d '{"number":1,"title":"bench"}' | json_id)
    gen=$(curl -s -X POST "$api/generations" -H 'Content-Type: application/json' \
        -d "{\"projectId\":\"$proj\",\"episodeId\":\"$ep\",\"prompt\":\"x\"}" | json_id)
    curl -s -N --max-time 10 "$api/generations/$gen/events" >"$work/events.txt" # to its end
    per=$(grep -c '^data:' "$work/events.txt")
    sse() { # h2load args...: events/s = streams/s x events per stream
        h2load "$@" "$api/generations/$gen/events" | awk -v per="$per" \
            '/^finished in/ {gsub(",", ""); rps=$4; t=$3} /^requests:/ {n=$8}
             END { printf "%d streams x %d events in %s: %.0f events/s\n", n, per, t, rps*per }'
    }
    echo "h2c, 10 connections x 100 streams: $(sse -n 1000 -c 10 -m 100)"
    echo "HTTP/1.1, 1000 connections:        $(sse --h1 -n 1000 -c 1000 -m 1)"
    kill "$pid"; wait "$pid" 2>/dev/null || true
fi

if [ -x "$bin/bench_h2o" ]; then
    echo "== middleware on h2o: the same GET, h2o bare vs wrapped by o11y (wrk -t1 -c$conns -d${duration}s, one loop, interleaved)"
    compare_middleware h2o "$bin/bench_h2o"
    for p in "${pids[@]}"; do kill "$p"; done
    wait 2>/dev/null || true
    pids=()
    echo "== middleware on h2o, instructions per request (callgrind, difference of 3000 and 1000 requests)"
    ir_added h2o "$bin/bench_h2o"
fi
