//! The disk store: topics survive a restart with their messages, offsets
//! and names (however strange the names), hostile names stay inside the data
//! directory, a torn or corrupt tail of a topic's last segment is cut back
//! to the last whole record while a damaged record in the middle of a log
//! is skipped by every reader, and nothing else lost (or, with
//! `--on-damage stop`, stops the broker from starting), retention deletes
//! whole old segments, segments
//! roll and are named by their first offset, every fsync policy recovers
//! what it stored, a broker killed with SIGKILL while publishing keeps
//! every message it confirmed, and so does one whose disk is full for a
//! while.
//!
//! The last two run the `brook` binary. A full disk is a file-size limit
//! (`ulimit -S -f` in `sh`, with `SIGXFSZ` ignored, so that a write past it
//! fails with `EFBIG`), lifted with `prlimit` from util-linux if the machine
//! has it (if not, that half of the test is skipped, and says so).
//!
//! The segment files are read and damaged here byte by byte, from the
//! record layout: `u64` offset, `u64` timestamp (ms since the Unix epoch),
//! `u32` payload length, `u32` CRC-32C of the 20 bytes before it and the
//! payload, then the payload; all big-endian.
//!
//! Every broker runs on a fresh directory of its own under the system's
//! temporary directory, removed when the test ends. Nothing here sleeps:
//! every wait is a blocking read under a deadline.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{SystemTime, UNIX_EPOCH};

use brook::client::Publisher;
use brook::config::{Config, Fsync, OnDamage, Storage};
use brook::server::Broker;
use brook::wire::request::StartAt;
use common::broker::{config, start_broker};
use common::client::{expect_next_ack, subscriber, Bystander};
use common::line::{Line, Msg};
use common::process::BrookProcess;
use common::temp::TempDir;
use common::{QUIET, WAIT};

// ---- Brokers on disk. ----

/// The tests' configuration, storing topics under `data`.
fn disk_config(data: &Path) -> Config {
    Config {
        storage: Storage::Disk(data.to_path_buf()),
        ..config()
    }
}

/// Shuts `broker` down and starts a new one with `config` (on a new port).
fn restart(broker: Broker, config: &Config) -> Broker {
    broker.shutdown();
    start_broker(config)
}

// ---- The line protocol. ----

/// `name` as a quoted word of the line protocol, as a client may always
/// write it.
fn quote(name: &str) -> String {
    let mut quoted = String::from('"');
    for c in name.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            '\0' => quoted.push_str("\\0"),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// `name` as the broker writes it in `MSG` and `+TOPIC` lines: a bare word
/// if it can be one, else quoted (docs/PROTOCOL.md, section 8).
fn wire(name: &str) -> String {
    let bare = !name.is_empty()
        && !name
            .chars()
            .any(|c| c == '"' || c.is_ascii_whitespace() || c.is_control());
    if bare {
        name.to_owned()
    } else {
        quote(name)
    }
}

/// Publishes `payload` to `topic` with `PUBN` and returns the offset in the
/// broker's `+OK`.
#[track_caller]
fn publish(client: &mut Line, topic: &str, payload: &[u8]) -> u64 {
    let header = format!("PUBN {} {}\n", quote(topic), payload.len());
    client.send([header.as_bytes(), payload, b"\n"].concat());
    let reply = client.read_line();
    reply
        .strip_prefix("+OK ")
        .and_then(|offset| offset.parse().ok())
        .unwrap_or_else(|| panic!("publishing to {topic:?}: got {reply:?}"))
}

/// Publishes each payload to `topic` and asserts they get the offsets
/// `first`, `first + 1`, ...
#[track_caller]
fn publish_at(addr: SocketAddr, topic: &str, first: u64, payloads: &[Vec<u8>]) {
    let mut client = Line::connect(addr);
    for (offset, payload) in (first..).zip(payloads) {
        assert_eq!(publish(&mut client, topic, payload), offset, "{topic:?}");
    }
}

/// Subscribes to `topic` from offset `from` on a new connection, and
/// asserts that exactly `payloads` arrive, at offsets `first`, `first + 1`,
/// ..., and nothing after them (the reply to a later `PING` comes next).
#[track_caller]
fn expect_log(addr: SocketAddr, topic: &str, from: u64, first: u64, payloads: &[Vec<u8>]) {
    let mut client = Line::connect(addr);
    assert_eq!(
        client.ask(&format!("SUB {} from {from}", quote(topic))),
        "+OK"
    );
    for (offset, payload) in (first..).zip(payloads) {
        let msg = client.read_msg();
        assert_eq!(
            (msg.topic.as_str(), msg.offset),
            (wire(topic).as_str(), offset),
            "topic {topic:?}"
        );
        assert!(
            msg.payload == *payload,
            "topic {topic:?} offset {offset}: expected {:?}, got {:?}",
            String::from_utf8_lossy(payload),
            String::from_utf8_lossy(&msg.payload)
        );
    }
    // A message beyond the expected ones would have been queued before the
    // PING was even read.
    let reply = client.ask("PING");
    assert_eq!(reply, "+PONG", "topic {topic:?}: more than expected");
}

/// Every `+TOPIC` line of a `TOPICS` reply.
fn topic_lines(addr: SocketAddr) -> BTreeSet<String> {
    let mut client = Line::connect(addr);
    client.send("TOPICS\n");
    client.read_until_end().into_iter().collect()
}

/// The `+TOPIC` line `TOPICS` shows for `topic` with no subscribers.
fn topic_line(topic: &str, messages: u64, first: u64, next: u64) -> String {
    format!(
        "+TOPIC {} messages={messages} first={first} next={next} subscribers=0",
        wire(topic)
    )
}

/// `(first, next)` of `topic` in `TOPICS`.
#[track_caller]
fn topic_range(addr: SocketAddr, topic: &str) -> (u64, u64) {
    let prefix = format!("+TOPIC {} ", wire(topic));
    let lines = topic_lines(addr);
    let Some(line) = lines.iter().find(|line| line.starts_with(&prefix)) else {
        panic!("TOPICS has no {topic:?}: {lines:#?}");
    };
    let field = |name: &str| -> u64 {
        line.split(' ')
            .find_map(|word| word.strip_prefix(name)?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line:?}"))
    };
    (field("first="), field("next="))
}

// ---- The files. ----

const HEADER: usize = 24;

/// One record of a segment file, where it starts, and whether its checksum
/// matches.
#[derive(Debug, Clone)]
struct Record {
    at: usize,
    offset: u64,
    timestamp: u64,
    payload: Vec<u8>,
    crc_ok: bool,
}

impl Record {
    fn end(&self) -> usize {
        self.at + HEADER + self.payload.len()
    }
}

/// The records of a segment, walking the headers from the start, up to the
/// first one the bytes do not hold whole.
fn parse_records(bytes: &[u8]) -> Vec<Record> {
    let be64 = |b: &[u8]| u64::from_be_bytes(b.try_into().unwrap());
    let be32 = |b: &[u8]| u32::from_be_bytes(b.try_into().unwrap());
    let mut records = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= HEADER {
        let header = &bytes[at..at + HEADER];
        let len = be32(&header[16..20]) as usize;
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        let crc = brook::crc32c::Crc32c::new()
            .update(&header[..20])
            .update(payload)
            .finish();
        records.push(Record {
            at,
            offset: be64(&header[0..8]),
            timestamp: be64(&header[8..16]),
            payload: payload.to_vec(),
            crc_ok: crc == be32(&header[20..24]),
        });
        at += HEADER + len;
    }
    records
}

/// The records of the segment at `path`, which must all be whole and
/// intact, with nothing after the last.
#[track_caller]
fn sound_records(path: &Path) -> Vec<Record> {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let records = parse_records(&bytes);
    let end = records.last().map_or(0, Record::end);
    assert_eq!(
        end,
        bytes.len(),
        "{}: {} bytes after the last whole record",
        path.display(),
        bytes.len() - end
    );
    if let Some(bad) = records.iter().find(|r| !r.crc_ok) {
        panic!("{}: bad checksum at byte {}", path.display(), bad.at);
    }
    records
}

/// The directory of every topic under `data`, by the name in its `name`
/// file. Fails if two directories claim one name.
fn topic_dirs(data: &Path) -> BTreeMap<Vec<u8>, PathBuf> {
    let mut dirs = BTreeMap::new();
    let topics = data.join("topics");
    for entry in fs::read_dir(&topics).unwrap_or_else(|e| panic!("{}: {e}", topics.display())) {
        let dir = entry.unwrap().path();
        let name =
            fs::read(dir.join("name")).unwrap_or_else(|e| panic!("{}/name: {e}", dir.display()));
        if let Some(other) = dirs.insert(name.clone(), dir.clone()) {
            panic!(
                "{} and {} both hold topic {:?}",
                other.display(),
                dir.display(),
                String::from_utf8_lossy(&name)
            );
        }
    }
    dirs
}

/// The directory of `topic` under `data`.
#[track_caller]
fn topic_dir(data: &Path, topic: &str) -> PathBuf {
    let mut dirs = topic_dirs(data);
    dirs.remove(topic.as_bytes())
        .unwrap_or_else(|| panic!("no directory for topic {topic:?} in {dirs:?}"))
}

/// The segment files in a topic's directory, by base offset. Every `.log`
/// file must be named by 20 digits.
#[track_caller]
fn segments(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let file_name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(stem) = file_name.strip_suffix(".log") else {
            continue;
        };
        assert!(
            stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()),
            "a segment named {file_name:?}"
        );
        segments.push((stem.parse().unwrap(), path));
    }
    segments.sort();
    segments
}

