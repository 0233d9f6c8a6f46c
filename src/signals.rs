//! Hearing SIGTERM and SIGINT (Ctrl-C), so that the `brook` binary can stop
//! cleanly instead of dying with its replies unwritten, and SIGHUP, which
//! asks it to read its `--auth-file` again.
//!
//! The standard library has no signal API and brook takes no crate for one,
//! so this file declares the two C functions it needs itself: `signal`, to
//! install a handler, and `write`, the one thing the handler does. It is
//! one of the two places with `unsafe` code in brook (the other calls the
//! processor's CRC instruction, in `store/crc32c.rs`).
//!
//! A signal handler may run on any thread, between any two instructions,
//! so it may call almost nothing: no allocation, no lock, no logging. The
//! classic way out is the self-pipe: the handler writes one byte (the
//! signal's number) to a socket pair, which is async-signal-safe, and an
//! ordinary thread reads the other end with ordinary blocking code.
//!
//! ```text
//!   SIGTERM ──▶ handler ── write(1 byte) ──▶ [socket pair] ──▶ Signals::wait()
//!               (any thread)                                   (main's signal thread)
//! ```
//!
//! glibc's `signal()` installs a handler that stays installed and restarts
//! interrupted system calls (`SA_RESTART`). All but one kind: a socket
//! read or write with a timeout is never restarted (signal(7)), so the
//! code that reads with one (a reader thread during the handshake, the
//! metrics server) reads again after `EINTR`. Only Linux is supported,
//! where SIGHUP is 1, SIGINT 2 and SIGTERM 15 on every architecture.

use std::io::{self, Read};
use std::os::fd::IntoRawFd;
use std::os::raw::{c_int, c_void};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicI32, Ordering};

/// What `kill -HUP` and `systemctl reload` send: reload the auth file.
pub const SIGHUP: c_int = 1;
/// Ctrl-C at a terminal.
pub const SIGINT: c_int = 2;
/// What `kill`, systemd, Docker and Kubernetes send to ask for a stop.
pub const SIGTERM: c_int = 15;

/// What `signal()` returns when it fails (`SIG_ERR`, which is `-1`).
const SIG_ERR: usize = usize::MAX;

extern "C" {
    /// `sighandler_t signal(int signum, sighandler_t handler)`, where a
    /// `sighandler_t` is a pointer to a function, passed here as a `usize`.
    fn signal(signum: c_int, handler: usize) -> usize;
    /// `ssize_t write(int fd, const void *buf, size_t count)`.
    fn write(fd: c_int, buf: *const c_void, count: usize) -> isize;
}

/// The file descriptor the handler writes to: the sending end of the socket
/// pair, or -1 before [`Signals::install`]. An atomic, because that is all a
/// handler may safely read.
static PIPE: AtomicI32 = AtomicI32::new(-1);

/// The receiving end of the signals SIGTERM, SIGINT and SIGHUP.
#[derive(Debug)]
pub struct Signals {
    receiver: UnixStream,
}

impl Signals {
    /// Installs the handler for SIGTERM, SIGINT and SIGHUP. From now on
    /// none of them ends the process by itself: each is queued for
    /// [`Signals::wait`]. Call it once.
    pub fn install() -> io::Result<Signals> {
        let (sender, receiver) = UnixStream::pair()?;
        // A handler must never block: if the socket is somehow full, the
        // signal is dropped, and the ones already queued still tell.
        sender.set_nonblocking(true)?;
        // The handler may run until the process exits, so the sending end
        // is never closed: its descriptor number must not be reused.
        PIPE.store(sender.into_raw_fd(), Ordering::SeqCst);
        for signum in [SIGTERM, SIGINT, SIGHUP] {
            let handler = on_signal as extern "C" fn(c_int) as usize;
            // SAFETY: `on_signal` is an `extern "C" fn(c_int)`, the type a
            // handler must have, and it only reads an atomic and calls
            // `write`, which POSIX lists as async-signal-safe.
            if unsafe { signal(signum, handler) } == SIG_ERR {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(Signals { receiver })
    }

    /// Blocks until the next SIGTERM, SIGINT or SIGHUP arrives, and
    /// returns its number.
    pub fn wait(&mut self) -> io::Result<c_int> {
        let mut signum = [0u8; 1];
        self.receiver.read_exact(&mut signum)?;
        Ok(c_int::from(signum[0]))
    }
}

/// The handler: writes the signal's number, as one byte, to the socket pair.
extern "C" fn on_signal(signum: c_int) {
    let fd = PIPE.load(Ordering::SeqCst);
    let byte = signum as u8;
    // SAFETY: `byte` lives on this stack frame for the whole call, and
    // `write` reads exactly the one byte it is given. A failed write (the
    // socket full of unread signals) is ignored: there is nothing a handler
    // could do about it. Only a failed write sets `errno`, which a handler
    // should leave as it found it; a full socket needs thousands of
    // signals nobody has read, so that is left alone here.
    unsafe {
        write(fd, (&byte as *const u8).cast(), 1);
    }
}

/// The name of signal `signum`, for the log.
pub fn name(signum: c_int) -> &'static str {
    match signum {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}
