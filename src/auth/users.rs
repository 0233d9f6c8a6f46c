//! The auth file (`--auth-file`): who may connect, with which password,
//! and what each may touch (`permissions.rs`).
//!
//! ```text
//! # a comment
//! user alice
//!   password pbkdf2-sha256$100000$<salt hex>$<hash hex>
//!   publish orders.> metrics.*
//!   subscribe orders.>
//!   group orders.>
//! ```
//!
//! Each `user` line starts a block; the lines after it, up to the next
//! `user`, describe that user. Indenting is for people and means nothing.
//! `password` is required, once; `publish`, `subscribe` and `group` list
//! topic rules (`*` alone for every topic) and may be repeated; a user
//! with none may only connect. Anything else is an [`AuthFileError`]
//! naming the file and the line.
//!
//! A password is kept as PBKDF2-HMAC-SHA-256 (`pbkdf2.rs`) of the
//! password and a random salt, which `brook hash-password` makes. A login
//! computes the same hash and compares it in constant time, and a login
//! for a user that does not exist hashes just as long, so neither the
//! answer's timing nor its text says which part was wrong.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::pbkdf2::pbkdf2;
use super::permissions::{Permissions, Rule};
use super::sha256::{from_hex, to_hex};
use crate::pattern::PatternError;

/// How `brook hash-password` and the tests' hashes start.
const SCHEME: &str = "pbkdf2-sha256";
/// The iterations `brook hash-password` uses: about 50 ms of one core in
/// a release build, per login (and per guess, for whoever steals the
/// file).
pub const DEFAULT_ITERATIONS: u32 = 100_000;
/// Salt and hash lengths `brook hash-password` writes. A file's hash must
/// be exactly `HASH_BYTES`, one SHA-256 block of output, and its salt at
/// most `MAX_SALT_BYTES`: a longer hash would cost one more PBKDF2 run per
/// 32 bytes at every login, so a huge one would make every login slow.
const SALT_BYTES: usize = 16;
const HASH_BYTES: usize = 32;
const MAX_SALT_BYTES: usize = 64;
/// More iterations than this would let the auth file make each login
/// take minutes.
const MAX_ITERATIONS: u32 = 10_000_000;

/// A password's hash, as the auth file keeps it.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    iterations: u32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PasswordHash({SCHEME}, {} iterations)", self.iterations)
    }
}

impl PasswordHash {
    /// Hashes `password` with a fresh random salt.
    pub fn new(password: &str, iterations: u32) -> io::Result<PasswordHash> {
        let mut salt = vec![0; SALT_BYTES];
        File::open("/dev/urandom")?.read_exact(&mut salt)?;
        Ok(PasswordHash::with_salt(password, iterations, salt))
    }

    fn with_salt(password: &str, iterations: u32, salt: Vec<u8>) -> PasswordHash {
        let mut hash = vec![0; HASH_BYTES];
        pbkdf2(password.as_bytes(), &salt, iterations, &mut hash);
        PasswordHash {
            iterations,
            salt,
            hash,
        }
    }

    /// Reads `pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>`.
    pub fn parse(text: &str) -> Option<PasswordHash> {
        let mut fields = text.split('$');
        let (scheme, iterations, salt, hash) = (
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
        );
        let iterations = iterations.parse().ok()?;
        let parsed = PasswordHash {
            iterations,
            salt: from_hex(salt)?,
            hash: from_hex(hash)?,
        };
        let valid = scheme == SCHEME
            && fields.next().is_none()
            && (1..=MAX_ITERATIONS).contains(&iterations)
            && (1..=MAX_SALT_BYTES).contains(&parsed.salt.len())
            && parsed.hash.len() == HASH_BYTES;
        valid.then_some(parsed)
    }

    /// Whether `password` is the one hashed, in a time that does not
    /// depend on where the hashes differ.
    pub fn verify(&self, password: &str) -> bool {
        let mut candidate = vec![0; self.hash.len()];
        pbkdf2(
            password.as_bytes(),
            &self.salt,
            self.iterations,
            &mut candidate,
        );
        candidate
            .iter()
            .zip(&self.hash)
            .fold(0u8, |differ, (a, b)| differ | (a ^ b))
            == 0
    }
}

