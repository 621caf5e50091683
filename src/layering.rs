//! The layering rule, checked on the source itself: `oauth` (with the base modules `trace`,
//! `otel` and `memory`) <- `store` (with `users`, `clients_file`, `config`) <- `actors` <- `http` <- `cli` and
//! the binaries. A file may import from its own layer and the ones below, and `oauth` only from
//! itself and `trace`; and no two files import each other, directly or around a circle.
//!
//! The test reads every `.rs` file under `src/` and takes the module paths each one names: `use`
//! declarations (grouped ones included), paths in code that start with `crate::`, `super::`,
//! `self::` or a module the file declares, never what is in a comment or a literal. A path is the
//! file of the longest module prefix that exists (`crate::store::ClientRecord` is
//! `src/store/mod.rs`); `mod x;` is not an import. The binaries and `lib.rs` may import anything.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

/// The layers, bottom up: a file may import from its own layer and the ones below it.
const LAYERS: &[(&str, u8)] = &[
    ("oauth", 0),
    ("trace", 0),
    ("otel", 0),
    ("flow_view", 0),
    ("memory", 0),
    ("layering", 0), // this test: it imports nothing from the crate
    ("store", 1),
    ("users", 1),
    ("clients_file", 1),
    ("config", 1),
    ("actors", 2),
    ("http", 3),
    ("admin", 3), // the operator's commands, on the store and the key lifecycle
    ("cli", 4),   // what the binaries run
];

/// Modules that may import only the modules listed, whatever their layer.
const ONLY_FROM: &[(&str, &[&str])] = &[("oauth", &["oauth", "trace"])];

/// Files that may import anything: the crate root and the binaries.
const ROOTS: &[&str] = &["src/lib.rs", "src/bin/"];

/// For the circle check only: an import between two files that both start with one of these is
/// not followed. Empty, and to be kept empty: a prefix goes here only while a part of the tree is
/// being reorganised, and comes out once its files no longer import one another in a circle. The
/// layer rule has no such list.
const CYCLE_CHECK_SKIPS: &[&str] = &[];

mod references;

use references::{Reference, references};

/// The module a file is (`src/a/b.rs` and `src/a/b/mod.rs` are `a::b`; `src/lib.rs` the root).
fn module_of(file: &str) -> Vec<String> {
    if file == "src/lib.rs" {
        return Vec::new();
    }
    let inner = file.trim_start_matches("src/").trim_end_matches(".rs");
    let inner = inner.strip_suffix("/mod").unwrap_or(inner);
    inner.split('/').map(String::from).collect()
}

/// The crate-absolute module path a reference names, or `None` when it stays within the file
/// (`super::` from an inline module) or names another crate.
fn absolute(
    reference: &Reference,
    module: &[String],
    children: &BTreeSet<String>,
) -> Option<Vec<String>> {
    let path = &reference.path;
    let first = path.first()?.as_str();
    match first {
        "crate" => Some(path[1..].to_vec()),
        "super" => {
            let ups = path.iter().take_while(|s| *s == "super").count();
            let above_file = ups.checked_sub(reference.inline_depth).filter(|n| *n > 0)?;
            let base = module.get(..module.len().checked_sub(above_file)?)?;
            Some([base, &path[ups..]].concat())
        }
        "self" if reference.inline_depth == 0 => Some([module, &path[1..]].concat()),
        _ if reference.inline_depth == 0 && children.contains(first) => {
            Some([module, &path[..]].concat())
        }
        _ => None,
    }
}

/// The file of the longest prefix of `path` that is a module.
fn file_of(path: &[String], files: &HashSet<String>) -> String {
    for k in (1..=path.len()).rev() {
        let joined = path[..k].join("/");
        for candidate in [format!("src/{joined}.rs"), format!("src/{joined}/mod.rs")] {
            if files.contains(&candidate) {
                return candidate;
            }
        }
    }
    "src/lib.rs".into()
}

/// One import between two files.
#[derive(Debug)]
struct Edge {
    from: String,
    to: String,
    line: usize,
    path: String,
}

