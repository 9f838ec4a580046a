//! The workspace and its example guests: [`workspace_root`], and [`build_guests`], which
//! builds guest packages as `scripts/build-guests.sh` does (`--profile guest --target
//! wasm32-wasip2` into `<root>/target/guests`), each package once per process.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::{Mutex, PoisonError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("running cargo to build the guests: {0}")]
    Cargo(io::Error),
    #[error("building the guests {packages:?} failed ({status})")]
    Failed {
        packages: Vec<String>,
        status: ExitStatus,
    },
    #[error("{} was not built", .0.display())]
    Missing(PathBuf),
}

/// The workspace's root folder (this crate's parent).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("dwell-testkit/ has a parent")
        .to_path_buf()
}

/// Build the guest `packages` not built yet by this process; returns the folder holding
/// `<package>.wasm`. Callers wait for one another's build (a lock, not a second cargo).
pub fn build_guests(packages: &[&str]) -> Result<PathBuf, Error> {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let target = workspace_root().join("target").join("guests");
    let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !built.iter().any(|b| b == p))
        .collect();
    if !missing.is_empty() {
        // Our own build's settings (a test's RUSTFLAGS or target directory) are not the
        // guests'.
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(workspace_root())
            .args(["build", "--profile", "guest", "--target", "wasm32-wasip2"])
            .arg("--target-dir")
            .arg(&target)
            .args(missing.iter().flat_map(|p| ["-p", p]))
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_TARGET_DIR")
            .status()
            .map_err(Error::Cargo)?;
        if !status.success() {
            return Err(Error::Failed {
                packages: missing.iter().map(|p| p.to_string()).collect(),
                status,
            });
        }
        built.extend(missing.iter().map(|p| p.to_string()));
    }
    Ok(target.join("wasm32-wasip2").join("guest"))
}

/// The component of guest `name`, after building `packages` (which name it).
pub fn guest(packages: &[&str], name: &str) -> Result<PathBuf, Error> {
    let path = build_guests(packages)?.join(format!("{name}.wasm"));
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::Missing(path))
    }
}
