//! A private PostgreSQL server for this crate's tests: initdb + pg_ctl in a temporary
//! directory, on 127.0.0.1 and a free port, as the `postgres` user when run as root;
//! stopped when dropped, whatever happens.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// PostgreSQL's programs: `DWELL_PG_BIN`, else the newest Debian install, else `PATH`.
fn pg_bin(program: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("DWELL_PG_BIN") {
        return Path::new(&dir).join(program);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin").join(program))
        .filter(|p| p.exists())
        .collect();
    versions.sort();
    versions.pop().unwrap_or_else(|| PathBuf::from(program))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Run a PostgreSQL program, as `postgres` when we are root (it refuses root).
fn run_pg(program: &str, args: &[&str]) {
    let bin = pg_bin(program);
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&bin);
        c
    } else {
        Command::new(&bin)
    };
    let out = cmd
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", bin.display()));
    assert!(
        out.status.success(),
        "{} {args:?}: {}{}",
        bin.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private server; stopped when dropped.
pub struct Server {
    _dir: tempfile::TempDir,
    data: String,
    port: u16,
    pub databases: AtomicUsize,
}

impl Server {
    pub fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(ok.success(), "chown the server's directory to postgres");
        }
        let data = dir.path().join("data").to_string_lossy().into_owned();
        let socket = dir.path().to_string_lossy().into_owned();
        run_pg(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {socket} -c fsync=off -c full_page_writes=off"
        );
        run_pg(
            "pg_ctl",
            &[
                "-D",
                &data,
                "-o",
                &opts,
                "-w",
                "-t",
                "60",
                "-l",
                &format!("{socket}/log"),
                "start",
            ],
        );
        Server {
            _dir: dir,
            data,
            port,
            databases: AtomicUsize::new(0),
        }
    }

    pub fn url(&self, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={db}",
            self.port
        )
    }

    /// A backend on a new, empty database.
    /// The URL of a new, empty database named `<prefix>_<n>`.
    pub fn database(&self, prefix: &str) -> String {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}_{n}");
        let mut admin = postgres::Client::connect(&self.url("postgres"), postgres::NoTls).unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        self.url(&name)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        run_pg(
            "pg_ctl",
            &["-D", &self.data, "-m", "immediate", "-w", "stop"],
        );
    }
}
