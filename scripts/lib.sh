# shellcheck shell=sh
# Shared code for brook's shell clients; sourced, never run. POSIX sh (dash).
#
# The scripts talk to brook with netcat (the OpenBSD one, Debian's
# netcat-openbsd) and printf, and parse the replies with `read` and
# parameter expansion. Everything they send and read is spelled out in
# docs/PROTOCOL.md: the binary protocol, and the line protocol (section 8).
#
# Environment: BROOK_HOST (default 127.0.0.1), BROOK_PORT (default 3000);
# BROOK_USER and BROOK_PASSWORD to log in to a broker started with
# --auth-file (no login when BROOK_USER is unset).

# Bytes, not characters: in the C locale `${#var}` counts bytes (what the
# protocols' lengths count) and `?` in a pattern matches one byte.
LC_ALL=C
export LC_ALL

BROOK_HOST=${BROOK_HOST:-127.0.0.1}
BROOK_PORT=${BROOK_PORT:-3000}

# The script's name, for messages.
prog=${0##*/}

# Characters that are awkward to write literally.
nl='
'
tab=$(printf '\t')
cr=$(printf '\r')

die() {
    printf '%s: %s\n' "$prog" "$*" >&2
    exit 1
}

usage() {
    printf 'usage: %s %s\n' "$prog" "$*" >&2
    exit 2
}

command -v nc >/dev/null 2>&1 || die "nc not found: install netcat-openbsd"

# ---- The connection. ----
#
# Both functions connect to the broker, copy their stdin to it and the
# broker's bytes to their stdout. They differ in what happens when stdin
# ends (netcat-openbsd 1.219):
#
# brook_send: `-N` shuts down nc's sending side when stdin ends, so the
#   broker sees the end of the stream, while nc goes on printing what the
#   broker sends until the broker closes the connection. For the scripts
#   that send a fixed set of requests: the line-protocol ones end with QUIT
#   (the broker answers +BYE and closes); binary-publish.sh cannot, and
#   relies on the broker closing a publisher connection at end of stream.
#   Not `-q 0`: it quits as soon as stdin ends, dropping replies still on
#   their way. Not `-q N`: a guess at how long replies take.
#
# brook_stream: no `-N`, no `-q`: when stdin ends nc just stops reading it,
#   and the connection stays open, both ways, until the broker closes it or
#   nc is killed. (A closed sending side would end a subscription.) For
#   subscribe.sh, which sends one SUB and then listens. The first line it
#   prints is nc's process ID, so that the reader of its output can stop it:
#   a new shell prints its own ID, $$, then becomes nc with exec.
brook_send() {
    nc -N "$BROOK_HOST" "$BROOK_PORT"
}

brook_stream() {
    sh -c 'echo "$$"; exec nc "$1" "$2"' sh "$BROOK_HOST" "$BROOK_PORT"
}

# ---- Writing a topic. ----

# brook_quote TOPIC: prints TOPIC as a line-protocol word, the way the broker
# writes topics: bare if it is non-empty and holds no space, tab, `"` or
# control character; otherwise in double quotes, with `\"`, `\\`, `\n`, `\r`
# and `\t` for those characters.
brook_quote() {
    case $1 in
    '' | *[[:space:][:cntrl:]\"]*) ;;
    *)
        printf '%s' "$1"
        return
        ;;
    esac
    rest=$1
    quoted=
    while [ -n "$rest" ]; do
        char=${rest%"${rest#?}"} # the first byte
        rest=${rest#?}
        case $char in
        \\ | \") quoted=$quoted\\$char ;;
        "$nl") quoted=$quoted'\n' ;;
        "$cr") quoted=$quoted'\r' ;;
        "$tab") quoted=$quoted'\t' ;;
        *) quoted=$quoted$char ;;
        esac
    done
    printf '"%s"' "$quoted"
}

# ---- Logging in. ----
#
# With BROOK_USER set, a line-protocol script sends brook_auth's line
# before its requests, and reads the reply with brook_read_auth: +OK, or
# the refusal, which ends the script.

# brook_auth: prints `AUTH <user> <password>`, both quoted as topics are,
# if BROOK_USER is set; nothing otherwise.
brook_auth() {
    [ -n "${BROOK_USER-}" ] || return 0
    printf 'AUTH %s %s\n' "$(brook_quote "$BROOK_USER")" "$(brook_quote "${BROOK_PASSWORD-}")"
}

# brook_read_auth: reads the reply to brook_auth's line, if it sent one.
brook_read_auth() {
    [ -n "${BROOK_USER-}" ] || return 0
    brook_read_reply || brook_lost "its reply to AUTH"
    [ "$reply" = '+OK' ] || die "cannot log in as $BROOK_USER: ${reply#-ERR }"
}

# ---- Reading replies. ----

# brook_read_reply: reads one reply line into $reply (without its `\n`).
# Fails at the end of the stream.
replies_read=0
brook_read_reply() {
    IFS= read -r reply || return 1
    reply=${reply%"$cr"}
    replies_read=$((replies_read + 1))
}

# brook_lost WHAT: fails because the connection ended before WHAT. Without
# a single reply, most likely nothing listens there: nc does not say so.
brook_lost() {
    [ "$replies_read" -gt 0 ] ||
        die "no reply from $BROOK_HOST:$BROOK_PORT: $(brook_absent)"
    die "the broker closed the connection before $1"
}

# brook_absent: the question to ask when nothing answers, with the command
# that starts brook where the scripts look for it.
brook_absent() {
    start='cargo run --release'
    [ "$BROOK_PORT" = 3000 ] || start="$start -- --port $BROOK_PORT"
    printf 'is brook running there? Start it with %s' "$start"
}

# brook_print_msg LINE: LINE is a delivery header, `MSG <topic> <offset>
# <nbytes>`; reads the <nbytes> payload bytes and the `\n` after them from
# stdin and prints `[<topic>@<offset>] <payload>`.
#
# The topic is shown as the broker wrote it: bare, or quoted if it holds a
# space or the like (`["my topic"@0] hi`). The topic may hold spaces, so the
# offset and the byte count are taken from the end of the line.
#
# `read` gets whole lines, so the payload is read line by line, counting
# bytes (each line plus its `\n`) until nbytes + 1 have been read. A payload
# with newlines therefore prints over several lines, exactly as it is, and
# the stream stays in step. A shell variable cannot hold a NUL byte, so a
# payload with one would be miscounted: these scripts are for text.
brook_print_msg() {
    msg_bytes=${1##* }
    msg_header=${1% *}
    msg_offset=${msg_header##* }
    msg_topic=${msg_header% *}
    msg_topic=${msg_topic#MSG }
    case $msg_bytes in
    '' | *[!0-9]*) die "bad delivery header: $1" ;;
    esac
    msg_payload=
    got=0
    while [ "$got" -le "$msg_bytes" ]; do
        IFS= read -r part || die "connection closed in the middle of a message"
        [ "$got" -eq 0 ] || msg_payload=$msg_payload$nl
        msg_payload=$msg_payload$part
        got=$((got + ${#part} + 1))
    done
    [ "$got" -eq $((msg_bytes + 1)) ] ||
        die "message $msg_topic@$msg_offset is longer than its $msg_bytes bytes"
    printf '[%s@%s] %s\n' "$msg_topic" "$msg_offset" "$msg_payload"
}
