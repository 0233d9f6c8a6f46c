//! What a scenario runs against, and how its memory and threads are measured.
//!
//! A [`Target`] is brook (in this process, as a child process, or already
//! running elsewhere), the relay (in this process, or as a child process
//! when brook is one), or, with `--peer nats`, a nats-server child process. Each scenario starts a fresh one and stops it
//! afterwards, so no scenario inherits another's stored messages.
//!
//! Measuring uses `/proc`: the peak resident set (`VmHWM`), the thread
//! count and the CPU time. For a broker in this process the peak is reset at the start of the
//! scenario by writing `5` to `/proc/self/clear_refs`, and the threads are
//! counted by name (`conn-*`, `dispatcher`, `acceptor`; the relay's start with
//! `relay`), since the bench's own threads share the process. A sampler
//! thread keeps the largest figures seen; a scenario can also take a sample
//! at the moment it knows to be the peak. A broker in a process of its own
//! also has its CPU time read when it starts and when it stops
//! ([`CpuMeter`]), so that what an external broker used before the scenario
//! does not count.
//!
//! A brook the bench starts keeps its topics in memory or, with a disk
//! store, in a [`data_dir`]: a fresh directory under the system's temp dir
//! that is removed when dropped, so every run starts from an empty store.

use std::fs;
use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use brook::config::{Config, Fsync, Storage};
use brook::server::Broker;
use parking_lot::Mutex;

use crate::common::temp::TempDir;
use crate::relay::{self, Relay};

/// Where brook is, from the command line.
#[derive(Debug, Clone)]
pub enum BrokerChoice {
    /// A fresh broker in this process per scenario (the default).
    InProcess,
    /// A broker already running at this address; measured only if its pid
    /// is known.
    External { addr: SocketAddr, pid: Option<u32> },
    /// A fresh child process of this binary per scenario.
    Binary(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Brook,
    Relay,
    /// nats-server, NATS core: no acks, nothing kept.
    Nats,
}

impl TargetKind {
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Brook => "brook",
            TargetKind::Relay => "relay",
            TargetKind::Nats => "nats",
        }
    }
}

/// What a brook started by the bench keeps its topics in (`--store`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// `--in-memory`.
    Memory,
    /// `--data-dir` on a fresh [`data_dir`], with this `--fsync` policy.
    Disk(Fsync),
}

impl StoreKind {
    /// Every store, in the order the `storage` scenario runs them.
    pub const ALL: [StoreKind; 4] = [
        StoreKind::Memory,
        StoreKind::Disk(Fsync::Never),
        StoreKind::Disk(Fsync::Batch),
        StoreKind::Disk(Fsync::Always),
    ];

    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Memory => "memory",
            StoreKind::Disk(Fsync::Never) => "disk-never",
            StoreKind::Disk(Fsync::Batch) => "disk-batch",
            StoreKind::Disk(Fsync::Always) => "disk-always",
        }
    }

    pub fn from_name(name: &str) -> Option<StoreKind> {
        StoreKind::ALL
            .into_iter()
            .find(|store| store.name() == name)
    }
}

/// Peak memory and threads of a target during one scenario.
#[derive(Debug, Clone, Copy, Default)]
pub struct Resources {
    pub peak_rss_bytes: Option<u64>,
    pub threads: Option<u64>,
}

impl Resources {
    fn max(self, other: Resources) -> Resources {
        Resources {
            peak_rss_bytes: self.peak_rss_bytes.max(other.peak_rss_bytes),
            threads: self.threads.max(other.threads),
        }
    }
}

/// What is known once a target has stopped.
pub struct Stopped {
    pub resources: Resources,
    /// The CPU time the broker's process used from the target's start to its
    /// stop; `None` for a broker in this process, or one whose pid is unknown.
    pub broker_cpu: Option<Duration>,
    /// Set if a child broker had already exited on its own.
    pub crash: Option<String>,
}

