//! Keeps `src/` in layers: no file may use, directly or through others, a
//! file that uses it. With no circle, the files can be read bottom-up, each
//! one knowing only the ones read before it, and any one of them can be
//! tested without the ones above it.
//!
//! The test reads every file under `src/` (it does not compile anything),
//! finds the paths each one names that start with `crate::` (in `use` lines
//! and in code, brace groups included), `super::` (a sibling in the same
//! folder) or the name of a file the file declares (a folder's `mod.rs`
//! with `mod agenda;` using `agenda::Agenda`), maps each path to the file
//! that holds it, and looks for a circle in that map with a depth-first
//! search. Test modules count too: a test that needs a file above its own
//! is a sign the shared part belongs lower down. `main.rs` is left out: it is the binary, which uses the
//! library only through `brook::`.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// A file's module path: `src/wire/line.rs` is `["wire", "line"]`,
/// `src/store/mod.rs` is `["store"]`, `src/lib.rs` is `[]`.
type Module = Vec<String>;

/// Every file under `src/`, by module path, with its text.
fn read_sources() -> BTreeMap<Module, String> {
    let mut sources = BTreeMap::new();
    read_folder(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src").as_path(),
        &mut Vec::new(),
        &mut sources,
    );
    sources
}

fn read_folder(folder: &Path, module: &mut Module, sources: &mut BTreeMap<Module, String>) {
    for entry in fs::read_dir(folder).expect("src/ can be listed") {
        let path = entry.expect("src/ can be listed").path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            module.push(name);
            read_folder(&path, module, sources);
            module.pop();
        } else if path.extension().is_some_and(|ext| ext == "rs") && name != "main" {
            let mut file_module = module.clone();
            if !matches!(name.as_str(), "mod" | "lib") {
                file_module.push(name);
            }
            let text = fs::read_to_string(&path).expect("a source file can be read");
            sources.insert(file_module, text);
        }
    }
}

/// How a module path is shown in a failure: as its file.
fn file_name(module: &Module, sources: &BTreeMap<Module, String>) -> String {
    let is_folder = sources
        .keys()
        .any(|other| other.len() > module.len() && other.starts_with(module));
    match (module.is_empty(), is_folder) {
        (true, _) => "src/lib.rs".to_owned(),
        (false, true) => format!("src/{}/mod.rs", module.join("/")),
        (false, false) => format!("src/{}.rs", module.join("/")),
    }
}

/// `text` without its comments (from `//` to the end of the line), so that
/// a doc link such as ``[`Command`](crate::queue::Command)`` is not taken
/// for a use. A string holding `//` loses the rest of its line too, which
/// can only hide a use, never invent one.
fn code_of(text: &str) -> String {
    text.lines()
        .map(|line| line.split("//").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths that follow `anchor` in `code`, brace groups expanded:
/// `crate::wire::{line, reply::Reply}` gives `wire::line` and
/// `wire::reply::Reply`.
fn paths_after(code: &str, anchor: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    for (at, _) in code.match_indices(anchor) {
        let starts_a_path = code[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':'));
        if starts_a_path {
            // From the `::` on, so that `crate::{a, b}` reads as a group.
            use_tree(&code[at + anchor.len() - 2..], &[], &mut paths);
        }
    }
    paths
}

/// Reads one use tree (`a::b`, `a::{b, c::d}`) at the start of `rest`,
/// adds each whole path it names, after `prefix`, to `paths`, and returns
/// the text after the tree.
fn use_tree<'a>(mut rest: &'a str, prefix: &[String], paths: &mut Vec<Vec<String>>) -> &'a str {
    let mut path = prefix.to_vec();
    loop {
        let name_len = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if name_len > 0 {
            path.push(rest[..name_len].to_owned());
        }
        rest = rest[name_len..].trim_start();
        if let Some(group) = rest.strip_prefix("::{") {
            rest = group;
            loop {
                rest = use_tree(rest.trim_start(), &path, paths).trim_start();
                match rest.strip_prefix(',') {
                    Some(more) => rest = more,
                    None => return rest.strip_prefix('}').unwrap_or(rest),
                }
            }
        }
        match rest.strip_prefix("::") {
            Some(more) => rest = more.trim_start(),
            None => {
                paths.push(path);
                return rest;
            }
        }
    }
}

/// The file that holds `path`: the longest start of it that is a file.
fn file_of(path: &[String], sources: &BTreeMap<Module, String>) -> Module {
    (0..=path.len())
        .rev()
        .map(|len| path[..len].to_vec())
        .find(|module| sources.contains_key(module))
        .unwrap_or_default()
}

