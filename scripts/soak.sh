#!/usr/bin/env bash
# Soak: mixed traffic against generation-service for SECONDS (default 480), on loopback only:
# projects, episodes (with and without Idempotency-Key, valid and invalid), paginated lists,
# generations followed over SSE (some dropped mid-stream), cancels, health and metrics scrapes,
# and slow clients. Every 30 s prints the service's RSS and open descriptors; at the end says
# whether both stayed flat over the second half (the last sample within 10% + 2 MB / 16 fds of
# the sample at half time). The first half is the warm-up: bounded caches fill then (SQLite's
# page cache per connection, the idempotency store's per-client share, the finished jobs kept
# for late subscribers, the pages of the log queue). Generations are not rate-limited here: the
# traffic comes from one address.
# Usage: scripts/soak.sh [SECONDS] [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-480}
build=${2:-build}
bin=$build/services/generation-service/generation-service
[ -x "$bin" ] || { echo "soak: build first (make)" >&2; exit 1; }

dir=$(mktemp -d /tmp/o11y-soak-XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 18999)
"$bin" --port "$port" --db "$dir/soak.db" --log-file "$dir/soak.log" --step-ms 50 --queue 256 \
    --request-head-timeout-s 5 --rate-limit-generations 0 >/dev/null 2>&1 &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
url=http://127.0.0.1:$port
for _ in $(seq 100); do curl -sf "$url/health/live" >/dev/null && break; sleep 0.05; done

end=$(( $(date +%s) + seconds ))
json='Content-Type: application/json'

crud() { # projects and episodes, good and bad, keyed and not
    local n=0
    while [ "$(date +%s)" -lt "$end" ]; do
        local p
        p=$(curl -s -XPOST "$url/projects" -H "$json" -d '{"name":"soak"}' | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
        [ -n "$p" ] || continue
        for i in 1 2 3 4 5; do
            curl -s -o /dev/null -XPOST "$url/projects/$p/episodes" -H "$json" \
                -H "Idempotency-Key: soak-$p-$i" -d "{\"number\":$i,\"title\":\"t$i\",\"content\":\"$(head -c 2000 /dev/zero | tr '\0' x)\"}"
        done
        curl -s -o /dev/null -XPOST "$url/projects/$p/episodes" -H "$json" -H "Idempotency-Key: soak-$p-1" \
            -d '{"number":1,"title":"t1"}'                                   # 422 reused
        curl -s -o /dev/null -XPOST "$url/projects/$p/episodes" -H "$json" -d '{"number":0}'   # 400
        curl -s -o /dev/null -XPOST "$url/projects/$p/episodes" -H "$json" -d '{"number":'    # 400
        curl -s -o /dev/null "$url/projects/$p/episodes?limit=2&after=1"
        curl -s -o /dev/null "$url/projects/$p/episodes?include=content"
        curl -s -o /dev/null "$url/projects/%FF/episodes"                                      # 400
        curl -s -o /dev/null "$url/no/such/route"                                              # 404
        n=$((n + 1))
    done
}

generations() { # a generation, two subscribers (one dropped early), sometimes a cancel
    local n=0
    local p e
    p=$(curl -s -XPOST "$url/projects" -H "$json" -d '{"name":"gen"}' | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
    e=$(curl -s -XPOST "$url/projects/$p/episodes" -H "$json" -d '{"number":1,"title":"g"}' | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
    while [ "$(date +%s)" -lt "$end" ]; do
        local g
        g=$(curl -s -XPOST "$url/generations" -H "$json" -d "{\"projectId\":\"$p\",\"episodeId\":\"$e\",\"prompt\":\"soak $n\"}" \
            | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
        if [ -n "$g" ]; then
            curl -s -N -o /dev/null --max-time 5 "$url/generations/$g/events" &
            curl -s -N -o /dev/null --max-time 0.1 "$url/generations/$g/events" || true
            [ $((n % 5)) -eq 0 ] && curl -s -o /dev/null -XDELETE "$url/generations/$g"
            wait
        fi
        n=$((n + 1))
    done
}

scrapes() {
    while [ "$(date +%s)" -lt "$end" ]; do
        curl -s -o /dev/null "$url/metrics"
        curl -s -o /dev/null "$url/metrics/summary"
        curl -s -o /dev/null "$url/health"
        sleep 0.5
    done
}

slow() { # clients that open a connection and trickle or say nothing
    while [ "$(date +%s)" -lt "$end" ]; do
        for _ in 1 2 3 4 5; do
            (exec 3<>/dev/tcp/127.0.0.1/"$port" && printf 'GET /health HTTP/1.1\r\nX-Slow: ' >&3 && sleep 7) 2>/dev/null &
        done
        sleep 3
    done
    wait
}

sample() {
    local rss fds
    rss=$(awk '/VmRSS/ {print $2}' /proc/"$pid"/status)
    fds=$(ls /proc/"$pid"/fd | wc -l)
    echo "$rss $fds"
}

traffic=()
for job in crud crud generations generations scrapes slow; do
    $job &
    traffic+=($!)
done
start=$(date +%s)
first=""
while [ "$(date +%s)" -lt "$end" ]; do
    sleep 30
    kill -0 "$pid" 2>/dev/null || { echo "soak: the service died" >&2; exit 1; }
    read -r rss fds < <(sample)
    t=$(( $(date +%s) - start ))
    echo "t=${t}s rss=${rss}kB fds=$fds"
    if [ -z "$first" ] && [ "$t" -ge $((seconds / 2)) ]; then first="$rss $fds"; fi
done
wait "${traffic[@]}" 2>/dev/null || true
read -r rss fds < <(sample)
if [ -n "$first" ]; then
    read -r rss0 fds0 <<<"$first"
    if [ "$rss" -le $(( rss0 + rss0 / 10 + 2048 )) ] && [ "$fds" -le $(( fds0 + 16 )) ]; then
        echo "soak: flat (rss ${rss0} -> ${rss} kB, fds ${fds0} -> ${fds})"
    else
        echo "soak: GREW (rss ${rss0} -> ${rss} kB, fds ${fds0} -> ${fds})"; exit 1
    fi
fi
lines=$(wc -l <"$dir/soak.log")
warns=$(grep -c '"level":"WARN"' "$dir/soak.log" || true)
echo "soak: $lines log lines, $warns WARN"