impl fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}${}${}${}",
            self.iterations,
            to_hex(&self.salt),
            to_hex(&self.hash)
        )
    }
}

/// One user of the auth file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    password: PasswordHash,
    pub permissions: Permissions,
}

/// Everyone the auth file lets in.
#[derive(Debug, Clone, Default)]
pub struct Users {
    by_name: HashMap<String, User>,
    /// What a login for an unknown user is checked against, so that it
    /// costs as much as a real one: the hash with the most iterations, so
    /// that no user's login costs more than an unknown name's.
    decoy: Option<PasswordHash>,
}

impl Users {
    /// Reads and parses the auth file at `path`.
    pub fn load(path: &Path) -> Result<Users, AuthFileError> {
        let error = |line, problem| AuthFileError {
            path: path.to_owned(),
            line,
            problem,
        };
        let text = std::fs::read_to_string(path).map_err(|e| error(0, Problem::Unreadable(e)))?;
        let users = parse(&text).map_err(|(line, problem)| error(line, problem))?;
        if let Some((fewest, most)) = users.iteration_spread() {
            log::warn!(
                "auth file {}: password hashes have from {fewest} to {most} iterations; \
                 the faster logins can be told from an unknown user's by their time: \
                 make them all with the same brook hash-password",
                path.display()
            );
        }
        Ok(users)
    }

    /// The fewest and most iterations of the users' hashes, if they differ.
    fn iteration_spread(&self) -> Option<(u32, u32)> {
        let iterations = self.by_name.values().map(|user| user.password.iterations);
        let fewest = iterations.clone().min()?;
        let most = iterations.max()?;
        (fewest != most).then_some((fewest, most))
    }

    /// The user called `name` if `password` is theirs. Takes as long
    /// whether the user exists or not.
    pub fn login(&self, name: &str, password: &str) -> Option<&User> {
        match self.by_name.get(name) {
            Some(user) => user.password.verify(password).then_some(user),
            None => {
                if let Some(decoy) = &self.decoy {
                    decoy.verify(password);
                }
                None
            }
        }
    }

    /// How many users the file lists.
    pub fn count(&self) -> usize {
        self.by_name.len()
    }

    /// The user called `name`, to look again at their permissions after a
    /// reload.
    pub fn get(&self, name: &str) -> Option<&User> {
        self.by_name.get(name)
    }

    /// Whether user `name` of `before` is here too, with the same password
    /// and permissions: if not, a reload closes their connections.
    pub fn keeps(&self, before: &Users, name: &str) -> bool {
        self.get(name)
            .is_some_and(|now| before.get(name) == Some(now))
    }
}

/// A user's block while it is read: where it started, and its password
/// once its line has come.
struct Block {
    line: usize,
    name: String,
    password: Option<PasswordHash>,
    permissions: Permissions,
}

/// Parses the auth file's text; an error carries its line number.
fn parse(text: &str) -> Result<Users, (usize, Problem)> {
    let mut users = Users::default();
    let mut current: Option<Block> = None;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let line = line.split('#').next().unwrap_or_default();
        let mut words = line.split_whitespace();
        let Some(keyword) = words.next() else {
            continue;
        };
        if keyword == "user" {
            let name = match (words.next(), words.next()) {
                (Some(name), None) => name,
                _ => return Err((number, Problem::UserLine)),
            };
            if let Some(done) = current.take() {
                users.add(done)?;
            }
            if users.by_name.contains_key(name) {
                return Err((number, Problem::DuplicateUser(name.to_owned())));
            }
            current = Some(Block {
                line: number,
                name: name.to_owned(),
                password: None,
                permissions: Permissions::default(),
            });
            continue;
        }
        let block = current.as_mut().ok_or((number, Problem::OutsideUser))?;
        let rules = match keyword {
            "password" => {
                if block.password.is_some() {
                    return Err((number, Problem::SecondPassword));
                }
                let hash = match (words.next(), words.next()) {
                    (Some(hash), None) => PasswordHash::parse(hash),
                    _ => None,
                };
                block.password = Some(hash.ok_or((number, Problem::BadHash))?);
                continue;
            }
            "publish" => &mut block.permissions.publish,
            "subscribe" => &mut block.permissions.subscribe,
            "group" => &mut block.permissions.group,
            other => return Err((number, Problem::UnknownKeyword(other.to_owned()))),
        };
        for word in words {
            let rule = Rule::parse(word).map_err(|e| (number, Problem::BadRule(e)))?;
            rules.push(rule);
        }
    }
    if let Some(done) = current.take() {
        users.add(done)?;
    }
    Ok(users)
}

