//! One PostgreSQL database per data directory: a server (or an engine) started on a data
//! directory gets `--store <server>/<database of that directory>`, made on first use, so
//! that a restart on the same directory finds its state and two directories never share
//! one. The name is a stable hash of the path (FNV-1a), the same in every process.

use std::path::Path;

use postgres::{Client, NoTls};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database name prefix {0:?}: only a-z, 0-9 and _ are allowed")]
    Prefix(String),
    #[error("connecting to {url}: {source}")]
    Connect {
        url: String,
        source: postgres::Error,
    },
    #[error("making database {name}: {source}")]
    Create {
        name: String,
        source: postgres::Error,
    },
}

/// The URL of the database that belongs to the data directory `data` on the PostgreSQL
/// server `server` (e.g. `postgres://postgres@127.0.0.1:5432`): `<server>/<prefix><hash>`,
/// made now unless it exists.
pub fn database_url(server: &str, prefix: &str, data: &Path) -> Result<String, Error> {
    let name = database_name(prefix, data)?;
    let server = server.trim_end_matches('/');
    let url = format!("{server}/postgres");
    let mut admin = Client::connect(&url, NoTls).map_err(|source| Error::Connect {
        url: url.clone(),
        source,
    })?;
    let create = |source| Error::Create {
        name: name.clone(),
        source,
    };
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .map_err(create)?
        .is_some();
    if !exists {
        // `name` is checked to be a plain identifier: it can stand in the statement.
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .map_err(create)?;
    }
    Ok(format!("{server}/{name}"))
}

/// `<prefix><FNV-1a of the path's bytes, 16 hex digits>`.
fn database_name(prefix: &str, data: &Path) -> Result<String, Error> {
    let plain = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
    if !prefix.starts_with(|c: char| c.is_ascii_lowercase()) || !prefix.chars().all(plain) {
        return Err(Error::Prefix(prefix.to_owned()));
    }
    let mut h: u64 = 0xcbf29ce484222325;
    for b in data.as_os_str().as_encoded_bytes() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100000001b3);
    }
    Ok(format!("{prefix}{h:016x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_is_the_fnv1a_hash_of_the_path_after_the_prefix() {
        // FNV-1a of no bytes is its offset basis; of "a", the published test vector.
        assert_eq!(
            database_name("dwell_", Path::new("")).unwrap(),
            "dwell_cbf29ce484222325"
        );
        assert_eq!(
            database_name("dwell_bench_", Path::new("a")).unwrap(),
            "dwell_bench_af63dc4c8601ec8c"
        );
    }

    #[test]
    fn a_prefix_that_is_not_a_plain_identifier_is_refused() {
        for bad in ["", "Dwell_", "dwell-", "1dwell", "dwell; DROP"] {
            assert!(database_name(bad, Path::new("/d")).is_err(), "{bad:?}");
        }
    }
}
