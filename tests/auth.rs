//! Who may connect, and what they may touch (`--auth-file`, `src/auth/`),
//! over real TCP in both protocols: a line client logs in first (within
//! `--handshake-timeout`, its `PUBN` payloads skipped until then) or is
//! turned away; each user publishes, subscribes, pulls and joins groups
//! only where the auth file lets them, and hears why not elsewhere, on a
//! connection that stays usable; a binary client logs in with action 8,
//! again if it likes, or gets `--allow-anonymous-binary`'s permissions;
//! guessing passwords slows only the guesser's address, one guess at a
//! time (a bystander pair, anonymous binary clients on their own topics,
//! gets every message meanwhile, and a long delay is shown to hold back
//! no one else by the order replies come in); protected mode; a bad auth
//! file at start-up; `brook hash-password`; and SIGHUP's reload, which
//! closes the connections of users it removes or changes.

mod common;

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use brook::client::{ClientError, Login, Publisher, Subscriber};
use brook::config::Config;
use brook::server::{Broker, StartError};
use brook::wire::request::StartAt;

use common::auth::{auth_config, config_with_flags, password_line, AuthFile};
use common::broker::{config, start_broker};
use common::client::{expect_next_ack, Bystander};
use common::frames::{error_reply, publish_frame, subscribe_request, CURRENT, PUBLISH, SUBSCRIBED};
use common::line::Line;
use common::process::BrookProcess;
use common::raw::Raw;
use common::WAIT;

/// alice publishes and reads `orders.>`, joins groups on `jobs`; bob may
/// only read `audit`.
fn users_text() -> String {
    format!(
        "# test users\nuser alice\n{}  publish orders.> jobs\n  subscribe orders.>\n  group jobs\n\
         user bob\n{}  subscribe audit\n",
        password_line("alice-secret"),
        password_line("bob-secret"),
    )
}

/// A broker on loopback whose auth file holds `users`, and whose binary
/// clients may use the bystander's topics (and `public.>`) without logging
/// in; and the file, which the broker reads only as it starts. Failed
/// logins wait 1 µs, doubling up to 32 µs, so that thousands of guesses
/// from one address take little time.
fn auth_broker(users: &str) -> (Broker, AuthFile) {
    auth_broker_at("127.0.0.1:0", "1us", users)
}

/// [`auth_broker`] listening on `addr`, with `--auth-failure-delay
/// failure_delay`.
fn auth_broker_at(addr: &str, failure_delay: &str, users: &str) -> (Broker, AuthFile) {
    let file = AuthFile::new(users);
    let flags = config_with_flags(&[
        "--auth-file",
        file.path().to_str().unwrap(),
        "--allow-anonymous-binary",
        "bystander,public.>",
        "--auth-failure-delay",
        failure_delay,
    ]);
    let config = Config {
        addr: addr.into(),
        ..flags
    };
    (start_broker(&config), file)
}

/// A line client logged in as `user`.
fn logged_in(broker: &Broker, user: &str, password: &str) -> Line {
    logged_in_at(broker.local_addr(), user, password)
}

const AUTH_REQUIRED: &str = "-ERR authentication required: send AUTH <user> <password> first";
const AUTH_USAGE: &str =
    "-ERR usage: AUTH <user> <password>, quoted if it has a space: AUTH alice \"my secret\"";

