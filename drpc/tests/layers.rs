//! The layers inside the `drpc` crate, checked from its source: imports run
//! one way (values, core, runtime, the public types, engine, endpoint), the
//! core does no I/O and reads no clock, and the only import cycle is the
//! one the public API forces (plugin hooks take `&Session`, a session holds
//! its endpoint's plugins). `.ci/run` runs it with the rest of the tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layer of a source file, by where it lives; lower may not import higher.
fn layer(file: &str) -> (usize, &'static str) {
    match file {
        f if f.starts_with("values/") => (0, "values"),
        f if f.starts_with("core/") => (1, "core"),
        f if f.starts_with("runtime/") => (2, "runtime"),
        f if f.starts_with("session/")
            || f.starts_with("streaming/")
            || [
                "context.rs",
                "handler.rs",
                "plugin.rs",
                "router.rs",
                "service.rs",
                "shared.rs",
            ]
            .contains(&f) =>
        {
            (3, "public types")
        }
        f if f.starts_with("engine/") => (4, "engine"),
        "endpoint.rs" | "memory.rs" | "signals.rs" => (5, "endpoint"),
        f if f.starts_with("restart/") => (5, "endpoint"),
        "lib.rs" => (6, "crate root"),
        other => panic!("{other} belongs to no layer: add it to the table in this test"),
    }
}

/// The files of the one cycle the public API forces: a session runs its
/// endpoint's plugins, and plugin hooks take sessions, contexts and the
/// endpoint; the endpoint's shared state holds its sessions, router and
/// plugins; contexts and routes hold sessions. Exactly these, so a cycle
/// that grows beyond them fails.
const FORCED_CYCLE: [&str; 5] = [
    "context.rs",
    "plugin.rs",
    "router.rs",
    "session/mod.rs",
    "shared.rs",
];

/// What the core must not use: it passes time in and spawns nothing.
const NOT_IN_CORE: [&str; 7] = [
    "tokio::",
    "Instant::now",
    "SystemTime",
    "std::thread",
    "spawn(",
    "futures_util",
    "std::net",
];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source minus its tests: a `tests.rs` module (or a `tests/`
/// folder of modules) is all test, and unit tests sit at the bottom of a
/// file behind `#[cfg(test)] mod tests`.
fn code_of(file: &str, text: &str) -> String {
    if file.ends_with("tests.rs") || file.contains("/tests/") {
        return String::new();
    }
    let mut code = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]"
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod tests"))
        {
            break;
        }
        // Comments may name anything.
        let line = line.split("//").next().unwrap_or("");
        code.push_str(line);
        code.push('\n');
    }
    code
}

/// The module path of a file: `core/conn.rs` is `core::conn`,
/// `session/mod.rs` is `session`.
fn module_of(file: &str) -> Vec<String> {
    let trimmed = file.trim_end_matches(".rs");
    let mut parts: Vec<String> = trimmed.split('/').map(str::to_string).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// The file that defines module `path`, or the nearest enclosing one (an
/// item inside a module resolves to the module's file).
fn file_of(path: &[String], files: &BTreeSet<String>) -> Option<String> {
    for n in (1..=path.len()).rev() {
        let stem = path[..n].join("/");
        for candidate in [format!("{stem}.rs"), format!("{stem}/mod.rs")] {
            if files.contains(&candidate) {
                return Some(candidate);
            }
        }
    }
    None
}

/// Every `crate::a::b` or `super::a` path a file's code names, expanded
/// from `use` trees (`use crate::{a, b::{c, d}}`).
fn paths_named(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let rest: String = bytes[i..bytes.len().min(i + 8)].iter().collect();
        let (base, skip) = if rest.starts_with("crate::") {
            (Vec::new(), 7)
        } else if rest.starts_with("super::") {
            let mut base = module.to_vec();
            base.pop();
            (base, 7)
        } else {
            i += 1;
            continue;
        };
        // Not the tail of a longer identifier (`my_crate::`).
        if i > 0 && (bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_') {
            i += 1;
            continue;
        }
        let (tree, used) = take_tree(&bytes[i + skip..]);
        for p in expand(&tree) {
            let mut full = base.clone();
            full.extend(p);
            out.push(full);
        }
        i += skip + used.max(1);
    }
    out
}

/// The use tree (or plain path) at the start of `s`, and its length.
fn take_tree(s: &[char]) -> (String, usize) {
    let mut depth = 0;
    let mut end = 0;
    for (n, c) in s.iter().enumerate() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            c if depth == 0 && !(c.is_alphanumeric() || *c == '_' || *c == ':') => break,
            _ => {}
        }
        end = n + 1;
    }
    (s[..end].iter().collect(), end)
}

