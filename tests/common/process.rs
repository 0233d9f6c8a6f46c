//! The `brook` binary run as a child process, its stderr collected.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// The `brook` binary as a child process, for the tests that need the real
/// process: to kill it, to limit its files, or to read its memory. Its
/// stderr is read to the end (so logging never blocks it) and kept for the
/// test's messages. Dropping it kills the process.
pub struct BrookProcess {
    /// `None` once a test has taken the child to kill it itself.
    child: Option<Child>,
    pub addr: SocketAddr,
    /// Everything it wrote to stderr so far.
    log: Arc<Mutex<String>>,
    /// Notified each time `log` grows.
    log_grew: Arc<Condvar>,
    /// Told once stderr has been read to its end. The process may
    /// have exited before its last lines are read off the pipe, so
    /// [`BrookProcess::wait_for_exit`] waits for this too.
    log_ended: mpsc::Receiver<()>,
}

impl BrookProcess {
    /// Runs `command`, which must start brook with `--addr 127.0.0.1:0`,
    /// with `RUST_LOG=info` unless `command` sets it, and waits up to
    /// `patience` for its "listening on" line. A broker that does not start
    /// is an error with its stderr.
    pub fn start(mut command: Command, patience: Duration) -> Result<BrookProcess, String> {
        if !command.get_envs().any(|(name, _)| name == "RUST_LOG") {
            command.env("RUST_LOG", "info");
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start brook: {e}"))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(String::new()));
        let log_grew = Arc::new(Condvar::new());
        let (found, listening) = mpsc::channel();
        let (ended, log_ended) = mpsc::channel();
        let (kept, grew) = (log.clone(), log_grew.clone());
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                {
                    let mut log = kept.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
                grew.notify_all();
                if let Some((_, rest)) = line.split_once("listening on ") {
                    let addr = rest.split_whitespace().next().unwrap_or("");
                    let _ = found.send(addr.parse::<SocketAddr>());
                }
            }
            let _ = ended.send(());
        });
        let mut process = BrookProcess {
            child: Some(child),
            addr: "0.0.0.0:0".parse().unwrap(),
            log,
            log_grew,
            log_ended,
        };
        match listening.recv_timeout(patience) {
            Ok(Ok(addr)) => process.addr = addr,
            other => {
                return Err(format!(
                    "brook did not start: no 'listening on' line ({other:?}); stderr:\n{}",
                    process.stderr()
                ))
            }
        }
        Ok(process)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the child was taken").id()
    }

    pub fn stderr(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Hands the process to the test, which then kills it when it chooses.
    pub fn take_child(&mut self) -> Child {
        self.child.take().expect("the child was taken")
    }

    /// Sends the process `signal` (a name `kill -s` knows, such as `TERM`).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {signal} failed: {status}");
    }

    /// Waits up to `patience` for a line of stderr containing `needle`;
    /// fails the test with the stderr if none comes.
    #[track_caller]
    pub fn wait_for_log(&self, needle: &str, patience: Duration) {
        let deadline = Instant::now() + patience;
        let mut log = self.log.lock().unwrap();
        while !log.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {needle:?} in brook's stderr within {patience:?}:\n{log}"
            );
            log = self.log_grew.wait_timeout(log, left).unwrap().0;
        }
    }

    /// Waits up to `patience` for the process to exit, and then for the
    /// rest of its stderr, and returns its status. One that is still
    /// running then is killed, and the test fails.
    #[track_caller]
    pub fn wait_for_exit(&mut self, patience: Duration) -> ExitStatus {
        let mut child = self.take_child();
        let status = wait_for_exit(&mut child, patience).unwrap_or_else(|| {
            panic!(
                "brook did not exit within {patience:?}; stderr:\n{}",
                self.stderr()
            )
        });
        assert!(
            self.log_ended.recv_timeout(patience).is_ok(),
            "brook exited but its stderr did not end within {patience:?}:\n{}",
            self.stderr()
        );
        status
    }
}

/// Waits up to `patience` for `child` to exit, and returns its status;
/// `None` if it is still running then, and it is killed.
pub fn wait_for_exit(child: &mut Child, patience: Duration) -> Option<ExitStatus> {
    let pid = child.id();
    thread::scope(|scope| {
        let (exited, exit) = mpsc::channel();
        scope.spawn(move || exited.send(child.wait()));
        let status = exit.recv_timeout(patience).ok();
        if status.is_none() {
            // Ends the wait above, which holds the child.
            let _ = Command::new("kill")
                .args(["-s", "KILL", &pid.to_string()])
                .status();
        }
        status.and_then(Result::ok)
    })
}

impl Drop for BrookProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
