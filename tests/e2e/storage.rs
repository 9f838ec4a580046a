//! The storage backends seen from outside: two nodes on one PostgreSQL database.

use serde_json::json;

use crate::harness::*;

/// A second server started on the same database claims its partition (epoch + 1): the
/// first is fenced at its next commit and answers 503 — it commits nothing — while the
/// second serves every actor with everything the first acknowledged before. (On redb
/// one file has one process: the second would not open it.) This found a defect: a
/// batch refused at the epoch check dropped its callers' answers (500, "shut down").
#[test]
fn a_second_server_on_the_same_database_fences_the_first() {
    if test_postgres().is_none() {
        return;
    }
    let first = Server::start(&[]);
    first.deploy("counter", "counter");
    for i in 1..=3 {
        let r = first.call("counter", "k", json!({"add": 1}));
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json(), json!({"total": i}));
    }
    let url = first.postgres_url().expect("on PostgreSQL");
    // The second node shares the database; its data directory holds the same key files
    // (the tenant and admin keys, the secrets key that opens the stored secrets).
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for entry in std::fs::read_dir(&first.data).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && path.extension().is_some_and(|e| e == "key") {
            std::fs::copy(&path, data.join(path.file_name().unwrap())).unwrap();
        }
    }
    let second = Server::start_in(&data, &["--store", &url]);

    let refused = first.call("counter", "k", json!({"add": 100}));
    refused.assert_problem(503);
    let r = second.call("counter", "k", json!({"add": 1}));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json(),
        json!({"total": 4}),
        "the three acknowledged calls are there, the refused one is not"
    );
    // The first keeps refusing (it never writes again), and the second keeps serving.
    assert_eq!(first.event("counter", "j", json!({"add": 1})).status, 503);
    let r = second.call("counter", "j", json!({"add": 2}));
    assert_eq!(r.json(), json!({"total": 2}));
}
