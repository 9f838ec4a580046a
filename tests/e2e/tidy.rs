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

/// The workspace's crates (a folder with a `Cargo.toml` at the root), the examples, the
/// tests and the fuzz targets.
fn source_dirs() -> Vec<std::path::PathBuf> {
    let root = crate::harness::workspace_root();
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("Cargo.toml").is_file() && !p.ends_with("fuzz"))
        .collect();
    for d in ["examples", "tests", "fuzz/fuzz_targets"] {
        dirs.push(root.join(d));
    }
    dirs
}

#[test]
fn every_rust_file_has_module_docs_and_no_debug_leftovers() {
    let mut files = Vec::new();
    let dirs = source_dirs();
    assert!(dirs.len() > 12, "found the crates: {dirs:?}");
    for dir in dirs {
        rust_files(&dir, &mut files);
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

/// The names in a crate's `[dependencies]` (not its dev-dependencies: tests may run on
/// real backends).
fn dependencies(krate: &str) -> Vec<String> {
    let manifest = crate::harness::workspace_root()
        .join(krate)
        .join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let mut deps = Vec::new();
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == "[dependencies]";
        } else if inside && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.', ' ']).next().unwrap_or_default();
            deps.push(name.to_owned());
        }
    }
    assert!(!deps.is_empty(), "{krate} has dependencies");
    deps
}

/// The layering the stages depend on, as the crates' dependencies say it: the HTTP layer
/// never reaches storage, the engine names no database (the binary opens one), and the
/// contract and the turn core know no database, runtime or framework.
#[test]
fn each_stage_depends_only_on_the_stages_below_it() {
    let databases = [
        "redb",
        "postgres",
        "dwell-storage-redb",
        "dwell-storage-postgres",
    ];
    let mut problems = Vec::new();
    let mut check = |krate: &str, banned: &[&str]| {
        for d in dependencies(krate) {
            if banned.contains(&d.as_str()) {
                problems.push(format!("{krate} depends on {d}"));
            }
        }
    };
    check(
        "dwell-http",
        &[&databases[..], &["dwell-storage", "dwell-core"]].concat(),
    );
    check("dwell-engine", &[&databases[..], &["actix-web"]].concat());
    let pure = [&databases[..], &["tokio", "actix-web", "wasmtime"]].concat();
    for krate in ["dwell-types", "dwell-storage", "dwell-core"] {
        check(krate, &pure);
    }
    check("dwell-executor", &databases);
    check("dwell-tls", &databases);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // And in the code: the HTTP layer uses none of the engine's storage handle.
    let mut files = Vec::new();
    rust_files(
        &crate::harness::workspace_root().join("dwell-http"),
        &mut files,
    );
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            if line.contains("store::") || line.contains("dwell_storage") {
                problems.push(format!("{}: {}", f.display(), line.trim()));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