/// A running target and the sampler watching it.
pub struct Target {
    pub addr: SocketAddr,
    /// How long brook took to start: in this process, the call to
    /// `brook::server::start` (which recovers a disk store's topics before
    /// it returns); as a child, from starting the process to its "listening
    /// on" line. `None` for a broker already running, and the relay.
    pub start_time: Option<Duration>,
    running: Running,
    sampler: Sampler,
    /// Set where the broker is a process of its own.
    broker_cpu: Option<CpuMeter>,
}

enum Running {
    InProcess(Broker),
    Child(ChildBroker),
    External,
    Relay(Relay),
}

const BROOK_THREADS: &[&str] = &["conn-", "dispatcher", "acceptor"];
const RELAY_THREADS: &[&str] = &[relay::THREAD_PREFIX];

/// The broker flags a scenario runs with.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// `--max-inflight`.
    pub window: usize,
    /// `--retention-bytes`; `None` keeps every message.
    pub retention_bytes: Option<usize>,
    /// `--in-memory`, or `--data-dir`.
    pub storage: Storage,
    /// `--fsync`, for a disk store.
    pub fsync: Fsync,
    /// `--cache-bytes` and `--memory-bytes`, the disk and the memory
    /// store's budgets, each passed to the store it applies to. `None`
    /// leaves brook's default and passes no flag, which a brook binary from
    /// before the budget would refuse.
    pub cache_bytes: Option<usize>,
    pub memory_bytes: Option<usize>,
}

impl Target {
    /// Starts a fresh target.
    pub fn start(
        kind: TargetKind,
        choice: &BrokerChoice,
        settings: &BrokerSettings,
    ) -> Result<Target, String> {
        // The peak counts from here, so it covers the broker's start (a disk
        // store's recovery). Only a target in this process needs this: a
        // child is fresh, an external broker is left alone.
        let in_this_process = match choice {
            BrokerChoice::InProcess => true,
            BrokerChoice::External { .. } => kind == TargetKind::Relay,
            BrokerChoice::Binary(_) => false,
        } && kind != TargetKind::Nats;
        if in_this_process {
            reset_own_peak();
        }
        let started = Instant::now();
        let (addr, running, probe) = match (kind, choice) {
            (TargetKind::Nats, _) => {
                let (child, addr) = ChildBroker::spawn_nats()?;
                let pid = child.process.id();
                (addr, Running::Child(child), Probe::OtherProcess(pid))
            }
            (TargetKind::Relay, BrokerChoice::Binary(_)) => {
                let (child, addr) = ChildBroker::spawn_relay()?;
                let pid = child.process.id();
                (addr, Running::Child(child), Probe::OtherProcess(pid))
            }
            (TargetKind::Relay, _) => {
                let relay = Relay::start().map_err(|e| format!("relay: {e}"))?;
                (
                    relay.addr(),
                    Running::Relay(relay),
                    Probe::ThisProcess(RELAY_THREADS),
                )
            }
            (TargetKind::Brook, BrokerChoice::InProcess) => {
                let defaults = Config::default();
                let config = Config {
                    addr: "127.0.0.1:0".into(),
                    max_inflight: settings.window,
                    retention_bytes: settings.retention_bytes,
                    storage: settings.storage.clone(),
                    fsync: settings.fsync,
                    cache_bytes: settings.cache_bytes.unwrap_or(defaults.cache_bytes),
                    memory_bytes: settings.memory_bytes,
                    ..defaults
                };
                let broker = brook::server::start(&config).map_err(|e| format!("brook: {e}"))?;
                let addr = broker.local_addr();
                (
                    addr,
                    Running::InProcess(broker),
                    Probe::ThisProcess(BROOK_THREADS),
                )
            }
            (TargetKind::Brook, BrokerChoice::External { addr, pid }) => (
                *addr,
                Running::External,
                pid.map_or(Probe::Nothing, Probe::OtherProcess),
            ),
            (TargetKind::Brook, BrokerChoice::Binary(path)) => {
                let (child, addr) = ChildBroker::spawn_brook(path, settings)?;
                let pid = child.process.id();
                (addr, Running::Child(child), Probe::OtherProcess(pid))
            }
        };
        let start_time = match (kind, &running) {
            (TargetKind::Brook, Running::InProcess(_) | Running::Child(_)) => {
                Some(started.elapsed())
            }
            _ => None,
        };
        Ok(Target {
            addr,
            start_time,
            running,
            broker_cpu: probe.cpu_meter(),
            sampler: Sampler::start(probe),
        })
    }