/// The newest segment of `topic`.
#[track_caller]
fn last_segment(data: &Path, topic: &str) -> PathBuf {
    let segments = segments(&topic_dir(data, topic));
    segments.last().expect("a segment").1.clone()
}

/// Flips every bit of the byte at `at` in the file at `path`.
fn flip_byte(path: &Path, at: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes[at] ^= 0xFF;
    fs::write(path, bytes).unwrap();
}

/// Cuts the file at `path` to `len` bytes.
fn truncate(path: &Path, len: usize) {
    let file = fs::OpenOptions::new().write(true).open(path).unwrap();
    file.set_len(len as u64).unwrap();
}

/// Every path under `dir`, depth first; fails on a symbolic link.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let kind = fs::symlink_metadata(&path).unwrap().file_type();
        assert!(!kind.is_symlink(), "a symbolic link: {}", path.display());
        paths.push(path.clone());
        if kind.is_dir() {
            paths.extend(walk(&path));
        }
    }
    paths
}

/// The names of the entries of `dir`.
fn entries(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `count` payloads for `topic`, each different, with bytes a line could
/// not hold.
fn payloads(tag: &str, count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            [
                format!("{tag} message {i} ").as_bytes(),
                &[0, b'\n', 0xFF, i as u8],
            ]
            .concat()
        })
        .collect()
}

// ---- 1. Restart. ----

/// Topic names that a store which made file names from them naively would
/// lose, mix up or write outside its directory: spaces and control
/// characters, Unicode, path separators and dots, the empty name, names too
/// long for a file name (two of them differing only at the end), names
/// differing only in case, and names that look like the store's own files.
fn unusual_names(root: &Path) -> Vec<String> {
    vec![
        "plain".into(),
        "with spaces  and\ttabs".into(),
        "ünïcødé ✓ 🦀".into(),
        "../../etc/passwd".into(),
        String::new(),
        "x".repeat(1000),
        "x".repeat(999) + "y",
        "é".repeat(500),
        "Case".into(),
        "case".into(),
        "CASE".into(),
        ".".into(),
        "..".into(),
        "a/b".into(),
        "a_b".into(),
        "a%2Fb".into(),
        "a\\b".into(),
        "a:b".into(),
        "nul\0byte".into(),
        "new\nline".into(),
        " leading and trailing ".into(),
        "name".into(),
        "topics".into(),
        "00000000000000000000.log".into(),
        root.join("absolute").to_string_lossy().into_owned(),
    ]
}

#[test]
fn restart_keeps_every_topic_with_its_messages_and_offsets() {
    let root = TempDir::new("restart");
    let config = disk_config(&root.path().join("data"));
    let names = unusual_names(root.path());
    let mut logs: Vec<Vec<Vec<u8>>> = names
        .iter()
        .enumerate()
        .map(|(t, _)| payloads(&format!("topic {t}"), 3))
        .collect();

    let broker = start_broker(&config);
    let mut client = Line::connect(broker.local_addr());
    // Round by round, so that every topic's file is written in turn.
    for i in 0..3 {
        for (name, log) in names.iter().zip(&logs) {
            assert_eq!(publish(&mut client, name, &log[i]), i as u64, "{name:?}");
        }
    }
    drop(client);

    let broker = restart(broker, &config);
    let addr = broker.local_addr();
    let expected: BTreeSet<String> = names.iter().map(|n| topic_line(n, 3, 0, 3)).collect();
    assert_eq!(topic_lines(addr), expected);
    for (name, log) in names.iter().zip(&logs) {
        expect_log(addr, name, 0, 0, log);
    }
    // Publishing goes on at the next offset, in the recovered files.
    let mut client = Line::connect(addr);
    for (t, (name, log)) in names.iter().zip(&mut logs).enumerate() {
        log.push(format!("after the restart {t}").into_bytes());
        assert_eq!(publish(&mut client, name, &log[3]), 3, "{name:?}");
    }
    drop(client);

    let broker = restart(broker, &config);
    let addr = broker.local_addr();
    let expected: BTreeSet<String> = names.iter().map(|n| topic_line(n, 4, 0, 4)).collect();
    assert_eq!(topic_lines(addr), expected);
    for (name, log) in names.iter().zip(&logs) {
        expect_log(addr, name, 0, 0, log);
    }
    broker.shutdown();
}

/// The `+STAT incarnation` line of `STATS`.
fn incarnation(addr: SocketAddr) -> String {
    let mut client = Line::connect(addr);
    client.send("STATS\n");
    let lines = client.read_until_end();
    let line = lines
        .iter()
        .find_map(|l| l.strip_prefix("+STAT incarnation "));
    line.unwrap_or_else(|| panic!("no incarnation: {lines:#?}"))
        .to_owned()
}

/// A copier that names messages `<topic>:<offset>` (brook-bridge) must
/// know when the same name can mean another message: a new data
/// directory, or a broker in memory, starts the offsets again, under a
/// new incarnation; a restart on the same directory keeps it.
#[test]
fn the_incarnation_lasts_as_long_as_the_data_directory() {
    let root = TempDir::new("incarnation");
    let on_disk = disk_config(&root.path().join("data"));
    let broker = start_broker(&on_disk);
    let first = incarnation(broker.local_addr());
    assert_eq!(first.len(), 16, "{first:?}");
    let broker = restart(broker, &on_disk);
    assert_eq!(
        incarnation(broker.local_addr()),
        first,
        "the same directory"
    );
    broker.shutdown();

    let other = start_broker(&disk_config(&root.path().join("other")));
    assert_ne!(incarnation(other.local_addr()), first, "another directory");
    let memory = (start_broker(&config()), start_broker(&config()));
    let in_memory = (
        incarnation(memory.0.local_addr()),
        incarnation(memory.1.local_addr()),
    );
    assert_ne!(in_memory.0, in_memory.1, "each start in memory");
    other.shutdown();
}

