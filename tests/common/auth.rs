//! A broker with `--auth-file`, for a test: its users' password lines,
//! the file in a temporary directory of its own, and the configuration
//! that points at it.

use std::path::PathBuf;

use brook::auth::PasswordHash;
use brook::config::{parse_args, Config, Invocation};

use super::broker::config;
use super::temp::TempDir;

/// PBKDF2 iterations of the tests' users: few, so that a thousand wrong
/// passwords take little CPU in a debug build.
const ITERATIONS: u32 = 10;

/// The `password` line of an auth file's block, for `password`.
pub fn password_line(password: &str) -> String {
    let hash = PasswordHash::new(password, ITERATIONS).expect("a salt from /dev/urandom");
    format!("  password {hash}\n")
}

/// An auth file in its own temporary directory, removed with it.
pub struct AuthFile {
    dir: TempDir,
}

impl AuthFile {
    pub fn new(text: &str) -> AuthFile {
        let auth = AuthFile {
            dir: TempDir::new("auth"),
        };
        auth.write(text);
        auth
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("users")
    }

    /// Writes the file again, as an operator editing it before a SIGHUP.
    pub fn write(&self, text: &str) {
        std::fs::write(self.path(), text).unwrap();
    }
}

/// [`config()`] with the authentication flags `args` read as `brook`
/// reads its command line (`--auth-file`, `--allow-anonymous-binary`,
/// `--auth-failure-delay`, `--insecure-allow-anyone`).
pub fn config_with_flags(args: &[&str]) -> Config {
    let args = args.iter().map(|arg| arg.to_string());
    let Ok(Invocation::Run(flags)) = parse_args(args) else {
        panic!("the test's flags parse")
    };
    Config {
        auth_file: flags.auth_file,
        anonymous_binary: flags.anonymous_binary,
        auth_failure_delay: flags.auth_failure_delay,
        insecure_allow_anyone: flags.insecure_allow_anyone,
        ..config()
    }
}

/// [`config()`] with `file` as its `--auth-file`.
pub fn auth_config(file: &AuthFile) -> Config {
    Config {
        auth_file: Some(file.path()),
        ..config()
    }
}