    /// Whether the target runs in this process, where its CPU time cannot
    /// be told from the clients'.
    pub fn shares_this_process(&self) -> bool {
        matches!(self.running, Running::InProcess(_) | Running::Relay(_))
    }

    /// Takes a sample now, on top of the sampler's, such as when a run that
    /// may be over in a few milliseconds has every connection open.
    pub fn sample_now(&self) {
        self.sampler.shared.record(self.sampler.probe);
    }

    /// The largest figures seen so far, a sample taken now among them: the
    /// peak of a run's first part, before a second part on the same target.
    pub fn peak_so_far(&self) -> Resources {
        self.sample_now();
        let peak = *self.sampler.shared.peak.lock();
        peak
    }

    /// Stops the periodic samples (until the end), so that reading `/proc`
    /// does not compete for the cores with something being timed. The peak
    /// RSS is not lost: the kernel keeps it.
    pub fn pause_sampling(&self) {
        self.sampler.shared.paused.store(true, Ordering::Relaxed);
    }

    /// Takes the final measurements, then stops the target.
    pub fn stop(self) -> Stopped {
        let broker_cpu = self.broker_cpu.as_ref().and_then(CpuMeter::used);
        let resources = self.sampler.stop();
        let mut crash = None;
        match self.running {
            Running::InProcess(broker) => broker.shutdown(),
            Running::Child(mut child) => {
                if let Ok(Some(status)) = child.process.try_wait() {
                    crash = Some(format!(
                        "the broker process exited during the run: {status}"
                    ));
                }
                child.kill();
            }
            Running::External => {}
            Running::Relay(relay) => relay.shutdown(),
        }
        Stopped {
            resources,
            broker_cpu,
            crash,
        }
    }
}

// ---- Reading /proc ----

#[derive(Debug, Clone, Copy)]
enum Probe {
    /// This process, counting the threads whose names start with one of these.
    ThisProcess(&'static [&'static str]),
    OtherProcess(u32),
    Nothing,
}

/// Makes this process's peak RSS start again from its current RSS.
fn reset_own_peak() {
    let _ = fs::write("/proc/self/clear_refs", "5");
}

impl Probe {
    fn sample(self) -> Resources {
        match self {
            Probe::ThisProcess(prefixes) => Resources {
                peak_rss_bytes: status_field("/proc/self/status", "VmHWM:").map(|kib| kib * 1024),
                threads: Some(count_threads_named(prefixes)),
            },
            Probe::OtherProcess(pid) => {
                let status = format!("/proc/{pid}/status");
                Resources {
                    peak_rss_bytes: status_field(&status, "VmHWM:").map(|kib| kib * 1024),
                    threads: status_field(&status, "Threads:"),
                }
            }
            Probe::Nothing => Resources::default(),
        }
    }

    /// A meter of the CPU time of a broker in a process of its own.
    fn cpu_meter(self) -> Option<CpuMeter> {
        match self {
            Probe::OtherProcess(pid) => Some(CpuMeter::start(format!("/proc/{pid}/stat"))),
            Probe::ThisProcess(_) | Probe::Nothing => None,
        }
    }
}

/// The CPU time, user and system, that one process uses from the moment the
/// meter starts: a reading then, subtracted from one later.
pub struct CpuMeter {
    stat_path: String,
    at_start: Option<Duration>,
}