/// The paths a use tree names, split into segments.
fn expand(tree: &str) -> Vec<Vec<String>> {
    let tree = tree.trim().trim_end_matches("::");
    match tree.find('{') {
        None => vec![tree
            .split("::")
            .filter(|s| !s.is_empty())
            .map(|s| s.trim().to_string())
            .collect()],
        Some(open) => {
            let prefix: Vec<String> = tree[..open]
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
            let mut parts = Vec::new();
            let (mut depth, mut start) = (0, 0);
            for (n, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        parts.push(&inner[start..n]);
                        start = n + 1;
                    }
                    _ => {}
                }
            }
            parts.push(&inner[start..]);
            parts
                .into_iter()
                .filter(|p| !p.trim().is_empty() && p.trim() != "self")
                .flat_map(|p| {
                    expand(p.trim()).into_iter().map(|tail| {
                        let mut full = prefix.clone();
                        full.extend(tail);
                        full
                    })
                })
                .collect()
        }
    }
}

struct Crate {
    /// file -> the files it names
    edges: BTreeMap<String, BTreeSet<String>>,
    code: BTreeMap<String, String>,
}

fn read_crate() -> Crate {
    let root = src_dir();
    let mut paths = Vec::new();
    rust_files(&root, &mut paths);
    let files: BTreeSet<String> = paths
        .iter()
        .map(|p| p.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    let mut edges = BTreeMap::new();
    let mut code = BTreeMap::new();
    for file in &files {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let c = code_of(file, &text);
        let module = module_of(file);
        let mut named = BTreeSet::new();
        for path in paths_named(&c, &module) {
            if let Some(target) = file_of(&path, &files) {
                if &target != file {
                    named.insert(target);
                }
            }
        }
        edges.insert(file.clone(), named);
        code.insert(file.clone(), c);
    }
    Crate { edges, code }
}

#[test]
fn imports_run_one_way() {
    let krate = read_crate();
    let mut wrong = Vec::new();
    for (file, targets) in &krate.edges {
        let (mine, my_name) = layer(file);
        for target in targets {
            let (theirs, their_name) = layer(target);
            if theirs > mine {
                wrong.push(format!(
                    "{file} ({my_name}) imports {target} ({their_name})"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_core_does_no_io_spawns_nothing_and_reads_no_clock() {
    let krate = read_crate();
    let mut wrong = Vec::new();
    for (file, code) in &krate.code {
        if !file.starts_with("core/") {
            continue;
        }
        for (n, line) in code.lines().enumerate() {
            for bad in NOT_IN_CORE {
                if line.contains(bad) {
                    wrong.push(format!("{file}:{}: uses {bad}: {}", n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the core must pass time in and do no I/O:\n{}",
        wrong.join("\n")
    );
}

/// Strongly connected components of the file graph (Tarjan's algorithm).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        out: Vec<BTreeSet<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.edges.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low[v];
                s.low.insert(v, lv.min(lw));
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low[v];
                s.low.insert(v, lv.min(iw));
            }
        }
        if s.low[v] == s.index[v] {
            let mut scc = BTreeSet::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                scc.insert(w.to_string());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                s.out.push(scc);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn the_only_import_cycle_is_the_one_the_public_api_forces() {
    let krate = read_crate();
    let allowed: BTreeSet<String> = FORCED_CYCLE.iter().map(|f| f.to_string()).collect();
    for scc in cycles(&krate.edges) {
        let outside: Vec<&String> = scc.difference(&allowed).collect();
        assert!(
            outside.is_empty(),
            "an import cycle beyond the forced one: {scc:?} (outside it: {outside:?})"
        );
    }
}

#[test]
fn no_source_file_is_over_600_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for dir in ["drpc", "proto", "codec", "socket", "plugins", "examples"] {
        rust_files(&root.join(dir), &mut files);
    }
    let long: Vec<String> = files
        .iter()
        .filter(|f| !f.components().any(|c| c.as_os_str() == "target"))
        .filter_map(|f| {
            let lines = std::fs::read_to_string(f).unwrap().lines().count();
            (lines > 600).then(|| format!("{} has {lines} lines", f.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "files over 600 lines:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_checker_reads_use_trees() {
    let m = vec!["core".to_string(), "conn".to_string()];
    let paths = paths_named(
        "use crate::{values::Status, core::{hold::Hold, wire}};\nlet x = super::inbound::Frame;",
        &m,
    );
    let joined: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        joined,
        [
            "values::Status",
            "core::hold::Hold",
            "core::wire",
            "core::inbound::Frame"
        ]
    );
}
