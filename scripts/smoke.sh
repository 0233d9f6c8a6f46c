#!/bin/sh
# smoke.sh: an end-to-end check of the other scripts against a real broker.
# It starts a broker on a free port of 127.0.0.1, drives it only through
# publish.sh, binary-publish.sh, pull.sh and subscribe.sh (and, if curl is
# there, fetches the broker's metrics), prints a PASS or FAIL line per
# check, and exits 1 if any failed. The broker, the background
# subscribers and the temporary files go away however it ends.
#
# The broker is $BROOK_BIN if set, else the release build (it runs
# `cargo build --release` first).
#
#   $ scripts/smoke.sh
#   PASS broker listening on 127.0.0.1:41023
#   PASS publish.sh prints an offset per message
#   ...
set -eu
case $0 in */*) here=${0%/*} ;; *) here=. ;; esac
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

# ---- Cleanup, whatever happens. ----

tmp=${TMPDIR:-/tmp}/brook-smoke.$$
broker_pid=
subscriber_pids=

cleanup() {
    for pid in $subscriber_pids $broker_pid; do
        kill "$pid" 2>/dev/null || :
        wait "$pid" 2>/dev/null || :
    done
    rm -f "$tmp".*
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# ---- Helpers. ----

# pause: the step of every polling loop (a tenth of a second where sleep
# takes fractions, as GNU's and busybox's do; else a second).
pause() {
    sleep 0.1 2>/dev/null || sleep 1
}

# slurp FILE: prints FILE's content, without a trailing newline.
slurp() {
    content=
    while IFS= read -r line || [ -n "$line" ]; do
        content=$content$line$nl
    done <"$1"
    printf '%s' "${content%"$nl"}"
}

# wait_for FILE TEXT: waits until FILE holds TEXT, for up to 10 seconds
# (then the check that follows fails and shows what it holds).
wait_for() {
    tries=0
    while [ "$(slurp "$1")" != "$2" ] && [ "$tries" -lt 100 ]; do
        pause
        tries=$((tries + 1))
    done
}

# run SCRIPT ARG...: runs one of the scripts and sets $result to its exit
# status, stdout and stderr, in this form:
#   exit 0
#   <stdout lines>
#   stderr: <stderr lines>
run() {
    script=$1
    shift
    status=0
    out=$(sh "$here/$script" "$@" 2>"$tmp.err") || status=$?
    err=$(slurp "$tmp.err")
    result="exit $status"
    [ -z "$out" ] || result=$result$nl$out
    [ -z "$err" ] || result="${result}${nl}stderr: $err"
}

passed=0
failed=0

# check NAME EXPECTED ACTUAL: prints PASS NAME, or FAIL NAME with both.
check() {
    if [ "$2" = "$3" ]; then
        printf 'PASS %s\n' "$1"
        passed=$((passed + 1))
    else
        printf 'FAIL %s\n--- expected:\n%s\n--- got:\n%s\n---\n' "$1" "$2" "$3"
        failed=$((failed + 1))
    fi
}

# ---- The broker. ----

if [ -n "${BROOK_BIN-}" ]; then
    bin=$BROOK_BIN
else
    (cd "$here/.." && cargo build --release --quiet) || die "cargo build --release failed"
    bin=${CARGO_TARGET_DIR:-$here/../target}/release/brook
fi

set -C # no clobbering: fail if a file of that name is already there
: >"$tmp.log"
set +C

# Port 0: the system picks a free port, and the broker logs it at start-up
# (the metrics' port too, on a line before):
#   [... INFO  brook::metrics] metrics served at http://127.0.0.1:40117/metrics
#   [... INFO  brook] brook listening on 127.0.0.1:41023 (in-memory topics; ...
RUST_LOG=info "$bin" --addr 127.0.0.1:0 --metrics-addr 127.0.0.1:0 --in-memory >"$tmp.log" 2>&1 &
broker_pid=$!

port=
tries=0
while [ -z "$port" ]; do
    while IFS= read -r line; do
        case $line in
        *'listening on 127.0.0.1:'*)
            port=${line#*listening on 127.0.0.1:}
            port=${port%%[!0-9]*}
            break
            ;;
        esac
    done <"$tmp.log"
    [ -n "$port" ] && break
    kill -0 "$broker_pid" 2>/dev/null || die "the broker exited: $(slurp "$tmp.log")"
    [ "$tries" -lt 100 ] || die "no 'listening on' line from the broker in 10 s: $(slurp "$tmp.log")"
    tries=$((tries + 1))
    pause
done
BROOK_HOST=127.0.0.1
BROOK_PORT=$port
export BROOK_HOST BROOK_PORT
check "broker listening on 127.0.0.1:$port" 1 1

# ---- Publish and pull. ----

run publish.sh smoke "hello world" second
check "publish.sh prints an offset per message" "exit 0
+OK 0
+OK 1" "$result"

# Non-ASCII text: the binary protocol's lengths must count bytes.
run binary-publish.sh smoke "héllo, wörld"
check "binary-publish.sh prints nothing" "exit 0" "$result"

run pull.sh smoke 2
check "pull.sh MAX takes the oldest messages" "exit 0
[smoke@0] hello world
[smoke@1] second
stderr: pulled 2" "$result"

run pull.sh smoke
check "pull.sh takes the binary publish, byte for byte" "exit 0
[smoke@2] héllo, wörld
stderr: pulled 1" "$result"

run pull.sh smoke
check "pulled messages are gone" "exit 0
stderr: pulled 0" "$result"

# A topic that must be quoted, and a payload that goes as PUBN.
run publish.sh "two words" "line one
line two"
check "publish.sh: a quoted topic, a two-line message" "exit 0
+OK 0" "$result"

run pull.sh "two words"
check "pull.sh: a quoted topic, a two-line message" 'exit 0
["two words"@0] line one
line two
stderr: pulled 1' "$result"

run publish.sh smoke ""
check "publish.sh passes on the broker's error" "exit 1
stderr: -ERR missing message" "$result"

# ---- Subscribe. ----

run publish.sh feed early
check "publish.sh to feed" "exit 0
+OK 0" "$result"

# subscribe NAME START...: starts subscribe.sh feed START... in the
# background, with its stdout in $tmp.NAME.out and its stderr in
# $tmp.NAME.err. Its process ID is then $!.
subscribe() {
    name=$1
    shift
    set -C
    : >"$tmp.$name.out"
    : >"$tmp.$name.err"
    set +C
    sh "$here/subscribe.sh" feed "$@" >"$tmp.$name.out" 2>"$tmp.$name.err" &
    subscriber_pids="$subscriber_pids $!"
}
subscribe beginning beginning
beginning_pid=$!
subscribe from from 1
from_pid=$!
subscribe current
current_pid=$!

# `current` means from the next message: publish only once it subscribed.
wait_for "$tmp.current.err" "subscribed to feed"
check "subscribe.sh (current) is subscribed" "subscribed to feed" "$(slurp "$tmp.current.err")"
wait_for "$tmp.beginning.out" "[feed@0] early"
check "subscribe.sh beginning replays what came before" "[feed@0] early" "$(slurp "$tmp.beginning.out")"

run publish.sh feed late
check "publish.sh to feed again" "exit 0
+OK 1" "$result"
run binary-publish.sh feed "binary late"
check "binary-publish.sh to feed" "exit 0" "$result"

wait_for "$tmp.beginning.out" "[feed@0] early
[feed@1] late
[feed@2] binary late"
check "subscribe.sh beginning: old and new messages" "[feed@0] early
[feed@1] late
[feed@2] binary late" "$(slurp "$tmp.beginning.out")"

wait_for "$tmp.from.out" "[feed@1] late
[feed@2] binary late"
check "subscribe.sh from 1" "[feed@1] late
[feed@2] binary late" "$(slurp "$tmp.from.out")"

wait_for "$tmp.current.out" "[feed@1] late
[feed@2] binary late"
check "subscribe.sh current: only new messages" "[feed@1] late
[feed@2] binary late" "$(slurp "$tmp.current.out")"

# ---- Metrics, if curl is there. ----

if command -v curl >/dev/null 2>&1; then
    metrics_url=
    while IFS= read -r line; do
        case $line in
        *'metrics served at '*) metrics_url=${line#*metrics served at } ;;
        esac
    done <"$tmp.log"
    # Three messages were published to feed.
    feed_in=
    set -C
    : >"$tmp.metrics"
    set +C
    if curl -sSf "$metrics_url" >"$tmp.metrics" 2>&1; then
        while IFS= read -r line; do
            case $line in
            'brook_topic_messages_in_total{topic="feed"} '*) feed_in=${line##* } ;;
            esac
        done <"$tmp.metrics"
    fi
    check "curl GET /metrics: the feed's messages in" 3 "${feed_in:-$(slurp "$tmp.metrics")}"
else
    printf 'SKIP metrics: no curl\n'
fi

# exit_status PID: waits up to 10 s for background process PID to end, and
# sets $code to its exit status, or to "running". (Not in $(...): a subshell
# cannot wait for this shell's children.)
exit_status() {
    tries=0
    while kill -0 "$1" 2>/dev/null; do
        if [ "$tries" -ge 100 ]; then
            code=running
            return
        fi
        pause
        tries=$((tries + 1))
    done
    code=0
    wait "$1" || code=$?
}

# A kill stops subscribe.sh (its trap passes the signal on to nc).
kill "$beginning_pid"
exit_status "$beginning_pid"
check "subscribe.sh exits 130 on TERM" 130 "$code"

# A TERM stops the broker cleanly, with status 0, and the other
# subscribers end by themselves.
kill "$broker_pid"
code=0
wait "$broker_pid" 2>/dev/null || code=$?
broker_pid=
check "brook exits 0 on TERM" 0 "$code"
exit_status "$from_pid"
check "subscribe.sh from 1 exits when the broker closes" 0 "$code"
exit_status "$current_pid"
check "subscribe.sh current exits when the broker closes" 0 "$code"
check "subscribe.sh says the broker closed" "subscribed to feed
subscribe.sh: the broker closed the connection" "$(slurp "$tmp.current.err")"

printf 'smoke.sh: %s passed, %s failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