impl CpuMeter {
    /// A meter of the bench's own process: its clients, and whatever else
    /// runs in it.
    pub fn of_this_process() -> CpuMeter {
        CpuMeter::start("/proc/self/stat".to_owned())
    }

    fn start(stat_path: String) -> CpuMeter {
        let at_start = cpu_time(&stat_path);
        CpuMeter {
            stat_path,
            at_start,
        }
    }

    /// The CPU time used since the meter started; `None` if `/proc` could
    /// not be read, such as for a process already gone.
    pub fn used(&self) -> Option<Duration> {
        Some(cpu_time(&self.stat_path)?.saturating_sub(self.at_start?))
    }
}

/// Linux counts a process's CPU time in clock ticks of `USER_HZ`, which is
/// 100 a second on every architecture brook runs on (`getconf CLK_TCK`).
/// The bench has no libc to ask `sysconf`, so it assumes 100: a tick is
/// 10 ms, which a scenario's second or more of CPU time makes small.
const CLOCK_TICKS_PER_SECOND: u64 = 100;

/// The CPU time in a `/proc/<pid>/stat` file.
fn cpu_time(stat_path: &str) -> Option<Duration> {
    let ticks = cpu_ticks(&fs::read_to_string(stat_path).ok()?)?;
    Some(Duration::from_millis(ticks * 1000 / CLOCK_TICKS_PER_SECOND))
}

/// `utime` + `stime`, fields 14 and 15 of a `/proc/<pid>/stat` line, in
/// clock ticks. Field 2 is the command name in parentheses, which may hold
/// spaces and parentheses of its own, even `) (`: the fields after it are
/// counted from the last `)`, where field 3 begins.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace().skip(14 - 3);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    user.checked_add(system)
}

/// The number after `field` in a `/proc/*/status` file.
fn status_field(path: &str, field: &str) -> Option<u64> {
    let status = fs::read_to_string(path).ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

/// Threads of this process whose name starts with one of `prefixes`.
fn count_threads_named(prefixes: &[&str]) -> u64 {
    let Ok(tasks) = fs::read_dir("/proc/self/task") else {
        return 0;
    };
    let is_named = |task: &fs::DirEntry| {
        let name = fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        prefixes.iter().any(|prefix| name.starts_with(prefix))
    };
    tasks.flatten().filter(is_named).count() as u64
}

/// Samples a [`Probe`] every 50 ms on a thread of its own, and keeps the
/// maximum. Counting thousands of threads by name takes milliseconds, so the
/// interval stretches to keep the sampler under a tenth of a core, and a
/// scenario can pause it while it times something.
struct Sampler {
    shared: Arc<SamplerShared>,
    thread: JoinHandle<()>,
    probe: Probe,
}

#[derive(Default)]
struct SamplerShared {
    stop: AtomicBool,
    paused: AtomicBool,
    peak: Mutex<Resources>,
}

impl SamplerShared {
    fn record(&self, probe: Probe) {
        let sample = probe.sample();
        let mut peak = self.peak.lock();
        *peak = peak.max(sample);
    }
}

const SAMPLE_INTERVAL: Duration = Duration::from_millis(50);

impl Sampler {
    fn start(probe: Probe) -> Sampler {
        let shared = Arc::new(SamplerShared::default());
        let thread = {
            let shared = shared.clone();
            thread::Builder::new()
                .name("bench-sampler".into())
                .spawn(move || sample_periodically(probe, &shared))
                .expect("cannot start the sampler thread")
        };
        Sampler {
            shared,
            thread,
            probe,
        }
    }

    fn stop(self) -> Resources {
        self.shared.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.shared.record(self.probe);
        let peak = *self.shared.peak.lock();
        peak
    }
}

fn sample_periodically(probe: Probe, shared: &SamplerShared) {
    while !shared.stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        if !shared.paused.load(Ordering::Relaxed) {
            shared.record(probe);
        }
        thread::sleep(SAMPLE_INTERVAL.max(started.elapsed() * 10));
    }
}

