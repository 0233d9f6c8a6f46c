#!/bin/sh
# publish.sh TOPIC MESSAGE...: publishes each MESSAGE to TOPIC with the line
# protocol, one connection for all of them, and prints the broker's reply to
# each, `+OK <offset>`, in order. A `-ERR <reason>` reply goes to stderr, and
# the script then exits 1 (after the other replies).
#
#   $ scripts/publish.sh orders "first order" "second order"
#   +OK 0
#   +OK 1
#
# On the wire (the broker's replies indented):
#   PUB orders first order
#   PUB orders second order
#   QUIT
#       +OK 0
#       +OK 1
#       +BYE
# With BROOK_USER set, an AUTH line (lib.sh) comes first.
set -eu
case $0 in */*) here=${0%/*} ;; *) here=. ;; esac
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

[ $# -ge 2 ] || usage 'TOPIC MESSAGE...'
topic=$(brook_quote "$1")
shift

# The requests: one per message, then QUIT.
requests() {
    for message; do
        case $message in
        *"$nl"* | *"$cr" | ["$tab "]*)
            # PUB takes the rest of its line, after the spaces that follow
            # the topic, and drops a `\r` before the `\n`. A message that
            # holds a newline, ends in `\r` or starts with a space or a tab
            # goes as PUBN instead: its byte count, a newline, the bytes,
            # a newline.
            printf 'PUBN %s %s\n%s\n' "$topic" "${#message}" "$message"
            ;;
        *)
            printf 'PUB %s %s\n' "$topic" "$message"
            ;;
        esac
    done
    printf 'QUIT\n'
}

# The replies: one per request, in order, then +BYE.
replies() {
    brook_read_auth
    status=0
    while brook_read_reply; do
        case $reply in
        '+OK '*) printf '%s\n' "$reply" ;;
        '-ERR '*)
            printf '%s\n' "$reply" >&2
            status=1
            ;;
        '+BYE') exit "$status" ;;
        *) die "unexpected reply: $reply" ;;
        esac
    done
    brook_lost +BYE
}

{
    brook_auth
    requests "$@"
} | brook_send | replies
