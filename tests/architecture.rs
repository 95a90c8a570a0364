//! The structure stays as `docs/ARCHITECTURE.md` draws it: the modules of the library, of the
//! binary and of the plugin use each other without cycles (a module may use its parent and
//! its own submodules; siblings form a tree).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The modules of one crate, by path (`security::seal`), from its source folder; `skip`
/// leaves out files of another crate that share the folder (the binary's in `src/`).
fn modules(dir: &Path, top: &Path, skip: &[&str]) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") || path == top {
                continue;
            }
            let rel = path.strip_prefix(dir).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            let name = parts.join("::");
            if skip
                .iter()
                .any(|s| name == *s || name.starts_with(&format!("{s}::")))
            {
                continue;
            }
            out.insert(name, path);
        }
    }
    out
}

/// `a` is `b`, or one contains the other.
fn related(a: &str, b: &str) -> bool {
    a == b || a.starts_with(&format!("{b}::")) || b.starts_with(&format!("{a}::"))
}

/// The modules that `module`'s source names through `crate::…` or `super::…` paths,
/// resolved to the longest module path known.
fn uses(module: &str, src: &str, known: &BTreeMap<String, PathBuf>) -> BTreeSet<String> {
    let code: String = src
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    // `use crate::{a::X, b::Y}` names several modules.
    let code = code
        .replace("crate::{", "crate::")
        .replace(", ", " crate::");
    let mut out = BTreeSet::new();
    let parent: Vec<&str> = module.split("::").collect();
    for (prefix, base) in [
        ("crate::", Vec::new()),
        ("super::", parent[..parent.len().saturating_sub(1)].to_vec()),
    ] {
        for at in code.match_indices(prefix).map(|(i, _)| i + prefix.len()) {
            let path: String = code[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let mut parts: Vec<String> = base.iter().map(|s| s.to_string()).collect();
            parts.extend(
                path.split("::")
                    .filter(|p| !p.is_empty())
                    .map(str::to_string),
            );
            while !parts.is_empty() {
                let candidate = parts.join("::");
                if known.contains_key(&candidate) {
                    if !related(&candidate, module) {
                        out.insert(candidate);
                    }
                    break;
                }
                parts.pop();
            }
        }
    }
    out
}

/// A cycle in the graph, as the modules along it, if there is one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let from = path.iter().position(|p| p == next).unwrap();
                    let mut c = path[from..].to_vec();
                    c.push(next.clone());
                    return Some(c);
                }
                0 => {
                    if let Some(c) = visit(next, graph, state, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if state.get(node.as_str()).copied().unwrap_or(0) == 0 {
            let mut path = Vec::new();
            if let Some(c) = visit(node, graph, &mut state, &mut path) {
                return Some(c);
            }
        }
    }
    None
}

/// The use graph of a crate: module → the unrelated modules it names.
fn graph(dir: &Path, top: &Path, skip: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let known = modules(dir, top, skip);
    known
        .iter()
        .map(|(name, path)| {
            let src = std::fs::read_to_string(path).unwrap();
            (name.clone(), uses(name, &src, &known))
        })
        .collect()
}

fn assert_acyclic(what: &str, g: &BTreeMap<String, BTreeSet<String>>) {
    assert!(g.len() > 3, "{what}: only {} modules found", g.len());
    if let Some(c) = cycle(g) {
        panic!(
            "{what}: the modules use each other in a cycle: {}",
            c.join(" -> ")
        );
    }
}

#[test]
fn the_library_modules_form_no_cycle() {
    let src = root().join("src");
    let g = graph(&src, &src.join("lib.rs"), &["main", "cli"]);
    assert!(
        g["node"].contains("security::seal"),
        "the scan sees uses: {g:#?}"
    );
    assert_acyclic("the library", &g);
}

#[test]
fn the_binary_modules_form_no_cycle() {
    let src = root().join("src");
    let known = modules(&src, &src.join("main.rs"), &[]);
    let g: BTreeMap<_, _> = known
        .iter()
        .filter(|(name, _)| name.as_str() == "cli" || name.starts_with("cli::"))
        .map(|(name, path)| {
            let text = std::fs::read_to_string(path).unwrap();
            (name.clone(), uses(name, &text, &known))
        })
        .collect();
    assert_acyclic("the binary", &g);
}

#[test]
fn the_plugin_modules_form_no_cycle() {
    let src = root().join("plugin").join("src");
    let g = graph(&src, &src.join("lib.rs"), &[]);
    assert_acyclic("the plugin", &g);
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(str::to_string).collect()))
    .collect();
    assert_eq!(cycle(&g).unwrap(), ["a", "b", "c", "a"]);
    let known: BTreeMap<String, PathBuf> = ["x::imp", "x::session", "x"]
        .into_iter()
        .map(|m| (m.to_string(), PathBuf::new()))
        .collect();
    let found = uses(
        "x::session",
        "use super::imp::CAT;\nuse crate::x::Thing;",
        &known,
    );
    assert_eq!(found, BTreeSet::from(["x::imp".to_string()]));
}
