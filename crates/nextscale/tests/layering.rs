//! The core's layering: every `crate::` path in `src/` names a module on a lower layer than
//! the module it is written in, as the table in the crate doc (`src/lib.rs`) states. So the
//! core has no import circle, and a new module has to take a place in the table.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The `layer | modules | what` rows of the crate doc's text block under `# Layers`.
fn layers(lib_rs: &str) -> BTreeMap<String, usize> {
    let doc = lib_rs
        .split("# Layers")
        .nth(1)
        .expect("src/lib.rs has a `# Layers` section");
    let block = doc
        .split("```text")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the `# Layers` section has a ```text block");
    let mut layers = BTreeMap::new();
    for line in block.lines() {
        let line = line.trim_start_matches("//!").trim();
        if line.is_empty() {
            continue;
        }
        let mut cells = line.split('|').map(str::trim);
        let layer: usize = cells
            .next()
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("layer row without a number: {line}"));
        let modules = cells
            .next()
            .unwrap_or_else(|| panic!("layer row without modules: {line}"));
        for module in modules.split_whitespace() {
            let previous = layers.insert(module.to_string(), layer);
            assert!(previous.is_none(), "`{module}` is listed twice");
        }
    }
    layers
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("readable src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a source file: `a.rs` and `a/mod.rs` are `[a]`, `a/b.rs` is `[a, b]`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("file under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The first identifier of `text`, and what follows it.
fn ident(text: &str) -> (&str, &str) {
    let end = text.find(|c| !is_ident(c)).unwrap_or(text.len());
    text.split_at(end)
}

/// The top-level modules a file's paths name: `crate::x…`, `crate::{x…, y…}`, and
/// `super::…` chains that climb to the crate root.
fn referenced_modules(text: &str, own: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    let bytes: Vec<(usize, char)> = text.char_indices().collect();
    for (i, _) in bytes {
        let rest = &text[i..];
        let preceded_by_ident = text[..i].chars().next_back().is_some_and(is_ident);
        if preceded_by_ident {
            continue;
        }
        if let Some(after) = rest.strip_prefix("crate::") {
            if let Some(group) = after.strip_prefix('{') {
                let mut depth = 0usize;
                let mut item_start = true;
                for (j, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => item_start = true,
                        c if item_start && is_ident(c) => {
                            found.push(ident(&group[j..]).0.to_string());
                            item_start = false;
                        }
                        _ => {}
                    }
                }
            } else {
                found.push(ident(after).0.to_string());
            }
        } else if rest.starts_with("super::") {
            let mut path = own.to_vec();
            let mut tail = rest;
            while let Some(t) = tail.strip_prefix("super::") {
                path.pop();
                tail = t;
            }
            if path.is_empty() {
                found.push(ident(tail).0.to_string());
            }
        }
    }
    found
}

#[test]
fn every_module_imports_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib_rs = fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs");
    let layers = layers(&lib_rs);
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut problems = Vec::new();
    for file in &files {
        let own = module_path(&src, file);
        let Some(top) = own.first() else {
            continue; // lib.rs: the crate root declares every module.
        };
        let Some(&layer) = layers.get(top) else {
            problems.push(format!("module `{top}` has no layer in src/lib.rs"));
            continue;
        };
        let text = fs::read_to_string(file).expect("readable source");
        for name in referenced_modules(&text, &own) {
            if &name == top {
                continue;
            }
            // Re-exports at the crate root (`crate::Error`) are no module.
            let Some(&their) = layers.get(&name) else {
                continue;
            };
            if their >= layer {
                problems.push(format!(
                    "{}: `{top}` (layer {layer}) uses `{name}` (layer {their})",
                    file.strip_prefix(&src).unwrap_or(file).display()
                ));
            }
        }
    }
    problems.dedup();
    assert!(
        problems.is_empty(),
        "layering broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_declared_module_has_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib_rs = fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs");
    let layers = layers(&lib_rs);
    let declared: Vec<&str> = lib_rs
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    assert!(!declared.is_empty());
    for module in declared {
        assert!(layers.contains_key(module), "`{module}` has no layer");
    }
}

#[test]
fn the_checker_sees_upward_paths() {
    let own = vec!["nn".to_string()];
    let text = "use crate::model::Model;\nuse crate::{var::Var, error::Result};\nfn f() { super::pipeline::x(); }\nlet a = my_crate::model;";
    assert_eq!(
        referenced_modules(text, &own),
        vec!["model", "var", "error", "pipeline"]
    );
    let nested = vec!["var".to_string(), "block".to_string()];
    assert!(referenced_modules("use super::attention::A;", &nested).is_empty());
}
