//! Tidy checks on the source tree: every Rust file opens with a `//!` doc saying what it
//! owns, and no debugging leftovers are committed.

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_has_module_docs_and_no_debug_leftovers() {
    let root = crate::harness::workspace_root();
    let mut files = Vec::new();
    for dir in [
        "dwell-types",
        "dwell-storage",
        "dwell-storage-postgres",
        "dwell-core",
        "dwell-executor",
        "runtime",
        "guest-sdk",
        "examples",
        "tests",
        "chaos",
        "dwell-bench",
        "dwell-testkit",
        "fuzz/fuzz_targets",
    ] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 20, "found the sources");
    let mut problems = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        if !text.starts_with("//!") {
            problems.push(format!(
                "{}: no //! module doc on the first line",
                f.display()
            ));
        }
        // A file over 600 lines says why in its module doc.
        let lines = text.lines().count();
        let doc: String = text
            .lines()
            .take_while(|l| l.starts_with("//!"))
            .collect::<Vec<_>>()
            .join(" ");
        if lines > 600 && !doc.contains("Long because") {
            problems.push(format!(
                "{}: {lines} lines, and its module doc does not say why (\"Long because …\")",
                f.display()
            ));
        }
        for bad in [
            concat!("dbg", "!("),
            concat!("todo", "!("),
            concat!("unimplemented", "!("),
        ] {
            if text.contains(bad) {
                problems.push(format!("{}: contains {bad}", f.display()));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The layering the storage contract depends on: the HTTP layer never reaches into
/// storage, and only the store knows redb.
#[test]
fn http_imports_nothing_from_storage_and_only_the_store_knows_redb() {
    let root = crate::harness::workspace_root();
    let mut problems = Vec::new();
    let mut check = |dir: &str, banned: &[&str]| {
        let mut files = Vec::new();
        rust_files(&root.join(dir), &mut files);
        assert!(!files.is_empty(), "{dir} has sources");
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            // Code only: doc comments may name the data file.
            for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for bad in banned {
                    if line.contains(bad) {
                        problems.push(format!("{}: {}", f.display(), line.trim()));
                    }
                }
            }
        }
    };
    check("runtime/src/http", &["crate::store", "redb", "postgres::"]);
    check(
        "runtime/src/engine",
        &["redb", "postgres::", "dwell_storage_postgres"],
    );
    check("dwell-types", &["redb", "crate::store"]);
    check("dwell-executor", &["redb"]);
    // The contract and the turn core know no database, runtime or framework.
    let pure = ["redb", "postgres", "tokio", "actix", "wasmtime"];
    check("dwell-storage", &pure);
    check("dwell-core", &pure);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