/// Every import between files of `src/` (the binaries' excluded: nothing imports them).
fn edges(root: &Path) -> Vec<Edge> {
    let mut sources = BTreeMap::new();
    let mut dirs = vec![root.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let name = path.strip_prefix(root).unwrap().display().to_string();
                sources.insert(name, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let files: HashSet<String> = sources.keys().cloned().collect();
    let mut out = Vec::new();
    for (file, source) in &sources {
        if file.starts_with("src/bin/") {
            continue;
        }
        let module = module_of(file);
        let (refs, children) = references(source);
        for reference in refs {
            let Some(target) = absolute(&reference, &module, &children) else {
                continue;
            };
            let to = file_of(&target, &files);
            if &to != file {
                out.push(Edge {
                    from: file.clone(),
                    to,
                    line: reference.line,
                    path: reference.path.join("::"),
                });
            }
        }
    }
    out
}

/// The layer of a file's top module, `None` for a root.
fn layer_of(file: &str) -> Result<Option<(&'static str, u8)>, String> {
    if ROOTS.iter().any(|root| file.starts_with(root)) {
        return Ok(None);
    }
    let top = module_of(file).into_iter().next().unwrap_or_default();
    LAYERS
        .iter()
        .find(|(name, _)| *name == top)
        .map(|layer| Some(*layer))
        .ok_or_else(|| format!("{file}: module `{top}` is in no layer; add it to LAYERS"))
}

fn layer_breaks(edges: &[Edge]) -> Vec<String> {
    let mut breaks = BTreeSet::new();
    for edge in edges {
        let (from, to) = match (layer_of(&edge.from), layer_of(&edge.to)) {
            (Err(e), _) | (_, Err(e)) => {
                breaks.insert(e);
                continue;
            }
            (Ok(None), _) => continue,
            (Ok(Some(from)), Ok(to)) => (from, to.unwrap_or(("the crate root", u8::MAX))),
        };
        let at = format!("{}:{}: `{}` ({})", edge.from, edge.line, edge.path, edge.to);
        if let Some((_, allowed)) = ONLY_FROM.iter().find(|(name, _)| *name == from.0)
            && !allowed.contains(&to.0)
        {
            breaks.insert(format!("{at}: {} may import only {allowed:?}", from.0));
        } else if to.1 > from.1 {
            breaks.insert(format!(
                "{at}: {} (layer {}) imports {} (layer {})",
                from.0, from.1, to.0, to.1
            ));
        }
    }
    breaks.into_iter().collect()
}

/// The circles: each set of two or more files that all reach one another through imports (a
/// strongly connected component), with the imports between them.
fn circles(edges: &[Edge], skips: &[&str]) -> Vec<Vec<String>> {
    let skipped = |e: &Edge| {
        skips
            .iter()
            .any(|p| e.from.starts_with(p) && e.to.starts_with(p))
    };
    let edges: Vec<&Edge> = edges.iter().filter(|e| !skipped(e)).collect();
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for e in &edges {
        graph.entry(&e.from).or_default().insert(&e.to);
        graph.entry(&e.to).or_default();
    }
    let reach: BTreeMap<&str, BTreeSet<&str>> = graph
        .keys()
        .map(|from| {
            let (mut seen, mut todo) = (BTreeSet::new(), vec![*from]);
            while let Some(v) = todo.pop() {
                todo.extend(graph[v].iter().filter(|w| seen.insert(**w)));
            }
            (*from, seen)
        })
        .collect();
    let components: BTreeSet<BTreeSet<&str>> = reach
        .iter()
        .map(|(v, seen)| {
            let mut c: BTreeSet<&str> = seen
                .iter()
                .copied()
                .filter(|w| reach[w].contains(v))
                .collect();
            c.insert(v);
            c
        })
        .filter(|c| c.len() > 1)
        .collect();
    components
        .into_iter()
        .map(|files| {
            let mut lines = vec![format!("{files:?}")];
            lines.extend(
                edges
                    .iter()
                    .filter(|e| files.contains(e.from.as_str()) && files.contains(e.to.as_str()))
                    .map(|e| format!("  {}:{}: `{}` -> {}", e.from, e.line, e.path, e.to)),
            );
            lines
        })
        .collect()
}

#[test]
fn no_file_imports_from_a_higher_layer() {
    let breaks = layer_breaks(&edges(Path::new(env!("CARGO_MANIFEST_DIR"))));
    assert!(
        breaks.is_empty(),
        "{} imports break the layering:\n{}",
        breaks.len(),
        breaks.join("\n")
    );
}

#[test]
fn no_files_import_each_other_in_a_circle() {
    let circles = circles(
        &edges(Path::new(env!("CARGO_MANIFEST_DIR"))),
        CYCLE_CHECK_SKIPS,
    );
    assert!(
        circles.is_empty(),
        "{} import circles between files:\n{}",
        circles.len(),
        circles.concat().join("\n")
    );
}

mod tests {
    use super::*;

    fn paths(source: &str) -> Vec<(usize, String, usize)> {
        references(source)
            .0
            .into_iter()
            .map(|r| (r.line, r.path.join("::"), r.inline_depth))
            .collect()
    }

    #[test]
    fn grouped_uses_are_expanded() {
        let source = "use crate::{a::b, c::{self, D as E},\n  f::*};\nuse std::fmt;";
        assert_eq!(
            paths(source),
            [
                (1, "crate::a::b".into(), 0),
                (1, "crate::c".into(), 0),
                (1, "crate::c::D".into(), 0),
                (2, "crate::f".into(), 0),
                (3, "std::fmt".into(), 0),
            ]
        );
    }

    #[test]
    fn paths_in_code_and_declared_modules_are_references() {
        let source = "mod child;\nfn f() -> crate::x::Y { child::g(); self.h(); other::i() }";
        assert_eq!(
            paths(source),
            [(2, "crate::x::Y".into(), 0), (2, "child::g".into(), 0)]
        );
    }

    #[test]
    fn super_resolves_from_the_file_or_from_an_inline_module() {
        let source =
            "use super::a::B;\nmod tests {\n    use super::*;\n    use super::super::c;\n}";
        let (refs, children) = references(source);
        let module = vec!["store".to_string(), "clients".to_string()];
        let resolved: Vec<Option<String>> = refs
            .iter()
            .map(|r| absolute(r, &module, &children).map(|p| p.join("::")))
            .collect();
        assert_eq!(
            resolved,
            [Some("store::a::B".into()), None, Some("store::c".into())]
        );
        let files: HashSet<String> = ["src/store/mod.rs".into(), "src/store/a.rs".into()].into();
        assert_eq!(
            file_of(&["store".into(), "a".into(), "B".into()], &files),
            "src/store/a.rs"
        );
        assert_eq!(
            file_of(&["store".into(), "Record".into()], &files),
            "src/store/mod.rs"
        );
        assert_eq!(module_of("src/store/mod.rs"), ["store"]);
        assert_eq!(module_of("src/lib.rs"), Vec::<String>::new());
    }

    #[test]
    fn comments_and_literals_are_not_references() {
        let source = r##"// use crate::a::B;
/* crate::c::D /* nested crate::e */ crate::f */
/// [`crate::g::H`]
let s = "crate::i::J \" crate::k";
let r = r#"use crate::l::M; "# ;
let c = '"'; let d = '{'; fn f<'a>(x: &'a str) { crate::n::O }"##;
        assert_eq!(paths(source), [(6, "crate::n::O".into(), 0)]);
    }

    #[test]
    fn breaks_and_circles_are_found_in_a_graph_of_files() {
        let edge = |from: &str, to: &str| Edge {
            from: from.into(),
            to: to.into(),
            line: 1,
            path: "crate::x".into(),
        };
        let edges = [
            edge("src/store/a.rs", "src/actors/b.rs"),
            edge("src/actors/b.rs", "src/store/a.rs"),
            edge("src/oauth/c.rs", "src/memory.rs"),
            edge("src/http/d.rs", "src/http/e.rs"),
            edge("src/http/e.rs", "src/http/d.rs"),
            edge("src/bin/f.rs", "src/http/d.rs"),
        ];
        let breaks = layer_breaks(&edges);
        assert_eq!(breaks.len(), 2, "{breaks:?}");
        assert!(breaks[0].starts_with("src/oauth/c.rs:1: `crate::x` (src/memory.rs): oauth may"));
        assert!(breaks[1].ends_with("store (layer 1) imports actors (layer 2)"));
        assert_eq!(circles(&edges, &[]).len(), 2);
        let circles = circles(&edges, &["src/http/"]);
        assert_eq!(circles.len(), 1, "src/http/ skipped: {circles:?}");
        assert_eq!(circles[0][0], r#"{"src/actors/b.rs", "src/store/a.rs"}"#);
    }
}