// ---- 2. Hostile names. ----

#[test]
fn hostile_topic_names_stay_inside_the_data_directory() {
    let root = TempDir::new("hostile");
    // Two levels between the root and the data directory, so that a name
    // climbing out of it lands in a directory this test watches.
    let outer = root.path().join("outer");
    let data = outer.join("data");
    let config = disk_config(&data);
    let names: Vec<String> = vec![
        "../../etc/passwd".into(),
        "../../../escaped".into(),
        "../../../../escaped-further".into(),
        "..".into(),
        ".".into(),
        "/".into(),
        "//".into(),
        "a/../../..".into(),
        "topics/../../up".into(),
        "..\\..\\backslashes".into(),
        "~".into(),
        "$HOME".into(),
        // Glob characters; not "*" alone, which is a pattern, not a topic.
        "*?[]".into(),
        "with\0nul".into(),
        String::new(),
        root.path().join("absolute").to_string_lossy().into_owned(),
        outer.join("absolute").to_string_lossy().into_owned(),
    ];
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    for (t, name) in names.iter().enumerate() {
        publish_at(addr, name, 0, &payloads(&format!("hostile {t}"), 2));
    }

    let check = || {
        assert_eq!(entries(root.path()), BTreeSet::from(["outer".to_owned()]));
        assert_eq!(entries(&outer), BTreeSet::from(["data".to_owned()]));
        for entry in entries(&data) {
            let path = data.join(&entry);
            assert!(
                entry == "topics" || !(path.is_dir() || entry == "name" || entry.ends_with(".log")),
                "{} in the data directory",
                path.display()
            );
        }
        // Each topic is one directory right under `topics`, holding its
        // name and its segments and nothing else.
        let topics = data.join("topics");
        let inside = data.canonicalize().unwrap();
        for path in walk(&topics) {
            let real = path.canonicalize().unwrap();
            assert!(real.starts_with(&inside), "{}", real.display());
            let relative = path.strip_prefix(&topics).unwrap();
            let depth = relative.components().count();
            let is_dir = path.is_dir();
            assert!(
                (depth == 1 && is_dir) || (depth == 2 && !is_dir),
                "{} under topics/",
                relative.display()
            );
            if depth == 2 {
                let file = relative.file_name().unwrap().to_string_lossy();
                assert!(
                    file == "name" || file.ends_with(".log"),
                    "{} under topics/",
                    relative.display()
                );
            }
        }
        let stored: BTreeSet<Vec<u8>> = topic_dirs(&data).into_keys().collect();
        let published: BTreeSet<Vec<u8>> = names.iter().map(|n| n.as_bytes().to_vec()).collect();
        assert_eq!(stored, published);
    };
    check();

    let broker = restart(broker, &config);
    let addr = broker.local_addr();
    let expected: BTreeSet<String> = names.iter().map(|n| topic_line(n, 2, 0, 2)).collect();
    assert_eq!(topic_lines(addr), expected);
    for (t, name) in names.iter().enumerate() {
        expect_log(addr, name, 0, 0, &payloads(&format!("hostile {t}"), 2));
    }
    broker.shutdown();
    check();
}

// ---- 3, 4. A damaged tail. ----

/// Where a damaged file now ends, given its last record.
type Cut = fn(&Record) -> usize;
/// Which byte of a record to flip, given its payload's length.
type Flip = fn(usize) -> usize;
/// Damage done to a segment file, given its records.
type Damage = fn(&Path, &[Record]);
/// Damage done to a segment file, given its last record.
type SegmentDamage = fn(&Path, &Record);

/// Publishes 10 messages to `topic` on a broker over `data`, shuts it down,
/// and returns the payloads and the records of the topic's last segment.
fn ten_messages(config: &Config, data: &Path, topic: &str) -> (Vec<Vec<u8>>, Vec<Record>) {
    let messages = payloads(topic, 10);
    let broker = start_broker(config);
    publish_at(broker.local_addr(), topic, 0, &messages);
    broker.shutdown();
    let records = sound_records(&last_segment(data, topic));
    let offsets: Vec<u64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, (0..10).collect::<Vec<u64>>());
    for (record, message) in records.iter().zip(&messages) {
        assert_eq!(record.payload, *message);
    }
    (messages, records)
}

/// After the last record was damaged: a broker starts with offsets 0 to 8,
/// the next message gets offset 9, and the segment on disk is sound again,
/// so a second restart finds all ten.
#[track_caller]
fn expect_recovered_to_eight(config: &Config, data: &Path, topic: &str, messages: &[Vec<u8>]) {
    let broker = start_broker(config);
    let addr = broker.local_addr();
    assert_eq!(
        topic_lines(addr),
        BTreeSet::from([topic_line(topic, 9, 0, 9)])
    );
    expect_log(addr, topic, 0, 0, &messages[..9]);
    let mut messages = messages[..9].to_vec();
    messages.push(b"the new ninth".to_vec());
    publish_at(addr, topic, 9, &messages[9..]);
    expect_log(addr, topic, 0, 0, &messages);

    let broker = restart(broker, config);
    let addr = broker.local_addr();
    assert_eq!(
        topic_lines(addr),
        BTreeSet::from([topic_line(topic, 10, 0, 10)])
    );
    expect_log(addr, topic, 0, 0, &messages);
    broker.shutdown();
    let records = sound_records(&last_segment(data, topic));
    assert_eq!(records.len(), 10);
    assert_eq!(records[9].payload, b"the new ninth");
}

#[test]
fn a_torn_last_record_is_cut_off_and_its_offset_reused() {
    // Where the file ends, in the last record: `at` is where it starts.
    let cuts: [(&str, Cut); 4] = [
        ("three bytes short", |r| r.end() - 3),
        ("the header and no payload", |r| r.at + HEADER),
        ("half a header", |r| r.at + HEADER / 2),
        ("one byte of it", |r| r.at + 1),
    ];
    for (what, cut) in cuts {
        let root = TempDir::new("torn");
        let data = root.path().join("data");
        let config = disk_config(&data);
        let (messages, records) = ten_messages(&config, &data, "torn");
        truncate(&last_segment(&data, "torn"), cut(&records[9]));
        eprintln!("torn tail: {what}");
        expect_recovered_to_eight(&config, &data, "torn", &messages);
    }
}

#[test]
fn a_flipped_byte_in_the_last_record_is_cut_off_and_its_offset_reused() {
    // Which byte of the last record, from its start; `len` is its payload's.
    let flips: [(&str, Flip); 6] = [
        ("in the payload", |len| HEADER + len / 2),
        ("the payload's last byte", |len| HEADER + len - 1),
        ("in the offset", |_| 7),
        ("in the timestamp", |_| 15),
        ("in the checksum", |_| 22),
        // A length this high claims more bytes than the file holds.
        ("the length's top byte", |_| 16),
    ];
    for (what, at) in flips {
        let root = TempDir::new("flipped");
        let data = root.path().join("data");
        let config = disk_config(&data);
        let (messages, records) = ten_messages(&config, &data, "flipped");
        let last = &records[9];
        flip_byte(
            &last_segment(&data, "flipped"),
            last.at + at(last.payload.len()),
        );
        eprintln!("flipped tail: {what}");
        expect_recovered_to_eight(&config, &data, "flipped", &messages);
    }
}

