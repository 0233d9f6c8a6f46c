//! What the broker writes to a line-protocol client: deliveries
//! (`MSG <topic> <offset> <nbytes>`, the payload, a newline), the replies
//! (`+OK`, `-ERR <reason>`, `+END <count>`...), the `TOPICS` and `STATS`
//! reports, and the `HELP` text, which is the one list of the line
//! commands. The writer thread (`writer.rs`) calls it, for a connection
//! whose first byte chose the line protocol; `line.rs` reads what such a
//! client sends.
//!
//! Topic names are written with `line.rs`'s `encode_topic`, the way that
//! file reads them, so any name a binary client can use comes back intact.

use std::fmt;
use std::io::Write;

use super::line::encode_topic;
use super::reply::{BrokerReport, PatternReport, Reply, TopicReport};
use crate::ids::Offset;

/// Appends `MSG <topic> <offset> <nbytes>\n`. The payload and a newline
/// follow; the writer sends the payload from its shared buffer.
pub(crate) fn encode_delivery_header(
    out: &mut Vec<u8>,
    topic: &str,
    offset: Offset,
    payload_len: usize,
) {
    write_topic_line(out, "MSG", topic, format_args!("{offset} {payload_len}"));
}

/// Appends a reply.
pub(crate) fn encode_reply(out: &mut Vec<u8>, reply: &Reply) {
    match reply {
        Reply::Subscribed | Reply::Unsubscribed => out.extend_from_slice(b"+OK\n"),
        Reply::Error(reason) => write_line(out, format_args!("-ERR {reason}")),
        Reply::DiskFull(full) => write_line(out, format_args!("-ERR {full}")),
        Reply::MemoryFull(full) => write_line(out, format_args!("-ERR {full}")),
        Reply::OverLimit(limit) => write_line(out, format_args!("-ERR {limit}")),
        Reply::Published { offset, .. } => write_line(out, format_args!("+OK {offset}")),
        Reply::PullDone { count } => write_line(out, format_args!("+END {count}")),
        Reply::Pong => out.extend_from_slice(b"+PONG\n"),
        Reply::Bye => out.extend_from_slice(b"+BYE\n"),
        Reply::Help => out.extend_from_slice(HELP.as_bytes()),
        Reply::Topics(topics, patterns) => encode_topics(out, topics, patterns),
        Reply::Stats(report) => encode_stats(out, report),
    }
}

/// `+TOPIC <topic> messages=<n> first=<offset> next=<offset> subscribers=<n>`
/// per topic, then `+PATTERN <pattern> subscribers=<n> groups=<n>` per
/// pattern followed, then `+END`.
fn encode_topics(out: &mut Vec<u8>, topics: &[TopicReport], patterns: &[PatternReport]) {
    for topic in topics {
        write_topic_line(
            out,
            "+TOPIC",
            &topic.name,
            format_args!(
                "messages={} first={} next={} subscribers={}",
                topic.messages(),
                topic.first,
                topic.next,
                topic.subscribers
            ),
        );
    }
    for pattern in patterns {
        write_topic_line(
            out,
            "+PATTERN",
            &pattern.pattern,
            format_args!(
                "subscribers={} groups={}",
                pattern.subscribers, pattern.groups
            ),
        );
    }
    out.extend_from_slice(b"+END\n");
}

/// `+STAT <name> <value>` per broker-wide figure, then a `+STAT
/// connection <id> user=<user>` line per connection logged in, then one
/// `+STAT topic` line per topic, each followed by a `+STAT group <topic> <group>` line
/// per consumer group of the topic, then `+END`.
fn encode_stats(out: &mut Vec<u8>, report: &BrokerReport) {
    write_line(
        out,
        format_args!("+STAT incarnation {}", report.incarnation),
    );
    for (name, value) in report.totals() {
        write_line(out, format_args!("+STAT {name} {value}"));
    }
    for (conn, user) in &report.logins {
        let _ = write!(out, "+STAT connection {conn} user=");
        encode_topic(out, user);
        out.push(b'\n');
    }
    for topic in &report.topics {
        write_topic_line(
            out,
            "+STAT topic",
            &topic.name,
            format_args!(
                "messages_in={} messages_out={} bytes_in={} bytes_out={} subscribers={}",
                topic.messages_in,
                topic.messages_out,
                topic.bytes_in,
                topic.bytes_out,
                topic.subscribers
            ),
        );
        for group in &topic.groups {
            out.extend_from_slice(b"+STAT group ");
            encode_topic(out, &topic.name);
            out.push(b' ');
            encode_topic(out, &group.name);
            write_line(
                out,
                format_args!(
                    " members={} position={} lag={}",
                    group.members, group.position, group.lag
                ),
            );
        }
    }
    out.extend_from_slice(b"+END\n");
}

/// Appends `<head> <topic> <fields>` and a newline, the topic written as
/// [`encode_topic`] does.
fn write_topic_line(out: &mut Vec<u8>, head: &str, topic: &str, fields: fmt::Arguments<'_>) {
    out.extend_from_slice(head.as_bytes());
    out.push(b' ');
    encode_topic(out, topic);
    out.push(b' ');
    write_line(out, fields);
}

/// Appends formatted text and a newline.
fn write_line(out: &mut Vec<u8>, text: fmt::Arguments<'_>) {
    // Writing to a Vec cannot fail.
    let _ = out.write_fmt(text);
    out.push(b'\n');
}

/// What `HELP` prints.
const HELP: &str = "\
+HELP brook line protocol. Commands are case-insensitive; a topic is a word or a \"quoted string\".
+  A topic name may not have a token (between dots) that is just * or >: those are for patterns.
+  SUB, UNSUB and PULL take patterns: orders.* is every orders.<one token>, orders.> every orders.<more>.
+  AUTH <user> <password>             log in (brokers with --auth-file); +OK
+  PUB <topic> <text>                 publish the rest of the line; replies +OK <offset>
+  PUBN <topic> <nbytes>              publish the next nbytes raw bytes (then a newline); +OK <offset>
+  SUB <topic> [beginning|current|from <offset>] [manual] [group <name>]
+                                     subscribe (default: current); messages come as
+                                     MSG <topic> <offset> <nbytes>, the payload, a newline;
+                                     with group, share them with the group's other members
+  UNSUB <topic>                      stop a subscription, and leave the topic's groups
+  ACK / NACK                         answer the oldest delivery of a manual subscription
+  PULL <topic> [max] [group <name>]  take what the group (default: default) has not given out; +END <count>
+  TOPICS                             list the topics and the patterns followed
+  STATS                              counters for the broker and each topic
+  PING                               replies +PONG
+  HELP                               this list
+  QUIT                               replies +BYE and closes the connection
+END
";
