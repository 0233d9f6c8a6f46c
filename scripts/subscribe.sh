#!/bin/sh
# subscribe.sh TOPIC [beginning | current | from N]: subscribes to TOPIC and
# prints every message as it arrives, as `[topic@offset] payload`, until it
# is stopped (Ctrl-C, or a kill of its process ID) or the broker closes the
# connection. It starts at the next new message (current) unless told to
# start at the first message kept (beginning) or at offset N. Once the
# broker has confirmed the subscription, `subscribed to TOPIC` goes to
# stderr; a `-ERR` reply goes there instead, and the script exits 1. It
# exits 130 when stopped, 0 when the broker closes the connection.
#
#   $ scripts/subscribe.sh orders beginning
#   subscribed to orders
#   [orders@0] first order
#   [orders@1] second order
#   ...
#
# TOPIC may be a pattern (docs/PROTOCOL.md, "Topic names and patterns"),
# quoted for the shell: `scripts/subscribe.sh 'orders.*'` follows every
# topic orders.<one token>, those there now and those created later
# (from their first message); `from N` is refused for a pattern.
#
# On the wire (the broker's lines indented): the subscription has no
# `manual`, so each delivery counts as acked once written, and the script
# never sends ACK.
#   SUB orders beginning
#       +OK
#       MSG orders 0 11
#       first order
#       ...
set -eu
case $0 in */*) here=${0%/*} ;; *) here=. ;; esac
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

case $#:${2-} in
1:) start=current ;;
2:beginning | 2:current) start=$2 ;;
3:from)
    case $3 in '' | *[!0-9]*) usage 'TOPIC [beginning | current | from N]' ;; esac
    start="from $3"
    ;;
*) usage 'TOPIC [beginning | current | from N]' ;;
esac
name=$1
topic=$(brook_quote "$1")

# The reader, at the end of the pipeline. Its first line is nc's process ID
# (see brook_stream): whenever the reader exits, it stops nc too, which would
# otherwise stay connected until the broker next sent something. It sends
# SIGPIPE, what nc would get at its next write to the reader's closed pipe
# (and which, unlike SIGTERM, the shell does not report as "Terminated").
deliveries() {
    read -r nc_pid
    trap 'kill -s PIPE "$nc_pid" 2>/dev/null || :' EXIT
    trap 'exit 143' TERM # exit, so that the EXIT trap runs

    brook_read_auth
    brook_read_reply || brook_lost "its reply to SUB"
    case $reply in
    '+OK') printf 'subscribed to %s\n' "$name" >&2 ;;
    *)
        printf '%s\n' "$reply" >&2
        exit 1
        ;;
    esac

    while brook_read_reply; do
        case $reply in
        'MSG '*) brook_print_msg "$reply" ;;
        *) printf '%s\n' "$reply" >&2 ;;
        esac
    done
    printf '%s: the broker closed the connection\n' "$prog" >&2
}

# The pipeline runs in the background so that this shell handles a signal at
# once (in the foreground it would wait for the pipeline first): it passes
# it on to the reader, and the reader stops nc. (Ctrl-C reaches this shell
# only: a background pipeline of a script ignores SIGINT.)
{
    brook_auth
    printf 'SUB %s %s\n' "$topic" "$start"
} | brook_stream | deliveries &
reader=$!
trap 'kill "$reader" 2>/dev/null; exit 130' INT TERM HUP
wait "$reader"