/// A length one byte short leaves a record with a bad checksum and one byte
/// after it: still a damaged tail, not corruption in the middle.
#[test]
fn a_last_record_whose_length_shrank_is_cut_off() {
    let root = TempDir::new("shrunk");
    let data = root.path().join("data");
    let config = disk_config(&data);
    let (messages, records) = ten_messages(&config, &data, "shrunk");
    let last = &records[9];
    set_length(
        &last_segment(&data, "shrunk"),
        last,
        last.payload.len() as u32 - 1,
    );
    expect_recovered_to_eight(&config, &data, "shrunk", &messages);
}

// ---- 5. Corruption in the middle. ----

/// Starting a broker over `config` must fail, with an error that names
/// `topic` or `file`, and leave `file` as it was. Says what went wrong if
/// not.
fn refused(config: &Config, topic: &str, file: &Path) -> Result<(), String> {
    let before = fs::read(file).unwrap();
    let error = match brook::server::start(config) {
        Ok(broker) => {
            let (first, next) = topic_range(broker.local_addr(), topic);
            return Err(format!(
                "the broker started, with offsets {first} to {next} (the file is now {} \
                 bytes, was {})",
                fs::metadata(file).map_or(0, |m| m.len()),
                before.len()
            ));
        }
        Err(error) => error.to_string(),
    };
    let file_name = file.file_name().unwrap().to_string_lossy();
    if !(error.contains(topic) || error.contains(&*file_name)) {
        return Err(format!(
            "the error names neither {topic:?} nor {file_name:?}: {error:?}"
        ));
    }
    if fs::read(file).unwrap() != before {
        return Err(format!("a refused start changed {}", file.display()));
    }
    Ok(())
}

/// `config`, but refusing to start on damage inside a log.
fn stopping_on_damage(config: &Config) -> Config {
    Config {
        on_damage: OnDamage::Stop,
        ..config.clone()
    }
}

/// Starts a broker over `config`, whose `topic` holds `messages` at
/// offsets 0, 1, ... except that the records of the `damaged` offsets are
/// damaged on disk, and checks that every kind of reader gets every other
/// message, in order, exactly once, and nothing more: a subscriber from
/// the beginning, one from just before the first damage, a member of a
/// group, and a `PULL`. `STATS` counts the damaged offsets.
#[track_caller]
fn expect_served_around(
    config: &Config,
    topic: &str,
    messages: &[Vec<u8>],
    damaged: &[u64],
    what: &str,
) {
    let broker = start_broker(config);
    let addr = broker.local_addr();
    let sound_from = |from: u64| -> Vec<Msg> {
        (from..messages.len() as u64)
            .filter(|offset| !damaged.contains(offset))
            .map(|offset| Msg {
                topic: wire(topic),
                offset,
                payload: messages[offset as usize].clone(),
            })
            .collect()
    };
    let from = damaged[0].saturating_sub(2);
    let readers = [
        ("beginning".to_owned(), 0),
        (format!("from {from}"), from),
        ("beginning group g".to_owned(), 0),
    ];
    for (start, first) in readers {
        let mut client = Line::connect(addr);
        let subscribe = format!("SUB {} {start}", quote(topic));
        assert_eq!(client.ask(&subscribe), "+OK", "{what}: {subscribe}");
        let expected = sound_from(first);
        let got: Vec<Msg> = expected.iter().map(|_| client.read_msg()).collect();
        assert!(got == expected, "{what}: {subscribe} got {got:?}");
        assert_eq!(client.ask("PING"), "+PONG", "{what}: {subscribe} got more");
    }
    let mut puller = Line::connect(addr);
    puller.send(format!("PULL {}\n", quote(topic)));
    let (got, count) = puller.read_pull();
    let expected = sound_from(0);
    assert!(got == expected, "{what}: PULL got {got:?}");
    assert_eq!(count, expected.len() as u64, "{what}: PULL");
    let unreadable = puller.stat("records_unreadable");
    assert_eq!(unreadable, damaged.len() as u64, "{what}: STATS");
    broker.shutdown();
}

/// Sets the payload length of `record` in the segment at `path`.
fn set_length(path: &Path, record: &Record, len: u32) {
    let mut bytes = fs::read(path).unwrap();
    bytes[record.at + 16..record.at + 20].copy_from_slice(&len.to_be_bytes());
    fs::write(path, bytes).unwrap();
}

