#!/bin/sh
# pull.sh TOPIC [MAX]: takes the messages of TOPIC that no one has pulled yet
# (at most MAX of them), prints each as `[topic@offset] payload`, and exits.
# Pulled messages are consumed: a second pull.sh does not see them again.
# stdout holds only the messages; the broker's count goes to stderr as
# `pulled N`.
#
#   $ scripts/pull.sh orders
#   [orders@0] first order
#   [orders@1] second order
#   pulled 2
#
# On the wire (the broker's replies indented):
#   PULL orders
#   QUIT
#       MSG orders 0 11
#       first order
#       MSG orders 1 12
#       second order
#       +END 2
#       +BYE
set -eu
case $0 in */*) here=${0%/*} ;; *) here=. ;; esac
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

case $#:${2-} in
1:) max= ;;
2:*[!0-9]* | 2:) usage 'TOPIC [MAX]' ;;
2:*) max=" $2" ;;
*) usage 'TOPIC [MAX]' ;;
esac
topic=$(brook_quote "$1")

# The replies: the messages, +END with their count, then +BYE.
replies() {
    brook_read_auth
    count=
    while brook_read_reply; do
        case $reply in
        'MSG '*) brook_print_msg "$reply" ;;
        '+END '*)
            count=${reply#+END }
            printf 'pulled %s\n' "$count" >&2
            ;;
        '+BYE')
            [ -n "$count" ] || die "no +END before +BYE"
            exit 0
            ;;
        '-ERR '*)
            printf '%s\n' "$reply" >&2
            exit 1
            ;;
        *) die "unexpected reply: $reply" ;;
        esac
    done
    brook_lost +BYE
}

{
    brook_auth
    printf 'PULL %s%s\nQUIT\n' "$topic" "$max"
} | brook_send | replies
