//! The storage conformance suite (`dwell_core::conformance`) on a real PostgreSQL: a
//! private server started for this test (initdb + pg_ctl in a temporary directory, on
//! 127.0.0.1 and a free port, as the `postgres` user when run as root), one fresh
//! database per scenario, stopped at the end whatever happens.

mod common;

use std::sync::atomic::Ordering;

use common::Server;
use dwell_core::conformance::{self, Backend};
use dwell_storage::Error;
use dwell_storage_postgres::{PgTables, Postgres};

/// A backend on a new, empty database.
fn backend(server: &Server) -> Pg {
    Pg(Postgres::connect(&server.database("conformance"), "test").unwrap())
}

struct Pg(Postgres);

impl Backend for Pg {
    type Tables<'t> = PgTables<'t>;
    fn write<R>(
        &mut self,
        f: impl for<'t> FnOnce(&mut PgTables<'t>) -> Result<R, Error>,
    ) -> Result<R, Error> {
        self.0.write(f)
    }
}

/// One test for the whole suite: the server is started once and always stopped.
#[test]
fn the_conformance_suite_passes_on_postgresql() {
    let server = Server::start();
    let make = || backend(&server);
    dwell_core::conformance_tests!(in_one: make);
    // Fewer random sequences than on redb: each one creates a database.
    conformance::random_sequences(make, 64);

    // Fencing: a second node taking the partition fences the first at its next commit.
    let mut first = backend(&server);
    first
        .write(|t| dwell_storage::Tables::put_meta(t, "k", b"v"))
        .unwrap();
    let url = server.url(&format!(
        "conformance_{}",
        server.databases.load(Ordering::Relaxed) - 1
    ));
    let mut second = Postgres::connect(&url, "second").unwrap();
    let fenced = first.write(|t| dwell_storage::Tables::put_meta(t, "k", b"w"));
    assert_eq!(fenced.err(), Some(Error::Fenced));
    let value = second
        .write(|t| dwell_storage::Tables::meta(t, "k"))
        .unwrap();
    assert_eq!(
        value.as_deref(),
        Some(&b"v"[..]),
        "the fenced write left nothing"
    );
}