/// Damage to record 3 of 10 (or more) is followed by whole records, so it
/// is corruption in the middle of the log, whatever field it hit: cutting
/// the log back to record 2 would drop the intact records 4 to 9 (or 5 to
/// 9) with only a warning. `--on-damage stop` refuses to start; the
/// default skips the damaged records, and serves all the others.
#[test]
fn a_corrupt_record_in_the_middle_is_skipped_or_stops_the_start() {
    let mut failures = Vec::new();
    for (what, damaged, damage) in damages_to_record_3() {
        let root = TempDir::new("middle");
        let data = root.path().join("data");
        let config = disk_config(&data);
        let topic = "corrupt-middle";
        let (messages, records) = ten_messages(&config, &data, topic);
        let segment = last_segment(&data, topic);
        damage(&segment, &records);
        if let Err(failure) = refused(&stopping_on_damage(&config), topic, &segment) {
            failures.push(format!("record 3 of 10, {what}: {failure}"));
        }
        let what = format!("record 3 of 10, {what}");
        expect_served_around(&config, topic, &messages, &damaged, &what);
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Each way to damage record 3 of the records given (and 4, in the last),
/// and the offsets it costs, counted from that first record.
fn damages_to_record_3() -> [(&'static str, Vec<u64>, Damage); 6] {
    [
        ("a flipped byte in its payload", vec![3], |path, records| {
            let r = &records[3];
            flip_byte(path, r.at + HEADER + r.payload.len() / 2)
        }),
        (
            "a flipped byte in its checksum",
            vec![3],
            |path, records| flip_byte(path, records[3].at + 21),
        ),
        ("a flipped byte in its offset", vec![3], |path, records| {
            flip_byte(path, records[3].at + 7)
        }),
        ("its length one byte short", vec![3], |path, records| {
            let r = &records[3];
            set_length(path, r, r.payload.len() as u32 - 1)
        }),
        ("its length's top byte flipped", vec![3], |path, records| {
            flip_byte(path, records[3].at + 16)
        }),
        (
            "and record 4 each a flipped payload byte",
            vec![3, 4],
            |path, records| {
                flip_byte(path, records[3].at + HEADER);
                flip_byte(path, records[4].at + HEADER);
            },
        ),
    ]
}

/// Publishes `count` messages to `topic` on a broker over `root/data`
/// whose segments roll at `segment_bytes`, and shuts it down. Returns its
/// configuration, the messages, and the topic's segments: three or more.
fn segmented(
    root: &TempDir,
    topic: &str,
    segment_bytes: u64,
    count: usize,
) -> (Config, Vec<Vec<u8>>, Vec<(u64, PathBuf)>) {
    let data = root.path().join("data");
    let config = Config {
        segment_bytes,
        ..disk_config(&data)
    };
    let messages = payloads(topic, count);
    let broker = start_broker(&config);
    publish_at(broker.local_addr(), topic, 0, &messages);
    broker.shutdown();
    let segments = segments(&topic_dir(&data, topic));
    assert!(segments.len() >= 3, "{} segments", segments.len());
    (config, messages, segments)
}

/// A start reads only the last run of records of a closed segment that
/// has its index file, so damage before that run is found when the record
/// is read: record 50 of 1,000, in the first of several segments. The run
/// that holds it brings the records before it, the damaged offsets are
/// skipped, and the reads go on with the record after it, at its own
/// offset.
#[test]
fn damage_found_when_an_old_segment_is_read_costs_only_the_damaged_records() {
    for (what, damaged, damage) in damages_to_record_3() {
        let root = TempDir::new("read-damage");
        let topic = "read-damage";
        let (config, messages, segments) = segmented(&root, topic, 16 << 10, 1000);
        let first = &segments[0].1;
        assert!(first.with_extension("index").exists(), "no index file");
        let records = sound_records(first);
        damage(first, &records[47..]);
        let damaged: Vec<u64> = damaged.iter().map(|offset| offset + 47).collect();
        let what = format!("record 50 of 1,000, {what}");
        expect_served_around(&config, topic, &messages, &damaged, &what);
    }
}

/// Damage at the end of a segment that is not the last one is followed by
/// the valid records of the next segments: corruption in the middle.
#[test]
fn a_damaged_segment_before_the_last_is_skipped_or_stops_the_start() {
    let damages: [(&str, SegmentDamage); 2] = [
        ("a flipped byte in its last record", |path, last| {
            flip_byte(path, last.at + HEADER)
        }),
        ("its last record torn", |path, last| {
            truncate(path, last.end() - 3)
        }),
    ];
    let mut failures = Vec::new();
    for (what, damage) in damages {
        let root = TempDir::new("earlier");
        let topic = "earlier-segment";
        let (config, messages, segments) = segmented(&root, topic, 512, 40);
        let first = &segments[0].1;
        let records = sound_records(first);
        let last = records.last().unwrap();
        damage(first, last);
        if let Err(failure) = refused(&stopping_on_damage(&config), topic, first) {
            failures.push(format!(
                "first of {} segments, {what}: {failure}",
                segments.len()
            ));
        }
        let what = format!("the first segment's last record, {what}");
        expect_served_around(&config, topic, &messages, &[last.offset], &what);
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

// ---- 6. Retention. ----

#[test]
fn retention_deletes_old_segments_and_offsets_go_on() {
    const SEGMENT: u64 = 1024;
    const RETENTION: usize = 4096;
    let root = TempDir::new("retention");
    let data = root.path().join("data");
    let config = Config {
        segment_bytes: SEGMENT,
        retention_bytes: Some(RETENTION),
        ..disk_config(&data)
    };
    let topic = "retained";
    let messages: Vec<Vec<u8>> = (0..100)
        .map(|i| format!("{i:03}{}", ".".repeat(97)).into_bytes())
        .collect();
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    publish_at(addr, topic, 0, &messages);

    // Retention runs before the dispatcher answers the last publish.
    let dir = topic_dir(&data, topic);
    let kept = segments(&dir);
    let oldest = kept[0].0;
    let kept_bytes: u64 = kept
        .iter()
        .map(|(_, p)| fs::metadata(p).unwrap().len())
        .sum();
    // 100 records of 124 bytes fill 12 segments of 1 KiB.
    assert!(
        oldest > 0 && kept.len() < 12,
        "segments kept: {:?}",
        kept.iter().map(|(base, _)| base).collect::<Vec<_>>()
    );
    // Whole segments go, so what is kept is the retention give or take a
    // segment, whether it counts payload bytes (100 a message) or file
    // bytes (124).
    let record = (HEADER + 100) as u64;
    let count = 100 - oldest;
    assert!(
        count * 100 <= RETENTION as u64 + SEGMENT + record
            && count * record + SEGMENT + record >= RETENTION as u64,
        "{count} messages ({kept_bytes} bytes on disk) kept, retention {RETENTION}"
    );
    // The segments left are whole, and hold every offset from the oldest.
    let offsets: Vec<u64> = kept
        .iter()
        .flat_map(|(_, path)| sound_records(path))
        .map(|r| r.offset)
        .collect();
    assert_eq!(offsets, (oldest..100).collect::<Vec<u64>>());

    assert_eq!(topic_range(addr, topic), (oldest, 100));
    // A subscriber from an offset no longer held starts at the oldest kept.
    expect_log(addr, topic, 0, oldest, &messages[oldest as usize..]);
    expect_log(
        addr,
        topic,
        oldest - 1,
        oldest,
        &messages[oldest as usize..],
    );
    let mut messages = messages;
    messages.push(b"one more".to_vec());
    publish_at(addr, topic, 100, &messages[100..]);

    let broker = restart(broker, &config);
    let addr = broker.local_addr();
    let (first, next) = topic_range(addr, topic);
    assert_eq!(next, 101);
    assert!(first >= oldest, "{first} after a restart, {oldest} before");
    assert_eq!(first, segments(&dir)[0].0);
    expect_log(addr, topic, 0, first, &messages[first as usize..]);
    broker.shutdown();
}

/// A segment holding a message a connected subscriber has yet to read is
/// not deleted, however far over its retention the topic grows.
#[test]
fn retention_keeps_segments_a_connected_subscriber_has_yet_to_read() {
    let root = TempDir::new("retention-reader");
    let data = root.path().join("data");
    let config = Config {
        segment_bytes: 1024,
        retention_bytes: Some(4096),
        max_inflight: 1,
        ..disk_config(&data)
    };
    let topic = "slowly-read";
    let messages: Vec<Vec<u8>> = (0..100)
        .map(|i| format!("{i:03}{}", "-".repeat(97)).into_bytes())
        .collect();
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    // Takes offset 0 and acks nothing: offset 1 on is yet to be read.
    let mut slow = Line::connect(addr);
    assert_eq!(slow.ask(&format!("SUB {topic} from 0 manual")), "+OK");
    publish_at(addr, topic, 0, &messages);

    let dir = topic_dir(&data, topic);
    assert_eq!(
        segments(&dir)[0].0,
        0,
        "the segment of offset 1 was deleted"
    );
    for (offset, message) in messages.iter().enumerate() {
        slow.expect_msg(topic, offset as u64, message);
        slow.send("ACK\n");
    }
    assert_eq!(slow.ask("PING"), "+PONG");
    // Everything read: the next message lets retention catch up.
    publish_at(addr, topic, 100, &[b"catch up".to_vec()]);
    let kept = segments(&dir);
    assert!(kept[0].0 > 0 && kept.len() < 12, "{} segments", kept.len());
    broker.shutdown();
}

/// A subscriber skips a damaged record like any reader, so its cursor
/// does not stop there and hold back retention for good.
#[test]
fn a_damaged_record_does_not_hold_back_retention() {
    let root = TempDir::new("retention-damage");
    let topic = "damaged-and-retained";
    let (config, messages, segments) = segmented(&root, topic, 512, 40);
    let first = &segments[0].1;
    let records = sound_records(first);
    flip_byte(first, records[2].at + HEADER);
    let config = Config {
        retention_bytes: Some(1024),
        ..config
    };
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    let mut reader = Line::connect(addr);
    assert_eq!(reader.ask(&format!("SUB {topic} beginning")), "+OK");
    for (offset, message) in messages.iter().enumerate() {
        if offset as u64 != records[2].offset {
            reader.expect_msg(topic, offset as u64, message);
        }
    }
    assert_eq!(reader.ask("PING"), "+PONG");
    // Everything read: the next message lets retention delete the
    // damaged segment.
    publish_at(addr, topic, 40, &[b"after".to_vec()]);
    reader.expect_msg(topic, 40, b"after");
    let (start, _) = topic_range(addr, topic);
    assert!(start > records[2].offset, "the log still starts at {start}");
    broker.shutdown();
}

// ---- 7. Segments. ----

#[test]
fn segments_roll_and_are_named_by_their_first_offset() {
    const SEGMENT: u64 = 1024;
    let root = TempDir::new("segments");
    let data = root.path().join("data");
    let config = Config {
        segment_bytes: SEGMENT,
        ..disk_config(&data)
    };
    let topic = "rolling";
    // Sizes from 1 to 300 bytes, in no order.
    let messages: Vec<Vec<u8>> = (0..60u32)
        .map(|i| vec![b'a' + (i % 26) as u8; 1 + (i * 83 % 300) as usize])
        .collect();
    let before = now_ms();
    let broker = start_broker(&config);
    publish_at(broker.local_addr(), topic, 0, &messages);
    broker.shutdown();
    let after = now_ms();

    let segments = segments(&topic_dir(&data, topic));
    let total: usize = messages.iter().map(|m| HEADER + m.len()).sum();
    assert!(
        segments.len() as u64 >= total as u64 / (SEGMENT + 324),
        "{} segments for {total} bytes",
        segments.len()
    );
    let mut next = 0;
    for (i, (base, path)) in segments.iter().enumerate() {
        let records = sound_records(path);
        // Named by the offset of its first record, or, if it is the
        // active segment and still empty, of the next one.
        assert_eq!(*base, next, "{}", path.display());
        assert!(
            !records.is_empty() || i + 1 == segments.len(),
            "{} is empty",
            path.display()
        );
        for record in &records {
            assert_eq!(record.offset, next, "{}", path.display());
            assert_eq!(record.payload, messages[next as usize]);
            assert!(
                (before..=after).contains(&record.timestamp),
                "offset {next} stamped {}, published between {before} and {after}",
                record.timestamp
            );
            next += 1;
        }
        // A segment is closed once it reaches the size, not before and not
        // more than one record after.
        if i + 1 < segments.len() {
            let size = records.last().unwrap().end() as u64;
            let last = (HEADER + records.last().unwrap().payload.len()) as u64;
            assert!(
                size >= SEGMENT && size - last < SEGMENT,
                "{} closed at {size} bytes, its last record {last}",
                path.display()
            );
        }
    }
    assert_eq!(next, 60);

    let broker = start_broker(&config);
    let addr = broker.local_addr();
    expect_log(addr, topic, 0, 0, &messages);
    publish_at(addr, topic, 60, &[b"sixty".to_vec()]);
    broker.shutdown();
}

/// A segment that reached its size as its last message was written leaves
/// an empty segment after it; a restart starts from there.
#[test]
fn a_log_that_just_rolled_recovers_at_the_next_offset() {
    let root = TempDir::new("just-rolled");
    let data = root.path().join("data");
    let config = Config {
        segment_bytes: 1024,
        ..disk_config(&data)
    };
    let topic = "just-rolled";
    // Eight records of 128 bytes: exactly 1 KiB.
    let messages: Vec<Vec<u8>> = (0..8).map(|i| vec![b'0' + i; 104]).collect();
    let broker = start_broker(&config);
    publish_at(broker.local_addr(), topic, 0, &messages);
    let broker = restart(broker, &config);
    let addr = broker.local_addr();
    assert_eq!(topic_range(addr, topic), (0, 8));
    expect_log(addr, topic, 0, 0, &messages);
    publish_at(addr, topic, 8, &[b"eight".to_vec()]);
    let broker = restart(broker, &config);
    let mut messages = messages;
    messages.push(b"eight".to_vec());
    expect_log(broker.local_addr(), topic, 0, 0, &messages);
    broker.shutdown();
    let bases: Vec<u64> = segments(&topic_dir(&data, topic))
        .into_iter()
        .map(|(base, _)| base)
        .collect();
    assert_eq!(bases, [0, 8]);
}

// ---- 8. Fsync policies. ----

#[test]
fn every_fsync_policy_stores_and_recovers() {
    for (what, fsync) in [
        ("always", Fsync::Always),
        ("batch", Fsync::Batch),
        ("never", Fsync::Never),
    ] {
        let root = TempDir::new(what);
        let data = root.path().join("data");
        let config = Config {
            fsync,
            ..disk_config(&data)
        };
        let messages = payloads(what, 5);
        let broker = start_broker(&config);
        publish_at(broker.local_addr(), what, 0, &messages);
        let broker = restart(broker, &config);
        let addr = broker.local_addr();
        assert_eq!(
            topic_lines(addr),
            BTreeSet::from([topic_line(what, 5, 0, 5)])
        );
        expect_log(addr, what, 0, 0, &messages);
        publish_at(addr, what, 5, &[b"five".to_vec()]);
        broker.shutdown();
    }
}

/// What PULL took stays taken after a restart: the pull position is saved
/// with the log.
#[test]
fn pulled_messages_stay_pulled_across_a_restart() {
    let root = TempDir::new("pulled");
    let data = root.path().join("data");
    let config = disk_config(&data);
    let messages = payloads("pulled", 10);
    let broker = start_broker(&config);
    publish_at(broker.local_addr(), "jobs", 0, &messages);
    let mut puller = Line::connect(broker.local_addr());
    puller.send("PULL jobs 4\n");
    let (taken, count) = puller.read_pull();
    assert_eq!(count, 4);
    assert_eq!(
        taken.iter().map(|m| m.offset).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );

    let broker = restart(broker, &config);
    let mut puller = Line::connect(broker.local_addr());
    puller.send("PULL jobs\n");
    let (rest, count) = puller.read_pull();
    assert_eq!(count, 6);
    let offsets: Vec<u64> = rest.iter().map(|m| m.offset).collect();
    assert_eq!(offsets, [4, 5, 6, 7, 8, 9]);
    for message in &rest {
        assert_eq!(message.payload, messages[message.offset as usize]);
    }
    // And the messages themselves are still in the log for subscribers.
    expect_log(broker.local_addr(), "jobs", 0, 0, &messages);
    broker.shutdown();
}

/// A consumer group keeps its place across a restart: what it acked stays
/// done, what it had not finished comes again, and a member that comes back
/// joins the group where it is, whatever start it asks for.
#[test]
fn a_consumer_group_resumes_where_it_was_after_a_restart() {
    let root = TempDir::new("group");
    let data = root.path().join("data");
    let config = disk_config(&data);
    let messages = payloads("jobs", 10);
    let broker = start_broker(&config);
    publish_at(broker.local_addr(), "jobs", 0, &messages);
    let mut member = Line::connect(broker.local_addr());
    member.send("SUB jobs beginning manual group workers\n");
    member.expect_line("+OK");
    for (offset, payload) in messages.iter().enumerate() {
        member.expect_msg("jobs", offset as u64, payload);
    }
    // Acks 0 to 3, then one NACK: offset 4 goes back to the group, and
    // comes again, before or after the PONG. The PONG comes once the
    // group's position is on disk.
    member.send("ACK\nACK\nACK\nACK\nNACK\nPING\n");
    let first = member.read_line();
    let again = match first.as_str() {
        "+PONG" => member.read_msg(),
        header => {
            let msg = member.msg_after(header);
            member.expect_line("+PONG");
            msg
        }
    };
    assert_eq!((again.offset, &again.payload), (4, &messages[4]));

    let broker = restart(broker, &config);
    let mut member = Line::connect(broker.local_addr());
    member.send("SUB jobs current manual group workers\n");
    member.expect_line("+OK");
    for (offset, payload) in messages.iter().enumerate().skip(4) {
        member.expect_msg("jobs", offset as u64, payload);
    }
    member.expect_silence(QUIET);
    broker.shutdown();
}

/// A message of the replay test: its index, then dots up to 4 KiB.
fn replay_payload(i: u32) -> Vec<u8> {
    let mut payload = format!("{i:08}").into_bytes();
    payload.resize(4096, b'.');
    payload
}

/// Replaying a large topic from its segments to a new subscriber holds up
/// nobody else: a publisher and a subscriber of another topic go on
/// exchanging messages meanwhile, and the replay gets everything, in order.
#[test]
fn a_replay_from_the_segments_keeps_other_clients_flowing() {
    const MESSAGES: u32 = 3_000;
    let root = TempDir::new("replay");
    let data = root.path().join("data");
    let config = disk_config(&data);
    let broker = start_broker(&config);
    let mut publisher = Publisher::connect_confirmed(broker.local_addr()).unwrap();
    for batch in (0..MESSAGES).collect::<Vec<_>>().chunks(1000) {
        for &i in batch {
            publisher.publish("big", &replay_payload(i)).unwrap();
        }
        for &i in batch {
            assert_eq!(publisher.confirmation().unwrap(), u64::from(i));
        }
    }
    drop(publisher);
    // After a restart nothing is cached: all 12 MB come from the segments.
    let broker = restart(broker, &config);
    let addr = broker.local_addr();
    let mut bystander = Bystander::new(addr);
    let replay = thread::spawn(move || {
        let mut replayer = subscriber(addr, &["big"], StartAt::Beginning);
        for i in 0..MESSAGES {
            expect_next_ack(&mut replayer, "big", &replay_payload(i));
        }
    });
    for _ in 0..50 {
        bystander.check();
    }
    replay
        .join()
        .expect("the replay got every message in order");
    bystander.check();
}

// ---- The brook binary: killed, and short of disk. ----

/// Starts `brook --fsync <fsync>` on `data`; with `file_blocks`, files it
/// writes may not grow beyond that many 512-byte blocks (`ulimit -f`), and a
/// write that would make them is refused with `EFBIG`, as a full disk
/// refuses one with `ENOSPC`.
fn start_brook(data: &Path, fsync: &str, file_blocks: Option<u32>) -> BrookProcess {
    try_start_brook(data, fsync, file_blocks).unwrap_or_else(|error| panic!("{error}"))
}

/// Like [`start_brook`], but a broker that does not start is an error that
/// says why.
fn try_start_brook(
    data: &Path,
    fsync: &str,
    file_blocks: Option<u32>,
) -> Result<BrookProcess, String> {
    let brook = env!("CARGO_BIN_EXE_brook");
    let mut command = match file_blocks {
        None => Command::new(brook),
        Some(blocks) => {
            // SIGXFSZ ignored, so that the write fails instead.
            let mut sh = Command::new("sh");
            sh.args(["-c", "trap '' XFSZ; ulimit -S -f \"$0\" && exec \"$@\""])
                .arg(blocks.to_string())
                .arg(brook);
            sh
        }
    };
    command
        .args(["--addr", "127.0.0.1:0", "--fsync", fsync, "--data-dir"])
        .arg(data);
    BrookProcess::start(command, WAIT)
}

/// Runs the `brook` binary on `data` with `--on-damage stop`, which must
/// refuse to start: returns whether it exited with success, and its stderr.
fn refused_binary(data: &Path) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_brook"))
        .args(["--addr", "127.0.0.1:0", "--on-damage", "stop", "--data-dir"])
        .arg(data)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start brook");
    let mut stderr = child.stderr.take().unwrap();
    let (done, finished) = mpsc::channel();
    thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        let _ = done.send(text);
    });
    // Its stderr closes when it exits; a broker that started never does.
    let text = finished.recv_timeout(WAIT);
    let _ = child.kill();
    let status = child.wait().unwrap();
    match text {
        Ok(text) => (status.success(), text),
        Err(_) => panic!("brook did not exit within {WAIT:?} ({status})"),
    }
}

#[test]
fn the_binary_warns_of_a_cut_tail_and_of_a_corrupt_middle_which_it_skips_or_refuses() {
    let root = TempDir::new("binary");
    let data = root.path().join("data");
    let config = disk_config(&data);
    let topic = "logged";
    let (_, records) = ten_messages(&config, &data, topic);
    let segment = last_segment(&data, topic);
    let file_name = segment.file_name().unwrap().to_string_lossy().into_owned();
    truncate(&segment, records[9].end() - 3);

    let broker = start_brook(&data, "batch", None);
    let log = broker.stderr();
    let warning = log
        .lines()
        .find(|line| line.contains("WARN") && line.contains(&file_name));
    assert!(
        warning.is_some_and(|line| line.contains(topic)),
        "no warning naming {topic:?} and {file_name:?}:\n{log}"
    );
    drop(broker);

    flip_byte(&segment, records[3].at + HEADER);
    let (success, log) = refused_binary(&data);
    assert!(!success, "brook exited with success:\n{log}");
    let error = log.lines().find(|line| line.contains("ERROR"));
    assert!(
        error.is_some_and(|line| line.contains(topic) && line.contains(&file_name)),
        "no error naming {topic:?} and {file_name:?}:\n{log}"
    );
    assert!(!log.contains("listening on"), "{log}");

    // By default it starts, and says which offset it skips, and where.
    let broker = start_brook(&data, "batch", None);
    let log = broker.stderr();
    let error = log.lines().find(|line| line.contains("ERROR"));
    let position = format!("at byte {} of", records[3].at);
    assert!(
        error.is_some_and(|line| line.contains(topic)
            && line.contains("offset 3 ")
            && line.contains(&position)
            && line.contains(&file_name)),
        "no error naming {topic:?}, offset 3, {position:?} and {file_name:?}:\n{log}"
    );
}

/// Every message of `topic`, as `TOPICS` counts them, read from the
/// beginning on a new connection.
fn read_log(addr: SocketAddr, topic: &str) -> Vec<Msg> {
    let (first, next) = topic_range(addr, topic);
    let mut client = Line::connect(addr);
    assert_eq!(
        client.ask(&format!("SUB {} beginning", quote(topic))),
        "+OK"
    );
    let msgs: Vec<Msg> = (first..next).map(|_| client.read_msg()).collect();
    assert_eq!(client.ask("PING"), "+PONG", "more than TOPICS said");
    let offsets: Vec<u64> = msgs.iter().map(|m| m.offset).collect();
    assert_eq!(offsets, (first..next).collect::<Vec<u64>>());
    msgs
}

/// The payload of the message published at `offset`.
fn crash_payload(offset: u64) -> String {
    format!("crash {offset} {}", "z".repeat((offset % 41) as usize))
}

/// Publishes as fast as the broker takes messages, kills the broker with
/// SIGKILL after some hundreds of confirmations while the publisher goes
/// on, and checks that a new broker has every confirmed message, in order,
/// and nothing but what was sent at each offset.
fn killed_while_publishing(fsync: &str) {
    let root = TempDir::new(&format!("crash-{fsync}"));
    let data = root.path().join("data");
    let mut broker = start_brook(&data, fsync, None);
    let kill_after = 500 + u64::from(std::process::id() % 500);

    let stream = TcpStream::connect(broker.addr).unwrap();
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    // Publishes until the broker is gone, in chunks of lines.
    let mut sending = stream.try_clone().unwrap();
    let publisher = thread::spawn(move || {
        let mut sent = 0u64;
        while sent < 100_000 {
            let chunk: String = (sent..sent + 16)
                .map(|offset| format!("PUB crash {}\n", crash_payload(offset)))
                .collect();
            sent += 16;
            // A chunk the broker died reading counts as sent: it may have
            // taken some of its lines.
            if sending.write_all(chunk.as_bytes()).is_err() {
                break;
            }
        }
        sent
    });
    // Kills the broker once told to, while the publisher goes on.
    let mut child = broker.take_child();
    let (kill, killed) = mpsc::channel::<()>();
    let killer = thread::spawn(move || {
        let _ = killed.recv_timeout(2 * WAIT);
        child.kill().unwrap();
        child.wait().unwrap()
    });

    let mut confirmed = 0u64;
    let mut replies = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        match replies.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) if line.ends_with('\n') => {}
            Ok(_) => break, // cut short by the kill
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("after {confirmed} confirmations: {e}"),
        }
        assert_eq!(line, format!("+OK {confirmed}\n"));
        confirmed += 1;
        if confirmed == kill_after {
            kill.send(()).unwrap();
        }
    }
    let status = killer.join().unwrap();
    let sent = publisher.join().unwrap();
    assert!(
        confirmed >= kill_after,
        "the broker stopped after {confirmed} confirmations ({status}); stderr:\n{}",
        broker.stderr()
    );

    let broker = start_brook(&data, fsync, None);
    let msgs = read_log(broker.addr, "crash");
    let stored = msgs.len() as u64;
    assert!(
        (confirmed..=sent).contains(&stored),
        "{stored} messages stored, {confirmed} confirmed, {sent} sent; stderr:\n{}",
        broker.stderr()
    );
    for msg in &msgs {
        assert_eq!(
            String::from_utf8_lossy(&msg.payload),
            crash_payload(msg.offset),
            "offset {}",
            msg.offset
        );
    }
    let mut client = Line::connect(broker.addr);
    assert_eq!(
        client.ask("PUB crash after the crash"),
        format!("+OK {stored}")
    );
}

