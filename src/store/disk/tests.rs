//! Tests of the disk store as a whole: the data directory's lock, and
//! the topic directories' names. (Each file's own tests are in it; this
//! one is apart because it opens stores through `test_support.rs`, which
//! uses `mod.rs`.)

use super::directory_name;
use super::test_support::{open_store, settings, TempDir};
use crate::store::Store;

#[test]
fn directory_names_are_safe_and_distinct() {
    let names = [
        "..",
        ".",
        "",
        "a/b",
        "../../etc/passwd",
        "\0",
        "CON",
        "Ab",
        "aB",
    ];
    let mut seen = std::collections::HashSet::new();
    for name in names {
        let dir = directory_name(name);
        assert!(!dir.contains('/') && dir != "." && dir != "..", "{dir:?}");
        assert!(seen.insert(dir), "{name:?} shares a directory name");
    }
    assert!(directory_name(&"x".repeat(65_535)).len() <= 48 + 17);
}

#[test]
fn one_data_directory_serves_one_store_at_a_time() {
    let temp = TempDir::new("lock");
    let (mut first, _) = open_store(&temp, settings(1 << 20, None));
    first.recover().unwrap();
    let (mut second, _) = open_store(&temp, settings(1 << 20, None));
    let refused = second.recover().map(|_| ()).unwrap_err().to_string();
    assert!(refused.contains("another broker"), "{refused}");
    drop(first);
    second.recover().unwrap();
}