impl Users {
    /// Adds a finished block, if it has its password.
    fn add(&mut self, block: Block) -> Result<(), (usize, Problem)> {
        let Some(password) = block.password else {
            return Err((block.line, Problem::NoPassword(block.name)));
        };
        if self
            .decoy
            .as_ref()
            .is_none_or(|decoy| decoy.iterations < password.iterations)
        {
            self.decoy = Some(password.clone());
        }
        let user = User {
            name: block.name.clone(),
            password,
            permissions: block.permissions,
        };
        self.by_name.insert(block.name, user);
        Ok(())
    }
}

/// An auth file brook cannot use, and where.
#[derive(Debug)]
pub struct AuthFileError {
    pub path: PathBuf,
    /// The line (from 1), or 0 if the file could not be read at all.
    pub line: usize,
    pub(crate) problem: Problem,
}

/// What is wrong with a line of the auth file.
#[derive(Debug)]
pub(crate) enum Problem {
    Unreadable(io::Error),
    /// A `user` line without exactly one name.
    UserLine,
    DuplicateUser(String),
    /// A line before the first `user`.
    OutsideUser,
    SecondPassword,
    BadHash,
    UnknownKeyword(String),
    BadRule(PatternError),
    /// A block (starting at the error's line) with no `password`.
    NoPassword(String),
}

impl fmt::Display for AuthFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match &self.problem {
            Problem::Unreadable(error) => {
                write!(f, "cannot read the auth file {path}: {error} (--auth-file)")
            }
            problem => write!(f, "auth file {path}, line {}: {problem}", self.line),
        }
    }
}

impl fmt::Display for Problem {
    /// What is wrong with the line; an unreadable file has no line, and
    /// [`AuthFileError`] says it whole.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Unreadable(error) => write!(f, "{error}"),
            Problem::UserLine => f.write_str("write 'user NAME', one name without spaces"),
            Problem::DuplicateUser(name) => write!(f, "user {name} is listed twice"),
            Problem::OutsideUser => f.write_str("start each block with 'user NAME'"),
            Problem::SecondPassword => f.write_str("a user has one 'password' line"),
            Problem::BadHash => write!(
                f,
                "expected 'password {SCHEME}$<iterations>$<salt hex>$<hash hex>' \
                 (1 to {MAX_ITERATIONS} iterations, a salt of 1 to {MAX_SALT_BYTES} bytes, \
                 a hash of {HASH_BYTES} bytes); \
                 make one with: brook hash-password < file-with-the-password",
            ),
            Problem::UnknownKeyword(word) => write!(
                f,
                "unknown keyword '{word}': expected user, password, publish, subscribe or group"
            ),
            Problem::BadRule(error) => write!(f, "{error}"),
            Problem::NoPassword(name) => write!(f, "user {name} has no 'password' line"),
        }
    }
}

impl std::error::Error for AuthFileError {}

#[cfg(test)]
mod tests {
    use super::super::permissions::Action;
    use super::*;

    fn hash(password: &str) -> String {
        PasswordHash::with_salt(password, 2, b"salt".to_vec()).to_string()
    }