#[test]
fn a_killed_broker_keeps_every_message_it_confirmed_with_fsync_always() {
    killed_while_publishing("always");
}

#[test]
fn a_killed_broker_keeps_every_message_it_confirmed_with_fsync_batch() {
    killed_while_publishing("batch");
}

#[test]
fn a_killed_broker_keeps_every_message_it_confirmed_with_fsync_never() {
    killed_while_publishing("never");
}

/// A line-protocol connection the broker may close (or die under): `ask`
/// returns `None` then, instead of failing the test.
struct Asker {
    reader: BufReader<TcpStream>,
}

impl Asker {
    fn connect(addr: SocketAddr) -> Asker {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        Asker {
            reader: BufReader::new(stream),
        }
    }

    /// Sends `command` and returns the reply line, without its `\n`.
    fn ask(&mut self, command: &str) -> Option<String> {
        let line = format!("{command}\n");
        self.reader.get_mut().write_all(line.as_bytes()).ok()?;
        let mut reply = String::new();
        match self.reader.read_line(&mut reply) {
            Ok(_) if reply.ends_with('\n') => {
                reply.pop();
                Some(reply)
            }
            Ok(_) => None,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => None,
            Err(e) => panic!("no reply to {:?}: {e}", &command[..command.len().min(40)]),
        }
    }
}

