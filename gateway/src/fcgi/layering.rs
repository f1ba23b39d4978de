//! The layers of `fcgi` (see the module docs) import only layers below them, and none of them
//! imports the IIIF cost model or the IIIF core. Checked on the source text, so a new import
//! that breaks the order fails here rather than in review.

/// Each layer and its source, lowest first.
const LAYERS: [(&str, &str); 8] = [
    ("error", include_str!("error.rs")),
    ("record", include_str!("record.rs")),
    ("cgi", include_str!("cgi.rs")),
    ("client", include_str!("client.rs")),
    ("process", include_str!("process.rs")),
    ("scheduler", include_str!("scheduler.rs")),
    ("health", include_str!("health.rs")),
    ("pool", include_str!("pool.rs")),
];

/// The code of a layer: without its unit tests (a trailing `mod tests`) and comment lines.
fn code(source: &str) -> String {
    let end = source
        .find("#[cfg(test)]\nmod tests")
        .unwrap_or(source.len());
    source[..end]
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The names after every `super::` in `code`: the sibling modules it uses.
fn siblings(code: &str) -> Vec<&str> {
    code.match_indices("super::")
        .map(|(at, prefix)| {
            let rest = &code[at + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

#[test]
fn each_layer_uses_only_the_layers_below_it() {
    for (position, (layer, source)) in LAYERS.iter().enumerate() {
        let below: Vec<&str> = LAYERS[..position].iter().map(|(name, _)| *name).collect();
        for sibling in siblings(&code(source)) {
            assert!(
                below.contains(&sibling),
                "fcgi::{layer} uses `super::{sibling}`, which is not a layer below it \
                 ({below:?}); name the module, not a re-export of `fcgi`"
            );
        }
    }
}

#[test]
fn no_layer_knows_the_cost_model_or_iiif() {
    for (layer, source) in LAYERS {
        let code = code(source);
        for (at, _) in code.match_indices("crate::admission") {
            assert!(
                code[at..].starts_with("crate::admission::policy"),
                "fcgi::{layer} uses admission beyond its lane policy: {}",
                code[at..].lines().next().unwrap_or_default()
            );
        }
        assert!(!code.contains("iiif::"), "fcgi::{layer} uses the IIIF core");
        assert!(
            !code.contains("crate::fcgi"),
            "fcgi::{layer} names fcgi by its path"
        );
    }
}

#[test]
fn the_checks_see_imports() {
    assert_eq!(
        siblings("use super::client::{self, Limits};\nuse super::error::FcgiError;"),
        ["client", "error"]
    );
    assert_eq!(
        code("use a;\n// use super::pool;\n#[cfg(test)]\nmod tests {}"),
        "use a;"
    );
}
