//! The layout rules the compiler cannot check by itself, checked on the sources:
//!
//! - no import cycle between the modules of a crate (top-level modules, and the modules
//!   one level below them: `sync::deliver` and `sync::link` are two nodes), counting
//!   `crate::`, `super::` and `self::` paths in production code (test modules and comments
//!   are left out);
//! - no production source file over 1,000 lines (lines before the file's test module);
//! - the crates' layers: the SCIM crate is pure, the core has no HTTP server and no AWS
//!   SDK, the HTTP surfaces link no connector, and the Lambda functions that deliver
//!   nothing (`scim-api`, `webhook-ingest`) link no connector, no embedded store and no
//!   CSV.
//!
//! Crate cycles are refused by Cargo itself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_PRODUCTION_LINES: usize = 1000;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The crates whose sources are checked: `shared/*` and `functions/*`.
fn crate_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for group in ["shared", "functions"] {
        let Ok(entries) = std::fs::read_dir(root().join(group)) else {
            continue;
        };
        for e in entries.flatten() {
            if e.path().join("Cargo.toml").is_file() {
                dirs.push(e.path());
            }
        }
    }
    dirs.sort();
    assert!(
        dirs.len() >= 8,
        "crates not found under {}",
        root().display()
    );
    dirs
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a source file under `src/` (`[]` for the crate root).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs").to_string();
    if !(stem == "mod" || (parts.is_empty() && (stem == "lib" || stem == "main"))) {
        parts.push(stem);
    }
    parts
}

/// The production part of a file: everything before its first `#[cfg(test)]` item, with
/// comment lines removed.
fn production(text: &str) -> (usize, String) {
    let mut lines = 0;
    let mut code = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        lines += 1;
        let t = line.trim_start();
        if t.starts_with("//") {
            continue;
        }
        let line = match line.find("//") {
            // A `//` inside a string ("https://...") is not a comment: keep those lines whole.
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        };
        code.push_str(line);
        code.push('\n');
    }
    (lines, code)
}

fn ident_at(s: &str) -> Option<&str> {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    (end > 0).then(|| &s[..end])
}

/// The module paths a file refers to, resolved from the crate root (the first two
/// segments after the prefix).
fn references(module: &[String], code: &str) -> BTreeSet<Vec<String>> {
    let mut out = BTreeSet::new();
    let mut add = |base: Vec<String>, rest: &str| {
        // `rest` follows `prefix::`: an identifier path, or a `{...}` group.
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0usize;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if c.is_whitespace() => {}
                    _ if item_start && depth == 0 => {
                        item_start = false;
                        if let Some(id) = ident_at(&group[i..]) {
                            let mut p = base.clone();
                            p.push(id.to_string());
                            if let Some(next) = group[i + id.len()..].strip_prefix("::")
                                && let Some(id2) = ident_at(next)
                            {
                                p.push(id2.to_string());
                            }
                            out.insert(p);
                        }
                    }
                    _ => item_start = false,
                }
            }
        } else if let Some(id) = ident_at(rest) {
            let mut p = base;
            p.push(id.to_string());
            if let Some(next) = rest[id.len()..].strip_prefix("::")
                && let Some(id2) = ident_at(next)
            {
                p.push(id2.to_string());
            }
            out.insert(p);
        }
    };
    for (prefix, base) in [
        ("crate::", Vec::new()),
        ("super::", module[..module.len().saturating_sub(1)].to_vec()),
        ("self::", module.to_vec()),
    ] {
        let mut from = 0;
        while let Some(i) = code[from..].find(prefix) {
            let at = from + i;
            from = at + prefix.len();
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            add(base.clone(), &code[from..]);
        }
    }
    out
}

/// The first cycle of a directed graph, if any.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            match state.get(m.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = stack.iter().position(|s| s == m).unwrap_or(0);
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(m, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0 {
            let mut stack = Vec::new();
            if let Some(c) = visit(n, graph, &mut state, &mut stack) {
                return Some(c);
            }
        }
    }
    None
}

struct CrateSources {
    name: String,
    /// `(file, module path, production lines, production code)`.
    files: Vec<(PathBuf, Vec<String>, usize, String)>,
}

fn sources() -> Vec<CrateSources> {
    crate_dirs()
        .into_iter()
        .map(|dir| {
            let src = dir.join("src");
            let mut paths = Vec::new();
            rust_files(&src, &mut paths);
            paths.sort();
            let files = paths
                .into_iter()
                .map(|p| {
                    let text = std::fs::read_to_string(&p).expect("read source");
                    let (lines, code) = production(&text);
                    let module = module_of(&src, &p);
                    (p, module, lines, code)
                })
                .collect();
            CrateSources {
                name: dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                files,
            }
        })
        .collect()
}