/// A broker whose segment file cannot grow (a full disk) must not confirm
/// a message it could not write: it may refuse it, or stop. If it goes on,
/// and the disk takes writes again (the limit lifted with `prlimit`, if
/// this machine has it), what it confirms then must survive too. Either
/// way a new broker opens the log and has every confirmed message.
fn short_of_disk(fsync: &str) {
    let root = TempDir::new(&format!("full-{fsync}"));
    let data = root.path().join("data");
    // 4 blocks: 2,048 bytes, two records of 724 bytes and most of a third.
    let broker = start_brook(&data, fsync, Some(4));
    let payload = |i: u64| format!("{i:03}{}", "f".repeat(697));
    let mut client = Asker::connect(broker.addr);
    let mut confirmed = BTreeMap::new();
    let mut refused = Vec::new();
    // Whether the connection is still open.
    let mut publish = |client: &mut Asker, i: u64| -> bool {
        match client.ask(&format!("PUB full {}", payload(i))) {
            Some(reply) => {
                match reply.strip_prefix("+OK ") {
                    Some(offset) => {
                        confirmed.insert(offset.parse::<u64>().unwrap(), payload(i));
                    }
                    None => refused.push(format!("message {i}: {reply}")),
                }
                true
            }
            None => {
                refused.push(format!("message {i}: the connection closed"));
                false
            }
        }
    };
    let mut open = true;
    for i in 0..6 {
        open = open && publish(&mut client, i);
    }
    // Each message was written, or tried, before its reply.
    let segment = last_segment(&data, "full");
    let size = fs::metadata(&segment).unwrap().len();
    assert!(
        size < 6 * 724,
        "the file-size limit did not bite: {size} bytes"
    );
    if open {
        let lifted = Command::new("prlimit")
            .arg(format!("--pid={}", broker.pid()))
            .arg("--fsize=unlimited")
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if lifted {
            for i in 6..9 {
                open = open && publish(&mut client, i);
            }
        } else {
            eprintln!("prlimit is missing: the disk is never freed");
        }
    }
    let first_log = broker.stderr();
    drop(client);
    drop(broker);

    let broker = start_brook(&data, fsync, None);
    let stored: BTreeMap<u64, String> = read_log(broker.addr, "full")
        .into_iter()
        .map(|m| (m.offset, String::from_utf8_lossy(&m.payload).into_owned()))
        .collect();
    let lost: Vec<u64> = confirmed
        .iter()
        .filter(|&(offset, payload)| stored.get(offset) != Some(payload))
        .map(|(offset, _)| *offset)
        .collect();
    assert!(
        lost.is_empty(),
        "--fsync {fsync}: confirmed offsets {:?}, refused {refused:?}, stored offsets {:?}: \
         confirmed and lost {lost:?}\nstderr before the restart:\n{first_log}\nafter:\n{}",
        confirmed.keys().collect::<Vec<_>>(),
        stored.keys().collect::<Vec<_>>(),
        broker.stderr()
    );
    // The log goes on after the last message it holds.
    let next = stored.keys().next_back().map_or(0, |last| last + 1);
    let mut client = Line::connect(broker.addr);
    assert_eq!(client.ask("PUB full after"), format!("+OK {next}"));
}

