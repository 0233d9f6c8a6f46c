#!/bin/sh
# binary-publish.sh TOPIC MESSAGE: publishes MESSAGE to TOPIC with the binary
# protocol (the Go broker's, docs/PROTOCOL.md), written byte by byte with
# printf. The broker sends nothing back for a publish, so the script prints
# nothing when all is well; if the broker does answer, it is an Error status,
# and the script prints its reason and exits 1.
#
#   $ scripts/binary-publish.sh orders "first order"
#
# The 31 bytes it sends, in hex (docs/PROTOCOL.md, example (b)):
#   00 03                                  action          3 = Publish
#   00 0c                                  topic length    12
#   74 6f 70 69 63 3a 6f 72 64 65 72 73    topic frame     topic:orders
#   00 00 00 0b                            payload length  11
#   66 69 72 73 74 20 6f 72 64 65 72       payload         first order
set -eu
case $0 in */*) here=${0%/*} ;; *) here=. ;; esac
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

[ $# -eq 2 ] || usage 'TOPIC MESSAGE'
topic_frame="topic:$1"
message=$2

# Lengths are byte counts: lib.sh sets LC_ALL=C, so ${#var} counts bytes
# (`é` is 2). A shell variable cannot hold a NUL byte, so neither can MESSAGE.
topic_length=${#topic_frame}
message_length=${#message}
[ "$topic_length" -le 65535 ] || die "topic too long for a u16 length"

# byte N: writes one byte of value N (0 to 255). printf writes the byte for
# an octal escape in its format, `\ooo`, and `printf %o` gives the octal
# digits: byte 12 is printf '\14'.
byte() {
    # shellcheck disable=SC2059 # the format is the point here
    printf "\\$(printf '%o' "$1")"
}

# Big-endian integers, most significant byte first.
u16() {
    byte $(($1 >> 8 & 255))
    byte $(($1 & 255))
}

u32() {
    byte $(($1 >> 24 & 255))
    byte $(($1 >> 16 & 255))
    byte $(($1 >> 8 & 255))
    byte $(($1 & 255))
}

# The Auth frame (action 8, brook's extension), if BROOK_USER is set: the
# u16 action, then the user and the password, each after a u16 length.
auth_frame() {
    [ -n "${BROOK_USER-}" ] || return 0
    password=${BROOK_PASSWORD-}
    printf '\000\010'
    u16 ${#BROOK_USER}
    printf '%s' "$BROOK_USER"
    u16 ${#password}
    printf '%s' "$password"
}

frames() {
    auth_frame
    # The connection's first frame: the u16 action 3, Publish, written out
    # as two octal escapes. A first byte of 0 is what tells the broker this
    # is the binary protocol, not the line one.
    printf '\000\003'
    # The topic frame: u16 length, then `topic:` and the name.
    u16 "$topic_length"
    printf '%s' "$topic_frame"
    # The payload frame: u32 length, then the bytes.
    u32 "$message_length"
    printf '%s' "$message"
}

# An Error status is u16 3, u16 length, the reason. The shell drops NUL bytes
# from what $(...) captures, so the status and length arrive as a few control
# characters before the reason: strip everything before its first printable
# character.
reply=$(frames | brook_send) ||
    die "cannot connect to $BROOK_HOST:$BROOK_PORT: $(brook_absent)"
# A login is answered with status 1, `00 01`, which arrives as byte 1.
if [ -n "${BROOK_USER-}" ]; then
    reply=${reply#"$(printf '\001')"}
fi
if [ -n "$reply" ]; then
    die "the broker refused the message: ${reply#"${reply%%[[:print:]]*}"}"
fi