#[test]
fn a_line_client_logs_in_first_and_three_requests_before_that_close_it() {
    let (broker, _file) = auth_broker(&users_text());
    let mut bystander = Bystander::new(broker.local_addr());

    let mut client = Line::connect(broker.local_addr());
    assert_eq!(client.ask("PING"), AUTH_REQUIRED);
    assert_eq!(client.ask("SUB orders.eu"), AUTH_REQUIRED);
    assert_eq!(client.ask("TOPICS"), AUTH_REQUIRED);
    client.expect_eof();

    let mut client = Line::connect(broker.local_addr());
    assert_eq!(client.ask("PUB orders.eu sneaky"), AUTH_REQUIRED);
    assert_eq!(client.ask("AUTH alice my secret"), AUTH_USAGE);
    assert_eq!(client.ask("AUTH alice wrong"), "-ERR invalid credentials");
    assert_eq!(
        client.ask("AUTH nobody alice-secret"),
        "-ERR invalid credentials"
    );
    assert_eq!(client.ask("AUTH alice alice-secret"), "+OK");
    assert_eq!(client.ask("PING"), "+PONG");
    assert_eq!(client.ask("PUB orders.eu first"), "+OK 0");
    // A second login may change the user; a failed one keeps the first.
    assert_eq!(client.ask("AUTH bob wrong"), "-ERR invalid credentials");
    assert_eq!(client.ask("PUB orders.eu second"), "+OK 1");
    assert_eq!(client.ask("AUTH bob bob-secret"), "+OK");
    assert_eq!(
        client.ask("PUB orders.eu third"),
        "-ERR permission denied: publish orders.eu"
    );
    assert_eq!(client.ask("QUIT"), "+BYE");

    // A quoting mistake in AUTH gets AUTH's usage, not a generic error.
    let mut quitter = Line::connect(broker.local_addr());
    assert_eq!(quitter.ask("AUTH alice \"my secret"), AUTH_USAGE);
    assert_eq!(quitter.ask("QUIT"), "+BYE");
    bystander.check();
}

#[test]
fn before_a_login_a_pubn_payload_is_skipped_and_the_login_has_a_deadline() {
    let file = AuthFile::new(&users_text());
    let config = Config {
        handshake_timeout: Duration::from_secs(1),
        ..auth_config(&file)
    };
    let broker = start_broker(&config);
    let addr = broker.local_addr();
    let mut early = logged_in_at(addr, "alice", "alice-secret");

    // The refusal comes after the header, before the payload has all come:
    // it is skipped as it arrives, not buffered to be refused.
    let mut client = Line::connect(addr);
    client.send("PUBN orders.eu 1000000\n");
    client.send([b'x'; 1000]);
    assert_eq!(client.read_line(), AUTH_REQUIRED);
    client.send([b'\n'; 999_000]);
    // AUTH and what follows it, pipelined in one write, PUBN among them.
    client.send("\nAUTH alice alice-secret\nPUB orders.eu one\nPUBN orders.eu 3\nabc\nPING\n");
    assert_eq!(client.read_line(), "+OK");
    assert_eq!(client.read_line(), "+OK 0");
    assert_eq!(client.read_line(), "+OK 1");
    assert_eq!(client.read_line(), "+PONG");

    // A line client that has not logged in by --handshake-timeout is told
    // so and closed; one that logged in before stays.
    // So is one that keeps failing: its guesses queued past the deadline
    // (a tenth of a second after the first failure, doubling to 3.2 s)
    // are not tried.
    let not_logged_in = "-ERR authentication required: it did not log in within \
                         --handshake-timeout (1s) of connecting, closing";
    let mut idle = Line::connect(addr);
    let mut guesser = Line::connect(addr);
    guesser.send(
        (0..10)
            .map(|n| format!("AUTH alice guess{n}\n"))
            .collect::<String>(),
    );
    assert_eq!(idle.ask("PING"), AUTH_REQUIRED);
    assert_eq!(idle.read_line(), not_logged_in);
    idle.expect_eof();
    let (mut failed, mut answer) = (0, guesser.read_line());
    while answer == "-ERR invalid credentials" {
        (failed, answer) = (failed + 1, guesser.read_line());
    }
    assert_eq!(answer, not_logged_in);
    assert!(failed < 10, "all ten guesses were tried");
    guesser.expect_eof();
    assert_eq!(early.ask("PING"), "+PONG");
    assert_eq!(client.ask("PING"), "+PONG");
}