// ---- brook, or the relay, as a child process ----

struct ChildBroker {
    process: Child,
    log_reader: Option<JoinHandle<()>>,
}

/// How long a child broker may take to say where it listens: a disk store
/// recovers every topic first, which takes seconds for gigabytes.
const CHILD_START_TIMEOUT: Duration = Duration::from_secs(60);
/// Warnings, errors and panics of a child broker are passed on, up to this
/// many lines.
const CHILD_LOG_LINES: usize = 10;

impl ChildBroker {
    /// Starts `binary --addr 127.0.0.1:0` with the settings' flags and
    /// `RUST_LOG=info`.
    fn spawn_brook(
        binary: &Path,
        settings: &BrokerSettings,
    ) -> Result<(ChildBroker, SocketAddr), String> {
        let mut flags = vec![
            "--addr".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--max-inflight".to_owned(),
            settings.window.to_string(),
        ];
        let budget = match &settings.storage {
            Storage::Memory => ("--memory-bytes", settings.memory_bytes),
            Storage::Disk(_) => ("--cache-bytes", settings.cache_bytes),
        };
        for (flag, bytes) in [("--retention-bytes", settings.retention_bytes), budget] {
            if let Some(bytes) = bytes {
                flags.extend([flag.to_owned(), bytes.to_string()]);
            }
        }
        match &settings.storage {
            Storage::Memory => flags.push("--in-memory".to_owned()),
            Storage::Disk(dir) => flags.extend([
                "--data-dir".to_owned(),
                dir.display().to_string(),
                "--fsync".to_owned(),
                settings.fsync.to_string(),
            ]),
        }
        let mut brook = Command::new(binary);
        brook
            .args(&flags)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null());
        ChildBroker::spawn(brook, binary)
    }

    /// Starts this binary as a relay (see `relay.rs`). Its stdin is a pipe
    /// that only `kill`, or the bench's own end, closes.
    fn spawn_relay() -> Result<(ChildBroker, SocketAddr), String> {
        let bench = std::env::current_exe().map_err(|e| format!("relay: {e}"))?;
        let mut relay = Command::new(&bench);
        relay.arg(relay::SERVE_FLAG).stdin(Stdio::piped());
        ChildBroker::spawn(relay, &bench)
    }

    /// Starts `nats-server` from `PATH` on a port of its choosing (`-p -1`),
    /// which it names in its log.
    fn spawn_nats() -> Result<(ChildBroker, SocketAddr), String> {
        let mut nats = Command::new(NATS_SERVER);
        nats.args(["-a", "127.0.0.1", "-p", "-1"])
            .stdin(Stdio::null());
        ChildBroker::spawn(nats, Path::new(NATS_SERVER))
    }

    /// Starts `command` and reads its address from its "listening on" line.
    fn spawn(mut command: Command, binary: &Path) -> Result<(ChildBroker, SocketAddr), String> {
        let mut process = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let stderr = process.stderr.take().expect("stderr is piped");
        let (address_tx, address_rx) = mpsc::channel();
        let log_reader = thread::Builder::new()
            .name("bench-broker-log".into())
            .spawn(move || read_child_log(BufReader::new(stderr), address_tx))
            .map_err(|e| e.to_string())?;
        let mut child = ChildBroker {
            process,
            log_reader: Some(log_reader),
        };
        match address_rx.recv_timeout(CHILD_START_TIMEOUT) {
            Ok(addr) => Ok((child, addr)),
            Err(_) => {
                let status = child.process.try_wait().ok().flatten();
                child.kill();
                Err(format!(
                    "{} did not log 'listening on HOST:PORT' within {} s{}",
                    binary.display(),
                    CHILD_START_TIMEOUT.as_secs(),
                    status
                        .map(|s| format!(" (it exited: {s})"))
                        .unwrap_or_default()
                ))
            }
        }
    }

    fn kill(mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        if let Some(reader) = self.log_reader.take() {
            let _ = reader.join();
        }
    }
}

