//! The layer order of `lib.rs`'s module map, checked: a module uses the
//! modules of its own layer and the layers before it, never a later one
//! (docs/architecture.md, "Module map"). Read from the source files, so a
//! `use` that points the wrong way fails `cargo test` instead of waiting
//! for a reviewer.

/// Top-level modules by layer, in the order data flows.
const LAYERS: &[&[&str]] = &[
    // Vocabulary: no xdb module below it.
    &["model", "error_policy", "shutdown", "state_dir", "secrets", "net", "term", "own_thread", "suggest"],
    &["plan"],
    // Connections to PostgreSQL, for its source and its target alike.
    &["pg_conn"],
    &["mapping"],
    // The replicated log's format and transport, for its producer and consumer.
    &["debezium", "nats"],
    &["source"],
    &["sink"],
    // Pipelines and the commands' bodies; they may use each other.
    &["copy", "pipeline", "validate", "tail", "schema", "cutover", "check", "status", "cleanup"],
    &["cmd"],
];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// `(file, line, from, to)` for every `crate::<to>` in code (not comments)
/// of a module of an earlier layer than `to`.
fn upward_uses() -> Vec<(String, usize, String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![root.clone()];
    let mut out = Vec::new();
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let rel = path.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
        let top = rel.split('/').next().unwrap().trim_end_matches(".rs").to_string();
        let Some(from) = layer(&top) else { continue };
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for (at, _) in code.match_indices("crate::") {
                let to: String = code[at + 7..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                let Some(to_layer) = layer(&to) else { continue };
                if to_layer > from {
                    out.push((rel.clone(), n + 1, top.clone(), to));
                }
            }
        }
    }
    out
}

#[test]
fn every_top_level_module_has_a_layer() {
    let lib = include_str!("lib.rs");
    let missing: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.trim_start_matches("pub ").trim_start_matches("pub(crate) ").strip_prefix("mod "))
        .map(|m| m.trim_end_matches(';'))
        .filter(|m| *m != "layers" && layer(m).is_none())
        .collect();
    assert!(missing.is_empty(), "modules without a layer in src/layers.rs: {missing:?}");
}

#[test]
fn dependencies_point_one_way() {
    let up = upward_uses();
    let lines: Vec<String> = up.iter().map(|(f, n, from, to)| format!("src/{f}:{n}: {from} uses {to}")).collect();
    assert!(lines.is_empty(), "modules using a later layer:\n{}", lines.join("\n"));
}