    #[test]
    fn a_hash_reads_back_and_verifies_only_its_password() {
        let text = hash("secret");
        assert!(text.starts_with("pbkdf2-sha256$2$73616c74$"), "{text}");
        let parsed = PasswordHash::parse(&text).unwrap();
        assert_eq!(parsed.to_string(), text);
        assert!(parsed.verify("secret"));
        assert!(!parsed.verify("Secret"));
        assert!(!parsed.verify(""));
        for bad in [
            "",
            "pbkdf2-sha256$2$73616c74",
            "md5$2$73616c74$00",
            "pbkdf2-sha256$0$73616c74$00",
            "pbkdf2-sha256$x$73616c74$00",
            "pbkdf2-sha256$2$7$00",
            "pbkdf2-sha256$2$$00",
            "pbkdf2-sha256$2$00$00$00",
        ] {
            assert_eq!(PasswordHash::parse(bad), None, "{bad:?}");
        }
        let with = |salt: usize, hash: usize| {
            format!(
                "pbkdf2-sha256$2${}${}",
                "ab".repeat(salt),
                "cd".repeat(hash)
            )
        };
        assert!(PasswordHash::parse(&with(64, 32)).is_some());
        for (salt, hash) in [(65, 32), (16, 31), (16, 33), (16, 1 << 20)] {
            let bad = with(salt, hash);
            assert_eq!(PasswordHash::parse(&bad), None, "{salt}, {hash} bytes");
        }
    }

    #[test]
    fn a_file_of_users_with_permissions() {
        let text = format!(
            "# brook users\n\nuser alice\n  password {}\n  publish orders.> metrics.*\n  \
             subscribe orders.> # reads too\n  subscribe audit\nuser bob\n  password {}\n",
            hash("a"),
            hash("b")
        );
        let users = parse(&text).unwrap();
        assert_eq!(users.count(), 2);
        let alice = users.login("alice", "a").unwrap();
        assert!(alice.permissions.allows(Action::Publish, "metrics.cpu"));
        assert!(alice.permissions.allows(Action::Subscribe, "audit"));
        assert!(!alice.permissions.allows(Action::Group, "orders.eu"));
        assert!(users.login("alice", "b").is_none());
        assert!(users.login("carol", "a").is_none());
        let bob = users.login("bob", "b").unwrap();
        assert_eq!(bob.permissions, Permissions::default());
    }

    #[test]
    fn an_unknown_user_costs_as_much_as_the_dearest_login() {
        let hash = |iterations| PasswordHash::with_salt("x", iterations, b"salt".to_vec());
        let text = format!(
            "user a\n password {}\nuser b\n password {}\nuser c\n password {}\n",
            hash(3),
            hash(7),
            hash(5)
        );
        let users = parse(&text).unwrap();
        assert_eq!(users.decoy.as_ref().map(|decoy| decoy.iterations), Some(7));
        assert_eq!(users.iteration_spread(), Some((3, 7)));
        let same = parse(&format!("user a\n password {}\n", hash(3))).unwrap();
        assert_eq!(same.iteration_spread(), None);
    }

    #[test]
    fn mistakes_name_their_line() {
        let good = format!("user a\n password {}\n", hash("a"));
        let cases = [
            (format!("publish x\n{good}"), 1, "start each block"),
            (format!("{good}user a\n"), 3, "listed twice"),
            (
                format!("{good} password {}\n", hash("b")),
                3,
                "one 'password'",
            ),
            ("user a\n password nope\n".to_owned(), 2, "hash-password"),
            (format!("{good} read x\n"), 3, "unknown keyword 'read'"),
            (format!("{good} publish a..*\n"), 3, "empty token"),
            (
                "user a\n publish x\nuser b\n".to_owned(),
                1,
                "user a has no",
            ),
            (format!("{good}user\n"), 3, "user NAME"),
            (format!("{good}user b c\n"), 3, "user NAME"),
        ];
        for (text, line, words) in cases {
            let (at, problem) = parse(&text).unwrap_err();
            let error = AuthFileError {
                path: "users.conf".into(),
                line: at,
                problem,
            };
            let message = error.to_string();
            assert_eq!(at, line, "{message}");
            assert!(message.starts_with(&format!("auth file users.conf, line {line}: ")));
            assert!(message.contains(words), "{message}");
        }
    }
}