#[test]
fn a_full_disk_loses_no_confirmed_message_with_fsync_always() {
    short_of_disk("always");
}

#[test]
fn a_full_disk_loses_no_confirmed_message_with_fsync_batch() {
    short_of_disk("batch");
}

#[test]
fn a_full_disk_loses_no_confirmed_message_with_fsync_never() {
    short_of_disk("never");
}

/// A topic whose directory could not be set up (the disk full as its name
/// was written, or a crash then) was never confirmed to anyone: a restart
/// must not recover it under a name nobody used (a partial name, or the
/// empty one), nor refuse to start over it.
#[test]
fn a_topic_whose_creation_failed_comes_back_under_no_other_name() {
    let cases = [
        // Nothing of the name is written.
        (0, "brand-new".to_owned()),
        // 512 bytes of 601 are: the cut falls inside a character.
        (1, format!("a{}", "€".repeat(200))),
    ];
    let mut failures = Vec::new();
    for (blocks, name) in cases {
        let root = TempDir::new("no-room-for-a-name");
        let data = root.path().join("data");
        let broker = start_brook(&data, "batch", Some(blocks));
        let mut client = Asker::connect(broker.addr);
        let reply = client.ask(&format!("PUB {} first", quote(&name)));
        assert!(
            !reply.as_deref().is_some_and(|r| r.starts_with("+OK")),
            "a message to a topic that could not be created was confirmed"
        );
        drop(client);
        drop(broker);

        let case = format!("{} bytes of room, a {}-byte name", blocks * 512, name.len());
        let broker = match try_start_brook(&data, "batch", None) {
            Ok(broker) => broker,
            Err(error) => {
                failures.push(format!("{case}: {error}"));
                continue;
            }
        };
        let lines = topic_lines(broker.addr);
        let others: Vec<&String> = lines
            .iter()
            .filter(|line| **line != topic_line(&name, 0, 0, 0))
            .collect();
        if !others.is_empty() {
            failures.push(format!("{case}: TOPICS lists {others:?}"));
        }
        let mut client = Line::connect(broker.addr);
        assert_eq!(
            client.ask(&format!("PUB {} first", quote(&name))),
            "+OK 0",
            "{case}"
        );
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