/// Sends the address from the "listening on" line, then passes on the first
/// few warnings, errors and panics until the child's stderr closes.
fn read_child_log(log: impl BufRead, address: mpsc::Sender<SocketAddr>) {
    let mut passed_on = 0;
    for line in log.lines().map_while(Result::ok) {
        if let Some(addr) = listening_address(&line) {
            let _ = address.send(addr);
            continue;
        }
        let worth_telling = ["WARN", "ERROR", "[WRN]", "[ERR]", "panicked", "abort"]
            .iter()
            .any(|word| line.contains(word));
        if worth_telling {
            passed_on += 1;
            match passed_on {
                n if n <= CHILD_LOG_LINES => eprintln!("\rbroker: {line}"),
                n if n == CHILD_LOG_LINES + 1 => eprintln!("\rbroker: (more not shown)"),
                _ => {}
            }
        }
    }
}

/// The address in brook's or the relay's `listening on HOST:PORT`, or in
/// nats-server's `Listening for client connections on HOST:PORT`.
fn listening_address(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line
        .split_once("listening on ")
        .or_else(|| line.split_once("Listening for client connections on "))?;
    rest.split_whitespace().next()?.parse().ok()
}

/// The NATS server the `--peer nats` rows run against, found on `PATH`.
pub const NATS_SERVER: &str = "nats-server";

/// Whether `nats-server` is on `PATH` and runs.
pub fn nats_server_available() -> bool {
    Command::new(NATS_SERVER)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

// ---- Data directories ----

/// A fresh data dir for one broker's disk store (see [`TempDir`]): its
/// name starts `brook-bench-`, so a bench killed midway leaves
/// `brook-bench-*` directories behind.
pub fn data_dir() -> Result<TempDir, String> {
    TempDir::create("bench")
}

/// The bytes in the files under `dir`, and how many files.
pub fn usage(dir: &Path) -> io::Result<(u64, u64)> {
    fn add(dir: &Path, usage: &mut (u64, u64)) -> io::Result<()> {
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let metadata = entry.metadata()?;
            if metadata.is_dir() {
                add(&entry.path(), usage)?;
            } else {
                usage.0 += metadata.len();
                usage.1 += 1;
            }
        }
        Ok(())
    }
    let mut usage = (0, 0);
    add(dir, &mut usage)?;
    Ok(usage)
}

/// The file system that holds the system's temp dir, such as `ext4`, from
/// `/proc/mounts`: on `tmpfs` a disk store never touches a disk, and its
/// fsyncs cost nothing.
pub fn temp_dir_file_system() -> Option<String> {
    let temp = std::env::temp_dir().canonicalize().ok()?;
    let mounts = fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (mount_point, kind) = (fields.nth(1)?, fields.next()?);
            temp.starts_with(mount_point)
                .then(|| (mount_point.len(), kind.to_owned()))
        })
        .max()
        .map(|(_, kind)| kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_counted_from_the_last_parenthesis() {
        // A process may name itself anything: here `a) (b c) R 1 (`, with
        // spaces, a `) (` and a state letter to mislead a parser that stops
        // at the first `)`.
        let stat = "4242 (a) (b c) R 1 () S 1 4242 4242 0 -1 4194560 1012 0 0 0 \
                    157 36 0 0 20 0 9 0 5000 1000000 300 18446744073709551615";
        assert_eq!(cpu_ticks(stat), Some(157 + 36));
        assert_eq!(cpu_ticks("4242 (brook) S 1 1"), None, "too few fields");
        assert_eq!(cpu_ticks("4242 brook S 1"), None, "no command name");
    }
}
