//! No import cycle between the top-level modules of a crate.
//!
//! A module may use the modules below it, never one that uses it back: that is what lets a
//! newcomer read each crate bottom-up (`docs/architecture.md`). The graph is read from the
//! sources: an edge `a → b` for every `crate::b` named in module `a` (outside comments and test
//! files), where `a` and `b` are the crate's top-level modules; a cycle is a strongly connected
//! component of more than one module.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The library crates whose module graph must be acyclic, relative to the workspace root.
const CRATES: &[&str] = &[
    "gateway/src",
    "gateway/iiif/src",
    "lazyfetch/src",
    "coalesce/src",
    "loadtest/src",
];

type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn no_crate_has_an_import_cycle_between_its_modules() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cycles = Vec::new();
    for dir in CRATES {
        let graph = module_graph(&workspace.join(dir));
        assert!(!graph.is_empty(), "{dir}: no modules found");
        for cycle in cycles_of(&graph) {
            cycles.push(format!("{dir}: {}", cycle.join(" ↔ ")));
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn a_cycle_is_found() {
    let graph: Graph = [("a", "b"), ("b", "c"), ("c", "a"), ("d", "a")]
        .into_iter()
        .fold(Graph::new(), |mut graph, (from, to)| {
            graph.entry(from.into()).or_default().insert(to.into());
            graph
        });
    assert_eq!(cycles_of(&graph), vec![vec!["a", "b", "c"]]);
}

#[test]
fn uses_in_comments_do_not_count() {
    let text = "//! see [`crate::other`]\nuse crate::real::Thing;\n    // crate::nothing\n";
    assert_eq!(used_modules(text), BTreeSet::from(["real".to_string()]));
}

/// Top-level module → the top-level modules it names.
fn module_graph(src: &Path) -> Graph {
    let mut graph = Graph::new();
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).expect("under src");
        let Some(module) = top_level_module(relative) else {
            continue;
        };
        let text = fs::read_to_string(&file).expect("readable source");
        let uses = used_modules(&text);
        let entry = graph.entry(module.clone()).or_default();
        entry.extend(uses.into_iter().filter(|used| *used != module));
    }
    graph
}

/// `fcgi/pool.rs` → `fcgi`; `app.rs` → `app`; `None` for the crate root and for test files.
fn top_level_module(relative: &Path) -> Option<String> {
    let stem = relative.file_stem()?.to_str()?;
    if stem.contains("test") || stem == "crash_probe" {
        return None;
    }
    let first = relative.components().next()?.as_os_str().to_str()?;
    let module = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(module, "lib" | "main")).then(|| module.to_string())
}

/// The modules named as `crate::{name}` outside comments.
fn used_modules(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .flat_map(|line| {
            line.match_indices("crate::")
                .map(move |(at, _)| &line[at + 7..])
        })
        .filter_map(|rest| {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty() && name.starts_with(|c: char| c.is_ascii_lowercase())).then_some(name)
        })
        .collect()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).expect("readable directory") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The strongly connected components with more than one module (Tarjan), each sorted.
fn cycles_of(graph: &Graph) -> Vec<Vec<String>> {
    struct Search<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        found: Vec<Vec<String>>,
    }
    impl<'g> Search<'g> {
        fn visit(&mut self, node: &'g str) {
            let index = self.index.len();
            self.index.insert(node, index);
            self.low.insert(node, index);
            self.stack.push(node);
            for next in self.graph.get(node).into_iter().flatten() {
                let next = next.as_str();
                if !self.index.contains_key(next) {
                    self.visit(next);
                    self.low.insert(node, self.low[node].min(self.low[next]));
                } else if self.stack.contains(&next) {
                    self.low.insert(node, self.low[node].min(self.index[next]));
                }
            }
            if self.low[node] == self.index[node] {
                let at = self
                    .stack
                    .iter()
                    .position(|n| *n == node)
                    .expect("on the stack");
                let mut component: Vec<String> =
                    self.stack.drain(at..).map(str::to_string).collect();
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut search = Search {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !search.index.contains_key(node.as_str()) {
            search.visit(node);
        }
    }
    search.found
}