/// The files each file uses, itself left out.
fn uses(sources: &BTreeMap<Module, String>) -> BTreeMap<Module, Vec<Module>> {
    let mut graph = BTreeMap::new();
    for (module, text) in sources {
        let code = code_of(text);
        let mut paths = paths_after(&code, "crate::");
        // `super::` before the first inline `mod name {` names the folder's
        // module; inside `mod tests` it names the file itself.
        let top_level = code
            .split_inclusive('\n')
            .take_while(|line| !(line.contains("mod ") && line.trim_end().ends_with('{')))
            .collect::<String>();
        let parent = &module[..module.len().saturating_sub(1)];
        for path in paths_after(&top_level, "super::") {
            paths.push(parent.iter().cloned().chain(path).collect());
        }
        // A folder's `mod.rs` names its own files without `crate::`:
        // `mod agenda;`, then `use agenda::Agenda;`.
        for file in declared_files(&code) {
            for path in paths_after(&code, &format!("{file}::")) {
                let own = module.iter().chain([&file]).cloned();
                paths.push(own.chain(path).collect());
            }
        }
        let mut used: Vec<Module> = paths.iter().map(|path| file_of(path, sources)).collect();
        used.sort();
        used.dedup();
        used.retain(|other| other != module && !other.is_empty());
        graph.insert(module.clone(), used);
    }
    graph
}

/// The files `code` declares as its own (`mod agenda;`,
/// `pub(crate) mod topic;`), not the inline ones (`mod tests {`).
fn declared_files(code: &str) -> Vec<String> {
    code.lines()
        .filter_map(|line| {
            let (_, rest) = line.trim().split_once("mod ")?;
            let name = rest.strip_suffix(';')?;
            let is_name = name.chars().all(|c| c.is_alphanumeric() || c == '_');
            is_name.then(|| name.to_owned())
        })
        .collect()
}

/// Every circle a depth-first search meets, each as the files on it.
fn circles(graph: &BTreeMap<Module, Vec<Module>>) -> Vec<Vec<Module>> {
    let mut done = Vec::new();
    let mut path = Vec::new();
    let mut found = Vec::new();
    for start in graph.keys() {
        visit(start, graph, &mut path, &mut done, &mut found);
    }
    found
}

fn visit(
    module: &Module,
    graph: &BTreeMap<Module, Vec<Module>>,
    path: &mut Vec<Module>,
    done: &mut Vec<Module>,
    found: &mut Vec<Vec<Module>>,
) {
    if let Some(at) = path.iter().position(|on_path| on_path == module) {
        found.push(path[at..].to_vec());
        return;
    }
    if done.contains(module) {
        return;
    }
    path.push(module.clone());
    for used in &graph[module] {
        visit(used, graph, path, done, found);
    }
    path.pop();
    done.push(module.clone());
}

#[test]
fn no_file_in_src_uses_a_file_that_uses_it() {
    let sources = read_sources();
    let found = circles(&uses(&sources));
    let shown: Vec<String> = found
        .iter()
        .map(|circle| {
            let files: Vec<String> = circle.iter().map(|m| file_name(m, &sources)).collect();
            format!("{} -> {}", files.join(" -> "), files[0])
        })
        .collect();
    assert!(
        found.is_empty(),
        "{} import circle(s) in src/; move the shared type down, or hand results back \
         through a type or callback of the lower file's own:\n{}",
        found.len(),
        shown.join("\n")
    );
}

#[test]
fn the_search_names_every_file_of_a_circle() {
    let module = |name: &str| vec![name.to_owned()];
    let graph = BTreeMap::from([
        (module("a"), vec![module("b")]),
        (module("b"), vec![module("c")]),
        (module("c"), vec![module("a")]),
        (module("d"), vec![module("a")]),
    ]);
    assert_eq!(circles(&graph), [[module("a"), module("b"), module("c")]]);
    let layered = BTreeMap::from([(module("a"), vec![module("b")]), (module("b"), vec![])]);
    assert!(circles(&layered).is_empty());
}

#[test]
fn the_reader_sees_uses_in_use_lines_groups_and_code() {
    let code = "use crate::wire::{line, reply::Reply};\nlet x = crate::files::limit();\nuse crate::{ids::Offset, store};";
    let paths: Vec<String> = paths_after(code, "crate::")
        .iter()
        .map(|p| p.join("::"))
        .collect();
    assert_eq!(
        paths,
        [
            "wire::line",
            "wire::reply::Reply",
            "files::limit",
            "ids::Offset",
            "store"
        ]
    );
}

#[test]
fn a_folder_that_uses_a_file_of_its_own_that_uses_it_is_a_circle() {
    let module = |path: &[&str]| path.iter().map(|name| name.to_string()).collect::<Module>();
    let sources = BTreeMap::from([
        (
            module(&["d"]),
            "mod a;\npub(crate) mod b;\nuse a::A;\n".to_owned(),
        ),
        (module(&["d", "a"]), "use super::D;\n".to_owned()),
        (module(&["d", "b"]), "use super::a::A;\n".to_owned()),
    ]);
    let graph = uses(&sources);
    assert_eq!(graph[&module(&["d"])], [module(&["d", "a"])]);
    assert_eq!(circles(&graph), [[module(&["d"]), module(&["d", "a"])]]);
}