#[test]
fn each_action_is_checked_against_the_users_topics_and_the_connection_stays_usable() {
    let (broker, _file) = auth_broker(&users_text());
    let mut bystander = Bystander::new(broker.local_addr());
    let mut alice = logged_in(&broker, "alice", "alice-secret");
    let denied = |action: &str, topic: &str| format!("-ERR permission denied: {action} {topic}");

    assert_eq!(alice.ask("PUB orders.eu one"), "+OK 0");
    assert_eq!(alice.ask("PUB refunds one"), denied("publish", "refunds"));
    assert_eq!(alice.ask("PUB orders one"), denied("publish", "orders"));
    assert_eq!(
        alice.ask("PUB \"orders\\nx\" one"),
        denied("publish", "\"orders\\nx\"")
    );
    assert_eq!(alice.ask("PUB orders.eu two"), "+OK 1");

    // Subscribe: an exact name, a pattern the rule covers, a wider one.
    assert_eq!(alice.ask("SUB orders.*"), "+OK");
    assert_eq!(alice.ask("SUB orders.>"), "+OK");
    assert_eq!(alice.ask("SUB >"), denied("subscribe", ">"));
    assert_eq!(alice.ask("SUB *.eu"), denied("subscribe", "*.eu"));
    assert_eq!(alice.ask("SUB audit"), denied("subscribe", "audit"));
    assert_eq!(alice.ask("SUB audit from 0"), denied("subscribe", "audit"));
    // Dead letters are read with their source topic's permission.
    assert_eq!(alice.ask("SUB orders.eu.dlq"), "+OK");
    assert_eq!(alice.ask("SUB audit.dlq"), denied("subscribe", "audit.dlq"));

    // PULL needs subscribe; a group join needs group.
    assert_eq!(alice.ask("PULL audit"), denied("subscribe", "audit"));
    assert_eq!(alice.ask("SUB jobs group workers"), "+OK");
    assert_eq!(
        alice.ask("SUB orders.eu group workers"),
        denied("group", "orders.eu")
    );
    assert_eq!(alice.ask("PING"), "+PONG");

    let mut bob = logged_in(&broker, "bob", "bob-secret");
    assert_eq!(bob.ask("PULL orders.eu"), denied("subscribe", "orders.eu"));
    assert_eq!(bob.ask("PUB audit x"), denied("publish", "audit"));
    bob.send("PULL audit\n");
    assert_eq!(bob.read_line(), "+END 0");
    bystander.check();
}

#[test]
fn a_pull_that_names_a_group_needs_the_group_permission_too() {
    let users = format!(
        "user alice\n{}  publish jobs\n  group jobs\nuser eve\n{}  subscribe jobs\n",
        password_line("alice-secret"),
        password_line("eve-secret"),
    );
    let (broker, _file) = auth_broker(&users);
    let mut bystander = Bystander::new(broker.local_addr());
    let mut alice = logged_in(&broker, "alice", "alice-secret");
    assert_eq!(alice.ask("PUB jobs m0"), "+OK 0");
    assert_eq!(alice.ask("PUB jobs m1"), "+OK 1");
    let denied = |action: &str| format!("-ERR permission denied: {action} jobs");

    // eve may read jobs, but not take from its group workers either way.
    let mut eve = logged_in(&broker, "eve", "eve-secret");
    assert_eq!(eve.ask("SUB jobs group workers"), denied("group"));
    assert_eq!(eve.ask("PULL jobs 10 group workers"), denied("group"));
    // alice may join the group, but a pull reads: it needs subscribe.
    assert_eq!(alice.ask("PULL jobs 10 group workers"), denied("subscribe"));
    // A plain PULL takes from the group default, which needs subscribe only.
    eve.send("PULL jobs 10\n");
    let (msgs, count) = eve.read_pull();
    assert_eq!(count, 2);
    assert_eq!(msgs[0].payload, b"m0");
    assert_eq!(eve.ask("PING"), "+PONG");
    bystander.check();
}