/// The module graph of a crate with nodes cut to `depth` segments; edges within one node,
/// and between a module and its own ancestors, are not counted.
fn graph_at(c: &CrateSources, depth: usize) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<Vec<String>> = c.files.iter().map(|f| f.1.clone()).collect();
    let known = |p: &[String]| modules.iter().any(|m| m.starts_with(p));
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, module, _, code) in &c.files {
        if module.is_empty() {
            continue;
        }
        let from: Vec<String> = module.iter().take(depth).cloned().collect();
        for r in references(module, code) {
            let mut to: Vec<String> = r.into_iter().take(depth).collect();
            // A path to an item of a module (`crate::directory::Directory`) names the module.
            while !to.is_empty() && !known(&to) {
                to.pop();
            }
            if to.is_empty() || to == from || from.starts_with(&to) || to.starts_with(&from) {
                continue;
            }
            graph
                .entry(from.join("::"))
                .or_default()
                .insert(to.join("::"));
        }
    }
    graph
}

#[test]
fn no_module_cycles() {
    let mut cycles = Vec::new();
    for c in sources() {
        for depth in [1, 2] {
            if let Some(cycle) = find_cycle(&graph_at(&c, depth)) {
                cycles.push(format!("{}: {}", c.name, cycle.join(" -> ")));
            }
        }
    }
    assert!(cycles.is_empty(), "module cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let module = vec!["sync".to_string(), "deliver".to_string()];
    let refs = references(
        &module,
        "use crate::{directory::Directory, event::{A, B}};\nuse super::link::Links;\nlet x = crate::store::now();\nlet y = a_crate::nope;",
    );
    let refs: Vec<String> = refs.into_iter().map(|r| r.join("::")).collect();
    assert_eq!(
        refs,
        [
            "directory::Directory",
            "event",
            "store::now",
            "sync::link::Links"
        ]
    );
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_cycle(&g), None);
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(
        find_cycle(&g),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}

#[test]
fn no_production_file_over_a_thousand_lines() {
    let mut long = Vec::new();
    for c in sources() {
        for (path, module, lines, _) in &c.files {
            // A `tests.rs` is a test module (`#[cfg(test)] mod tests;`), not production code.
            let is_tests = module.last().is_some_and(|m| m == "tests");
            if !is_tests && *lines > MAX_PRODUCTION_LINES {
                long.push(format!("{} ({lines} lines)", path.display()));
            }
        }
    }
    assert!(
        long.is_empty(),
        "production files over {MAX_PRODUCTION_LINES} lines (split them by operation):\n{}",
        long.join("\n")
    );
}

/// The `[dependencies]` of a manifest: name -> its line (to see `features = [...]`).
fn dependencies(manifest: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(manifest).expect("manifest");
    let mut deps = BTreeMap::new();
    let mut in_deps = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_deps = t == "[dependencies]";
            continue;
        }
        if in_deps
            && !t.is_empty()
            && !t.starts_with('#')
            && let Some((name, _)) = t.split_once(['=', '.'])
        {
            deps.insert(name.trim().to_string(), t.to_string());
        }
    }
    deps
}

#[test]
fn crates_keep_to_their_layers() {
    let shared = root().join("shared");
    let functions = root().join("functions");
    let scim = dependencies(&shared.join("scim/Cargo.toml"));
    for (name, line) in &scim {
        let pure = ["serde", "serde_json", "chrono", "thiserror"].contains(&name.as_str());
        let optional_edge = name == "axum" && line.contains("optional = true");
        assert!(
            pure || optional_edge,
            "provisync-scim must stay pure (no I/O, no runtime): {line}"
        );
    }
    let core = dependencies(&shared.join("core/Cargo.toml"));
    for banned in [
        "axum",
        "tower-http",
        "lambda_http",
        "aws-config",
        "aws-sdk-dynamodb",
        "aws-sdk-sqs",
        "csv",
        "provisync-http",
        "provisync-aws",
        "provisync-connectors",
        // The outbound HTTP client: the core has the port (`connector::http::HttpPort`),
        // provisync-connectors the client, so `scim-api` and `webhook-ingest` link none.
        "reqwest",
    ] {
        assert!(
            !core.contains_key(banned),
            "provisync-core must not depend on {banned}"
        );
    }
    let http = dependencies(&shared.join("http/Cargo.toml"));
    for banned in [
        "provisync-connectors",
        "provisync-aws",
        "aws-config",
        "csv",
        "reqwest",
    ] {
        assert!(
            !http.contains_key(banned),
            "provisync-http must not depend on {banned}"
        );
    }
    for function in ["scim-api", "webhook-ingest"] {
        let deps = dependencies(&functions.join(function).join("Cargo.toml"));
        for banned in [
            "provisync-connectors",
            "provisync-transfer",
            "redb",
            "csv",
            "aws-sdk-cognitoidentityprovider",
            "reqwest",
        ] {
            assert!(
                !deps.contains_key(banned),
                "{function} delivers nothing and must not link {banned}"
            );
        }
        for (name, line) in &deps {
            assert!(
                !line.contains("embedded"),
                "{function} runs on DynamoDB only: {name} with the embedded store"
            );
        }
    }
}
