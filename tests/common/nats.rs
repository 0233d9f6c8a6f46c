//! NATS servers and the `brook-bridge` binary as child processes, for
//! `tests/bridge.rs`: each keeps its stderr (read to the end on a thread,
//! so logging never blocks it), can be waited on for a log line, and is
//! killed when dropped.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::temp::TempDir;

/// Whether `nats-server` can run here. Without it the NATS tests skip,
/// unless `BROOK_REQUIRE_NATS=1` (as in `.ci/run`), which makes a skip a
/// failure.
pub fn nats_server_available(test: &str) -> bool {
    let found = Command::new("nats-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        assert!(
            std::env::var("BROOK_REQUIRE_NATS").as_deref() != Ok("1"),
            "{test}: nats-server is not on PATH and BROOK_REQUIRE_NATS=1: apt-get install -y nats-server"
        );
        eprintln!("{test}: SKIPPED: nats-server is not on PATH (apt-get install -y nats-server)");
    }
    found
}

/// A child process whose stderr is kept. Dropping it kills the process.
pub struct LoggedChild {
    child: Child,
    name: String,
    log: Arc<(Mutex<Log>, Condvar)>,
}

/// What a child wrote to its stderr so far, and whether it has closed it
/// (it exited): the last lines reach the test only after the exit itself.
#[derive(Default)]
struct Log {
    text: String,
    closed: bool,
}

impl LoggedChild {
    pub fn spawn(name: &str, mut command: Command) -> LoggedChild {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new((Mutex::new(Log::default()), Condvar::new()));
        let kept = log.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                kept.0.lock().unwrap().text.push_str(&(line + "\n"));
                kept.1.notify_all();
            }
            kept.0.lock().unwrap().closed = true;
            kept.1.notify_all();
        });
        LoggedChild {
            child,
            name: name.to_owned(),
            log,
        }
    }

    /// Waits up to `patience` until its stderr holds `needle` at least
    /// `count` times.
    pub fn wait_for_log(&self, needle: &str, count: usize, patience: Duration) {
        let deadline = Instant::now() + patience;
        let mut log = self.log.0.lock().unwrap();
        while log.text.matches(needle).count() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{}: no {needle:?} ({count}x) within {patience:?}; stderr:\n{}",
                self.name,
                log.text
            );
            log = self.log.1.wait_timeout(log, left).unwrap().0;
        }
    }

    /// The `HOST:PORT` that follows `before` in the log, once it is there.
    pub fn logged_address(&self, before: &str) -> String {
        self.wait_for_log(before, 1, Duration::from_secs(10));
        let log = self.stderr();
        let after = log
            .split_once(before)
            .unwrap_or_else(|| panic!("{}: no {before:?} in its log:\n{log}", self.name))
            .1;
        after
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn stderr(&self) -> String {
        self.log.0.lock().unwrap().text.clone()
    }

    /// Waits up to `patience` for it to exit, and for the last of its
    /// stderr to be read, and returns its status; fails the test, with its
    /// stderr, if it does not.
    #[track_caller]
    pub fn wait_for_exit(&mut self, patience: Duration) -> ExitStatus {
        let deadline = Instant::now() + patience;
        let status = super::process::wait_for_exit(&mut self.child, patience);
        let status = status.unwrap_or_else(|| {
            panic!(
                "{} did not exit within {patience:?}; stderr:\n{}",
                self.name,
                self.stderr()
            )
        });
        let mut log = self.log.0.lock().unwrap();
        while !log.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{}: stderr still open after its exit",
                self.name
            );
            log = self.log.1.wait_timeout(log, left).unwrap().0;
        }
        status
    }

    /// Kills it and waits for it to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LoggedChild {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port nobody listens on now (the kernel's pick for port 0).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().unwrap().port()
}

/// One `nats-server -js`, with its own data directory.
pub struct NatsServer {
    pub name: String,
    pub addr: String,
    pub process: LoggedChild,
    _data: TempDir,
}

impl NatsServer {
    /// A server alone.
    pub fn single() -> NatsServer {
        NatsServer::start("n0", &[])
    }

    /// A server alone, started with `args` too (such as `--auth TOKEN`).
    pub fn with_args(args: &[&str]) -> NatsServer {
        let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        NatsServer::start("n0", &args)
    }

    /// Starts the server on a port it picks itself (`-p -1`), read back
    /// from its log: a port picked here and bound later could be taken
    /// by someone else in between.
    fn start(name: &str, extra_args: &[String]) -> NatsServer {
        let data = TempDir::new("nats");
        let mut command = Command::new("nats-server");
        command
            .args(["-a", "127.0.0.1", "-p", "-1", "-js", "-n", name])
            .arg("-sd")
            .arg(data.path())
            .args(extra_args);
        let process = LoggedChild::spawn(&format!("nats-server {name}"), command);
        process.wait_for_log("Server is ready", 1, Duration::from_secs(10));
        NatsServer {
            name: name.to_owned(),
            addr: process.logged_address("Listening for client connections on "),
            process,
            _data: data,
        }
    }

    /// The address of its cluster port, as its log says.
    fn route_address(&self) -> String {
        self.process
            .logged_address("Listening for route connections on ")
    }
}

/// Three `nats-server -js` routed to one another as the cluster `C`.
pub struct NatsCluster {
    pub servers: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts the three and waits until JetStream has a meta leader. Each
    /// picks its own ports (`-1`); n1 and n2 route to n0, whose cluster
    /// port is read from its log. JetStream's cluster mode will not start
    /// without a route, so n0 is given one that nobody answers (port 1):
    /// n1 and n2 connect to it, and it learns of each from the other.
    pub fn start() -> NatsCluster {
        let cluster_args = |routes: String| {
            [
                "--cluster_name".to_owned(),
                "C".to_owned(),
                "--cluster".to_owned(),
                "nats://127.0.0.1:-1".to_owned(),
                "--routes".to_owned(),
                routes,
            ]
        };
        let first = NatsServer::start("n0", &cluster_args("nats://127.0.0.1:1".into()));
        let to_first = format!("nats://{}", first.route_address());
        let mut servers = vec![first];
        for i in 1..3 {
            servers.push(NatsServer::start(
                &format!("n{i}"),
                &cluster_args(to_first.clone()),
            ));
        }
        let cluster = NatsCluster { servers };
        cluster.wait_for_meta_leader(Duration::from_secs(30));
        cluster
    }

    /// Every server's address, comma-separated, as `--nats` takes them.
    pub fn addrs(&self) -> String {
        let addrs: Vec<&str> = self.servers.iter().map(|s| s.addr.as_str()).collect();
        addrs.join(",")
    }

    /// Waits until JetStream's meta group has a leader: each server logs
    /// it, "Self is new JetStream cluster metadata leader" or "JetStream
    /// cluster new metadata leader: n1/C".
    fn wait_for_meta_leader(&self, patience: Duration) {
        self.servers[0]
            .process
            .wait_for_log("metadata leader", 1, patience);
    }

    /// The server named `name`.
    pub fn server_mut(&mut self, name: &str) -> &mut NatsServer {
        self.servers
            .iter_mut()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no server named {name}"))
    }
}