#[test]
fn a_binary_client_logs_in_with_action_8_or_gets_the_anonymous_permissions() {
    let (broker, _file) = auth_broker(&users_text());
    let mut bystander = Bystander::new(broker.local_addr());
    let addr = broker.local_addr();

    // Anonymous, as an unmodified willdot client: public.> only.
    let mut anonymous = Raw::connect(addr);
    anonymous.send(&subscribe_request(r#"["orders.eu"]"#, &CURRENT));
    anonymous.expect(&error_reply("permission denied: subscribe orders.eu"));
    anonymous.send(&subscribe_request(r#"["public.news"]"#, &CURRENT));
    anonymous.expect(&SUBSCRIBED);

    let mut publisher = Raw::connect(addr);
    publisher.send(&PUBLISH);
    publisher.send(&publish_frame("orders.eu", b"not allowed"));
    publisher.expect(&error_reply("permission denied: publish orders.eu"));
    publisher.send(&publish_frame("public.news", b"allowed"));
    anonymous.expect(&common::frames::delivery_frame("public.news", b"allowed"));

    // The AUTH frame, byte for byte: action 8, u16 + user, u16 + password.
    let mut auth_frame = vec![0, 8, 0, 5];
    auth_frame.extend_from_slice(b"alice");
    auth_frame.extend_from_slice(&[0, 5]);
    auth_frame.extend_from_slice(b"wrong");
    let mut client = Raw::connect(addr);
    client.send(&auth_frame);
    client.expect(&error_reply("invalid credentials"));
    client.send(&[&[0, 8, 0, 5][..], b"alice", &[0, 12], b"alice-secret"].concat());
    client.expect(&SUBSCRIBED);
    client.send(&subscribe_request(r#"["orders.eu"]"#, &CURRENT));
    client.expect(&SUBSCRIBED);
    client.send(&subscribe_request(r#"["audit"]"#, &CURRENT));
    client.expect(&error_reply("permission denied: subscribe audit"));

    // The Rust client.
    let alice = Login::new("alice", "alice-secret");
    let mut subscriber = Subscriber::connect(addr).unwrap();
    subscriber.login(&alice).unwrap();
    subscriber
        .subscribe(&["orders.>"], StartAt::Current)
        .unwrap();
    let mut publisher = Publisher::connect_confirmed_as(addr, Some(&alice)).unwrap();
    publisher.publish("orders.us", b"hello").unwrap();
    assert_eq!(publisher.confirmation().unwrap(), 0);
    expect_next_ack(&mut subscriber, "orders.us", b"hello");
    publisher.publish("audit", b"no").unwrap();
    assert!(matches!(
        publisher.confirmation(),
        Err(ClientError::Refused(reason)) if reason == "permission denied: publish audit"
    ));
    // Groups (action 7) need the group permission.
    let mut worker = Subscriber::connect(addr).unwrap();
    worker.login(&alice).unwrap();
    worker
        .subscribe_group(&["jobs"], "workers", StartAt::Current)
        .unwrap();
    assert!(matches!(
        worker.subscribe_group(&["orders.eu"], "workers", StartAt::Current),
        Err(ClientError::Refused(reason)) if reason == "permission denied: group orders.eu"
    ));
    let wrong = Login::new("alice", "nope");
    assert!(matches!(
        Publisher::connect_as(addr, Some(&wrong)),
        Err(ClientError::Refused(reason)) if reason == "invalid credentials"
    ));
    bystander.check();
}

#[test]
fn a_binary_client_may_log_in_again_and_a_failed_login_keeps_the_user() {
    let (broker, _file) = auth_broker(&users_text());
    // Action 8 may come again until the connection subscribes or
    // publishes (PROTOCOL.md): a failed one keeps alice...
    let mut client = Raw::connect(broker.local_addr());
    client.send(&auth_frame("alice", "alice-secret"));
    client.expect(&SUBSCRIBED);
    client.send(&auth_frame("bob", "wrong"));
    client.expect(&error_reply("invalid credentials"));
    client.send(&subscribe_request(r#"["orders.eu"]"#, &CURRENT));
    client.expect(&SUBSCRIBED);

    // ... and a good one makes the connection bob's, with his rights only.
    let mut client = Raw::connect(broker.local_addr());
    client.send(&auth_frame("alice", "alice-secret"));
    client.expect(&SUBSCRIBED);
    client.send(&auth_frame("bob", "bob-secret"));
    client.expect(&SUBSCRIBED);
    client.send(&subscribe_request(r#"["orders.eu"]"#, &CURRENT));
    client.expect(&error_reply("permission denied: subscribe orders.eu"));
    client.send(&subscribe_request(r#"["audit"]"#, &CURRENT));
    client.expect(&SUBSCRIBED);
}

#[test]
fn a_thousand_wrong_passwords_slow_only_the_guesser() {
    let (broker, _file) = auth_broker(&users_text());
    let mut bystander = Bystander::new(broker.local_addr());
    let mut line_bystander = logged_in(&broker, "alice", "alice-secret");
    assert_eq!(line_bystander.ask("SUB orders.>"), "+OK");

    // From one connection of each protocol, all sent at once...
    let mut guesser = Line::connect(broker.local_addr());
    let guesses: String = (0..1000)
        .map(|n| format!("AUTH alice guess{n}\n"))
        .collect();
    guesser.send(&guesses);
    let mut binary_guesser = Raw::connect(broker.local_addr());
    let guess = |n: u32| auth_frame("alice", &format!("guess{n}"));
    binary_guesser.send(&(0..1000).flat_map(guess).collect::<Vec<u8>>());
    // ... and from many, each with its own thread.
    let addr = broker.local_addr();
    let many: Vec<_> = (0..20)
        .map(|n| {
            thread::spawn(move || {
                let mut guesser = Line::connect(addr);
                let guesses: String = (0..50).map(|g| format!("AUTH alice {n}-{g}\n")).collect();
                guesser.send(&guesses);
                for _ in 0..50 {
                    assert_eq!(guesser.read_line(), "-ERR invalid credentials");
                }
            })
        })
        .collect();

    // Meanwhile the bystanders are served: every message arrives.
    let mut publisher = logged_in(&broker, "alice", "alice-secret");
    for round in 0..20 {
        bystander.check();
        assert_eq!(
            publisher.ask(&format!("PUB orders.eu round{round}")),
            format!("+OK {round}")
        );
        line_bystander.expect_msg("orders.eu", round, format!("round{round}").as_bytes());
    }
    for _ in 0..1000 {
        assert_eq!(guesser.read_line(), "-ERR invalid credentials");
        binary_guesser.expect(&error_reply("invalid credentials"));
    }
    for thread in many {
        thread.join().expect("a guesser thread");
    }
    // The right password from the same address still gets in.
    assert_eq!(guesser.ask("AUTH alice alice-secret"), "+OK");
    bystander.check();
}

#[test]
fn a_guessers_long_delay_holds_back_no_other_address() {
    // Dual stack: the guessers come from ::1, everyone else from 127.0.0.1.
    let (broker, _file) = auth_broker_at("[::]:0", "1s", &users_text());
    let port = broker.local_addr().port();
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
    let mut bystander = Bystander::new(v4);
    let mut reader = logged_in_at(v4, "alice", "alice-secret");
    assert_eq!(reader.ask("SUB orders.>"), "+OK");

    // A guess from ::1 earns a delay of a second, far longer than what
    // follows it here.
    let mut guesser = Line::connect(v6);
    guesser.send("AUTH alice wrong\n");
    // Meanwhile a fresh login from another address and the clients already
    // in are served, before the guess is answered.
    let mut fresh = logged_in_at(v4, "alice", "alice-secret");
    assert_eq!(fresh.ask("PUB orders.eu while-guessing"), "+OK 0");
    reader.expect_msg("orders.eu", 0, b"while-guessing");
    bystander.check();
    guesser.expect_nothing_yet();
    assert_eq!(guesser.read_line(), "-ERR invalid credentials");
    bystander.check();
}

#[test]
fn stats_lists_each_logged_in_connection_with_its_user() {
    let (broker, _file) = auth_broker(&users_text());
    let mut alice = logged_in(&broker, "alice", "alice-secret");
    let connections = |client: &mut Line| -> Vec<String> {
        client.send("STATS\n");
        let lines = client.read_until_end();
        let listed = lines
            .iter()
            .filter(|line| line.starts_with("+STAT connection "));
        listed
            .map(|line| line.rsplit(' ').next().unwrap().to_owned())
            .collect()
    };
    assert_eq!(connections(&mut alice), ["user=alice"]);

    let mut bob = logged_in(&broker, "bob", "bob-secret");
    let _anonymous = Raw::connect(broker.local_addr());
    assert_eq!(connections(&mut alice), ["user=alice", "user=bob"]);

    // bob leaves: his line goes once his reader has ended, which the test
    // cannot see, so it asks until then (each answer is a round trip).
    assert_eq!(bob.ask("QUIT"), "+BYE");
    bob.expect_eof();
    let deadline = std::time::Instant::now() + WAIT;
    while connections(&mut alice) != ["user=alice"] {
        assert!(std::time::Instant::now() < deadline, "bob is still listed");
    }
}

#[test]
fn without_an_auth_file_nothing_changes_and_auth_is_refused() {
    let broker = start_broker(&config());
    let mut client = Line::connect(broker.local_addr());
    assert_eq!(client.ask("PUB anything x"), "+OK 0");
    assert_eq!(
        client.ask("AUTH alice secret"),
        "-ERR authentication is not enabled: this broker was started without --auth-file"
    );
    assert_eq!(client.ask("PING"), "+PONG");
}

#[test]
fn protected_mode_refuses_a_reachable_address_without_an_auth_file() {
    let open = Config {
        addr: "0.0.0.0:0".into(),
        ..config()
    };
    let error = brook::server::start(&open).unwrap_err();
    assert!(matches!(error, StartError::Unprotected(_)), "{error}");
    let message = error.to_string();
    for part in [
        "--auth-file PATH",
        "--insecure-allow-anyone",
        "--addr 127.0.0.1:",
    ] {
        assert!(message.contains(part), "no {part:?} in {message}");
    }

    let insecure = Config {
        insecure_allow_anyone: true,
        ..open.clone()
    };
    drop(brook::server::start(&insecure).expect("--insecure-allow-anyone starts"));
    let auth = AuthFile::new(&users_text());
    let protected = Config {
        auth_file: Some(auth.path()),
        ..open
    };
    drop(brook::server::start(&protected).expect("--auth-file starts"));
}

#[test]
fn a_bad_auth_file_stops_the_start_naming_the_file_and_the_line() {
    let auth = AuthFile::new(&format!("{}  read everything\n", users_text()));
    let error = brook::server::start(&auth_config(&auth))
        .unwrap_err()
        .to_string();
    let expected = format!(
        "auth file {}, line 10: unknown keyword 'read'",
        auth.path().display()
    );
    assert!(error.starts_with(&expected), "{error}");

    let missing = Config {
        auth_file: Some(auth.path().join("nowhere")),
        ..config()
    };
    let error = brook::server::start(&missing).unwrap_err().to_string();
    assert!(error.contains("cannot read the auth file"), "{error}");
    assert!(error.contains("--auth-file"), "{error}");
}

#[test]
fn hash_password_prints_a_line_the_auth_file_takes() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_brook"))
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"s3cret pass\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let line = String::from_utf8(output.stdout).unwrap();
    let hash = line
        .trim_end()
        .strip_prefix("password ")
        .expect("a password line");
    assert!(hash.starts_with("pbkdf2-sha256$100000$"), "{hash}");

    let (broker, _file) = auth_broker(&format!("user carol\n  password {hash}\n  subscribe *\n"));
    let mut carol = logged_in(&broker, "carol", "\"s3cret pass\"");
    assert_eq!(carol.ask("SUB anything.at.all"), "+OK");
}

/// The real binary with `auth`'s file, which a SIGHUP reloads.
fn auth_process(auth: &AuthFile) -> BrookProcess {
    let mut command = Command::new(env!("CARGO_BIN_EXE_brook"));
    command.args(["--addr", "127.0.0.1:0", "--in-memory", "--auth-file"]);
    command.arg(auth.path());
    BrookProcess::start(command, WAIT).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn sighup_reloads_the_auth_file_closing_changed_users_and_a_bad_one_is_kept_out() {
    let auth = AuthFile::new(&users_text());
    let brook = auth_process(&auth);
    let mut alice = logged_in_at(brook.addr, "alice", "alice-secret");
    assert_eq!(alice.ask("PUB orders.eu before"), "+OK 0");
    let mut bob = logged_in_at(brook.addr, "bob", "bob-secret");
    assert_eq!(bob.ask("PING"), "+PONG");

    // alice loses orders.>, bob is gone, carol arrives: the connections of
    // alice and bob are closed, and alice logs in again under her new rules.
    auth.write(&format!(
        "user alice\n{}  publish jobs\nuser carol\n{}  publish orders.>\n",
        password_line("alice-secret"),
        password_line("carol-secret")
    ));
    brook.signal("HUP");
    brook.wait_for_log(
        "SIGHUP: auth file reloaded, 2 users; closed 2 connections",
        WAIT,
    );
    alice.expect_eof();
    bob.expect_eof();
    let mut alice = logged_in_at(brook.addr, "alice", "alice-secret");
    assert_eq!(
        alice.ask("PUB orders.eu after"),
        "-ERR permission denied: publish orders.eu"
    );
    assert_eq!(alice.ask("PUB jobs after"), "+OK 0");
    let mut bob = Line::connect(brook.addr);
    assert_eq!(bob.ask("AUTH bob bob-secret"), "-ERR invalid credentials");
    let mut carol = logged_in_at(brook.addr, "carol", "carol-secret");
    assert_eq!(carol.ask("PUB orders.eu carol"), "+OK 1");

    // A file with a mistake changes nothing, and closes nothing.
    auth.write("user alice\n  password nope\n");
    brook.signal("HUP");
    brook.wait_for_log("keeping the users loaded before", WAIT);
    assert!(brook.stderr().contains("line 2"), "{}", brook.stderr());
    assert_eq!(alice.ask("PUB jobs still"), "+OK 1");
    logged_in_at(brook.addr, "carol", "carol-secret");
}

#[test]
fn a_reload_that_removes_a_subscriber_stops_its_deliveries() {
    let (alice, bob, carol) = (
        password_line("alice-secret"),
        password_line("bob-secret"),
        password_line("carol-secret"),
    );
    let unchanged =
        format!("user alice\n{alice}  publish audit\nuser carol\n{carol}  subscribe audit\n");
    let auth = AuthFile::new(&format!(
        "{unchanged}user bob\n{bob}  subscribe audit\n  group audit\n"
    ));
    let brook = auth_process(&auth);
    let mut publisher = logged_in_at(brook.addr, "alice", "alice-secret");
    let mut carol = logged_in_at(brook.addr, "carol", "carol-secret");
    assert_eq!(carol.ask("SUB audit"), "+OK");
    let mut bob = logged_in_at(brook.addr, "bob", "bob-secret");
    assert_eq!(bob.ask("SUB audit"), "+OK");
    let mut bob_in_group = Subscriber::connect(brook.addr).unwrap();
    bob_in_group
        .login(&Login::new("bob", "bob-secret"))
        .unwrap();
    bob_in_group
        .subscribe_group(&["audit"], "auditors", StartAt::Current)
        .unwrap();
    assert_eq!(publisher.ask("PUB audit before"), "+OK 0");
    carol.expect_msg("audit", 0, b"before");
    bob.expect_msg("audit", 0, b"before");
    expect_next_ack(&mut bob_in_group, "audit", b"before");

    auth.write(&unchanged);
    brook.signal("HUP");
    brook.wait_for_log(
        "SIGHUP: auth file reloaded, 2 users; closed 2 connections",
        WAIT,
    );
    assert_eq!(publisher.ask("PUB audit secret-after-reload"), "+OK 1");
    carol.expect_msg("audit", 1, b"secret-after-reload");
    bob.expect_eof();
    let after = bob_in_group.recv_timeout(WAIT);
    assert!(after.is_err(), "bob's group member got {after:?}");
    publisher.send("STATS\n");
    let users: Vec<String> = publisher
        .read_until_end()
        .into_iter()
        .filter(|line| line.starts_with("+STAT connection "))
        .collect();
    assert!(
        users.iter().all(|line| !line.ends_with("user=bob")),
        "{users:?}"
    );
}

/// Action 8: log in as `user` with `password`.
fn auth_frame(user: &str, password: &str) -> Vec<u8> {
    let field = |text: &str| [&(text.len() as u16).to_be_bytes()[..], text.as_bytes()].concat();
    [&[0, 8][..], &field(user), &field(password)].concat()
}

fn logged_in_at(addr: SocketAddr, user: &str, password: &str) -> Line {
    let mut client = Line::connect(addr);
    assert_eq!(client.ask(&format!("AUTH {user} {password}")), "+OK");
    client
}
