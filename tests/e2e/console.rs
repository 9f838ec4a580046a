//! The web console at `/ui` in a real headless Chromium (webdriver.rs): a tenant signs
//! in, finds an actor and opens it, reads its history, retries a dead letter, lists
//! requests and looks at a process map; each step asserts what the page shows (checked
//! against the API where the API is the truth), and leaves a screenshot in
//! `target/console-screenshots/`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::Server;
use crate::webdriver::Browser;

/// Open the console and sign in with `key`; waits for the signed-in frame.
fn sign_in(b: &Browser, server: &Server, path: &str, key: &str) {
    b.goto(&format!("{}{path}", server.base));
    b.fill("#key", key);
    b.click("#sign-in button[type=submit]");
    b.wait_for("#sign-out:not([hidden])");
}

#[test]
fn the_console_is_served_at_ui_with_a_strict_policy_and_stays_out_of_the_api_document() {
    let server = Server::start(&[]);
    for path in ["/ui", "/ui/", "/ui/actors/counter/a/history"] {
        // No key needed for the page: the app asks for one.
        let r = server.request("GET", path, &[("authorization", "")], None);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("text/html; charset=utf-8")
        );
        let csp = r.header("content-security-policy").expect("a CSP");
        assert!(csp.starts_with("default-src 'self'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(
            r.header("x-content-type-options").as_deref(),
            Some("nosniff")
        );
    }
    let js = server.request("GET", "/ui/assets/app.js", &[("authorization", "")], None);
    assert_eq!(js.status, 200);
    assert!(
        js.header("content-type")
            .unwrap()
            .starts_with("text/javascript")
    );
    server
        .request("GET", "/ui/assets/missing.js", &[], None)
        .assert_problem(404);
    let doc = server.get("/v1/openapi.json").json();
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    assert!(
        paths.iter().all(|p| !p.starts_with("/ui")),
        "the console is not an API operation: {paths:?}"
    );
}

#[test]
fn a_tenant_signs_in_finds_an_actor_opens_it_and_reads_its_history() {
    let server = Server::start(&[]);
    server.deploy("counter", "counter");
    for (key, add) in [("alice", 2), ("bob", 5), ("alice", 3)] {
        assert_eq!(
            server.call("counter", key, json!({ "add": add })).status,
            200
        );
    }
    let Some(b) = Browser::start("find-an-actor") else {
        return;
    };

    // A wrong key is refused on the page; the right one opens the modules.
    b.goto(&format!("{}/ui/", server.base));
    b.fill("#key", "dwk_not_a_key");
    b.click("#sign-in button[type=submit]");
    b.wait_text("#sign-in .notice.error", "That key is not valid.");
    b.screenshot("1-refused");
    b.fill("#key", &server.key);
    b.click("#sign-in button[type=submit]");
    let modules = b.wait_text("#modules", "counter");
    assert!(modules.contains("Process map"), "{modules}");
    assert_eq!(b.text(&b.wait_for("#who")).as_deref(), Some("tenant key"));
    b.screenshot("2-modules");

    // The actor list, filtered by module and narrowed by key.
    b.click("#nav a[data-section=actors]");
    b.click("#filter-module option[value=counter]");
    b.click("#filters button[type=submit]");
    b.wait_text("#actors", "counter/bob");
    let list = b.wait_text("#actors", "counter/alice");
    assert!(b.url().contains("module=counter"), "{}", b.url());
    assert_eq!(b.find_all("#actors tbody tr").len(), 2, "{list}");
    assert!(list.contains("active"), "{list}");
    b.fill("#key-search", "ali");
    b.until_text_lacks("#actors", "counter/bob");
    b.screenshot("3-actors");
    // A filter that matches nobody says so.
    b.click("#filter-status option[value=completed]");
    b.click("#filters button[type=submit]");
    b.wait_text("#actors", "No actors match.");
    // Opening one by module and key: an unknown key says so.
    b.fill("#open-module", "counter");
    b.fill("#open-key", "nobody");
    b.click("#open-actor button[type=submit]");
    b.wait_text(
        "#open-actor .notice.error",
        "There is no actor counter/nobody.",
    );
    b.goto(&format!("{}/ui/actors?module=counter", server.base));
    b.click("#actors a.actor-link[href$='/alice']");

    // The actor page shows what the API holds.
    let state = b.wait_text("#state", "\"total\": 5");
    assert_eq!(state.trim(), "{\n  \"total\": 5\n}");
    let summary = b.wait_text("#summary", "Turns");
    assert!(summary.contains("active"), "{summary}");
    assert!(summary.contains("Mailbox depth\n0"), "{summary}");
    assert_eq!(
        b.text(&b.wait_for("#dead-letters")).as_deref(),
        Some("No dead letters.")
    );
    assert!(b.url().ends_with("/ui/actors/counter/alice"), "{}", b.url());
    b.screenshot("4-actor");

    // Its history: the turns newest first, and one turn's state and diff.
    b.click(".tabs a[href$='/history']");
    let api = server.get("/v1/actors/counter/alice/history").json();
    let items = api["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{api}");
    b.wait_for("#timeline li.turn");
    let shown = b.find_all("#timeline li.turn");
    assert_eq!(shown.len(), 2);
    let newest = b.text(&shown[0]).unwrap();
    assert!(
        newest.starts_with(&format!("#{} ", items[0]["seq"])),
        "{newest}"
    );
    assert!(newest.contains("ok"), "{newest}");
    b.screenshot("5-history");
    // The newest turn: the state as of it, the one before, and what changed.
    b.click("#timeline li.turn:first-child .when a");
    b.wait_text("#state-after", "\"total\": 5");
    b.wait_text("#state-before", "\"total\": 2");
    let diff = b.wait_text("#diff", "/total");
    assert!(diff.contains("/total 2 5"), "{diff}");
    b.screenshot("6-turn");

    // The requests the calls made, as the API lists them.
    b.click("#nav a[data-section=requests]");
    let api = server.get("/v1/requests?limit=50").json();
    let listed = api["items"].as_array().unwrap().len();
    if listed == 0 {
        b.wait_text("#requests", "No requests match.");
    } else {
        b.wait_for("#requests tbody tr");
        assert_eq!(b.find_all("#requests tbody tr").len(), listed);
        b.wait_text("#requests", "counter/alice");
    }
    b.screenshot("7-requests");

    // Signing out forgets the key; a deep link asks for it and then opens.
    b.click("#sign-out");
    b.wait_for("#sign-in");
    assert_eq!(
        b.script("return sessionStorage.getItem('dwell.key')", json!([])),
        Value::Null
    );
    sign_in(&b, &server, "/ui/actors/counter/bob", &server.key);
    b.wait_text("#state", "\"total\": 5");
    assert!(b.url().ends_with("/ui/actors/counter/bob"), "{}", b.url());
}

#[test]
fn a_dead_letter_is_retried_from_the_actor_page_and_leaves_the_list() {
    let server = Server::start(&[]);
    server.deploy("counter", "counter");
    assert_eq!(server.call("counter", "dl", json!({"add": 1})).status, 200);
    // An event the counter cannot decode has nobody to tell: it is dead-lettered.
    assert_eq!(
        server.event("counter", "dl", json!({"subtract": 1})).status,
        202
    );
    let a = server.eventually(Duration::from_secs(10), "the dead letter", || {
        let a = server.actor("counter", "dl").json();
        (a["dead_letter_count"] == 1).then_some(a)
    });
    let seq = a["dead_letters"][0]["seq"].as_u64().unwrap();
    let Some(b) = Browser::start("retry-dead-letter") else {
        return;
    };
    sign_in(&b, &server, "/ui/actors/counter/dl", &server.key);
    let row = b.wait_text("#dead-letters", "missing field");
    assert!(row.contains(r#"{"subtract":1}"#), "{row}");
    b.scroll_to("#dead-letters");
    b.screenshot("1-dead-letter");

    b.click(&format!("#dead-letters button.retry[data-seq='{seq}']"));
    b.wait_text(
        "#actor-message .notice.ok",
        &format!("Dead letter {seq} is back in the mailbox"),
    );
    b.wait_gone(&format!("#dead-letters button.retry[data-seq='{seq}']"));
    // The API agrees: the letter left the list. The counter refuses it again, so it
    // comes back as a new dead letter with a new number, never the old one.
    let a = server.eventually(Duration::from_secs(10), "the retried letter's turn", || {
        let a = server.actor("counter", "dl").json();
        (a["dead_letter_count"] == 2).then_some(a)
    });
    let left = a["dead_letters"].as_array().unwrap();
    assert_eq!(left.len(), 1, "moved, not copied: {a}");
    let again = left[0]["seq"].as_u64().unwrap();
    assert_ne!(again, seq);
    b.click("#actor button.secondary");
    b.wait_for(&format!("#dead-letters button.retry[data-seq='{again}']"));
    assert!(
        b.find_all(&format!("#dead-letters button.retry[data-seq='{seq}']"))
            .is_empty()
    );
    let heading = b.script(
        "return [...document.querySelectorAll('h2')].map(h => h.textContent).join('|')",
        json!([]),
    );
    assert!(
        heading
            .as_str()
            .unwrap()
            .contains("Dead letters (1 here, 2 ever)"),
        "{heading}"
    );
    b.scroll_to("#dead-letters");
    b.screenshot("2-retried");

    // The history shows both deliveries the counter refused, with why.
    let api = server.get("/v1/actors/counter/dl/history").json();
    let refused = api["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["outcome"]["status"] == "refused")
        .count();
    assert_eq!(refused, 2, "{api}");
    b.click(".tabs a[href$='/history']");
    b.wait_for("#timeline li.turn.refused");
    assert_eq!(b.find_all("#timeline li.turn.refused").len(), refused);
    assert_eq!(b.find_all("#timeline li.turn").len(), 3);
    b.wait_text("#timeline li.turn.refused", "missing field");
    b.screenshot("3-history");
}

#[test]
fn a_process_map_is_drawn_left_to_right_with_live_counts() {
    let server = Server::start(&[]);
    server.deploy("checkin", "checkin");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // Three bookings wait for check-in to open; two find the boarding-pass service not
    // allowed (this server allows no outbound HTTP) and wait to retry.
    let bookings = [
        ("LATER1", now + 3_600_000),
        ("LATER2", now + 3_600_000),
        ("LATER3", now + 3_600_000),
        ("DOWN1", now - 60_000),
        ("DOWN2", now - 60_000),
    ];
    for (booking, opens) in bookings {
        let r = server.event(
            "checkin",
            booking,
            json!({
                "type": "register", "booking": booking, "passenger": "Ada",
                "checkin_opens_at_ms": opens, "boarding_pass_url": "http://127.0.0.1:9/passes",
                "retry_ms": 60_000,
            }),
        );
        assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    }
    let map = server.eventually(Duration::from_secs(15), "the steps", || {
        let map = server.get("/v1/modules/checkin/map").json();
        let waiting = |id: &str| {
            map["nodes"]
                .as_array()?
                .iter()
                .find(|n| n["id"] == id)
                .map(|n| n["waiting"].clone())
        };
        (waiting("waiting for check-in to open") == Some(json!(3))
            && waiting("boarding pass service retry") == Some(json!(2)))
        .then_some(map)
    });
    let Some(b) = Browser::start("process-map") else {
        return;
    };
    sign_in(&b, &server, "/ui/modules/checkin/map", &server.key);
    // The drawing holds every step the server mined, with its counts, and every edge.
    b.wait_for("svg#process-map");
    let nodes = map["nodes"].as_array().unwrap();
    assert_eq!(b.find_all("svg#process-map g.node").len(), nodes.len());
    for n in nodes {
        let css = format!(
            "svg#process-map g.node[data-id='{}']",
            n["id"].as_str().unwrap()
        );
        let text = b.text(&b.wait_for(&css)).unwrap();
        assert!(text.contains(&format!("{} seen", n["count"])), "{text}");
        assert!(
            text.contains(&format!("{} waiting", n["waiting"])),
            "{text}"
        );
    }
    let waiting = b.text(
        &b.wait_for("svg#process-map g.node.waiting[data-id='waiting for check-in to open']"),
    );
    assert!(waiting.unwrap().contains("3 waiting"));
    let waiting = b
        .text(&b.wait_for("svg#process-map g.node.waiting[data-id='boarding pass service retry']"));
    assert!(waiting.unwrap().contains("2 waiting"));
    let edges = map["edges"].as_array().unwrap();
    assert!(!edges.is_empty(), "{map}");
    assert_eq!(b.find_all("svg#process-map g.edge").len(), edges.len());
    for e in edges {
        let css = format!(
            "svg#process-map g.edge[data-from='{}'][data-to='{}']",
            e["from"].as_str().unwrap(),
            e["to"].as_str().unwrap()
        );
        let text = b.text(&b.wait_for(&css)).unwrap();
        assert!(
            text.starts_with(&format!("{}× · p50 ", e["count"])),
            "{text}"
        );
    }
    b.wait_text("#map-updated", "Mined from 5 actors' history.");
    b.screenshot("1-checkin-map");

    // Live: another booking that waits shows up without reloading the page.
    let r = server.event("checkin", "LATER4", json!({
        "type": "register", "booking": "LATER4", "passenger": "Ada",
        "checkin_opens_at_ms": now + 3_600_000, "boarding_pass_url": "http://127.0.0.1:9/passes",
    }));
    assert_eq!(r.status, 202);
    b.wait_text(
        "svg#process-map g.node[data-id='waiting for check-in to open']",
        "4 waiting",
    );

    // The drawing itself, on a map with a retry loop: steps left to right in the order
    // they follow, the loop drawn back, counts and waiting actors on the boxes.
    let map = json!({
        "nodes": [
            {"id": "registered", "label": "registered", "count": 10, "waiting": 0},
            {"id": "fetching", "label": "fetching boarding pass", "count": 13, "waiting": 0},
            {"id": "retrying", "label": "retrying", "count": 3, "waiting": 2},
            {"id": "issued", "label": "boarding pass issued", "count": 7, "waiting": 0},
            {"id": "closed", "label": "check-in closed", "count": 1, "waiting": 0},
        ],
        "edges": [
            {"from": "registered", "to": "fetching", "count": 10, "p50_ms": 12, "p95_ms": 40},
            {"from": "fetching", "to": "issued", "count": 7, "p50_ms": 900, "p95_ms": 2100},
            {"from": "fetching", "to": "retrying", "count": 3, "p50_ms": 1500, "p95_ms": 1900},
            {"from": "retrying", "to": "fetching", "count": 3, "p50_ms": 4000, "p95_ms": 8000},
            {"from": "registered", "to": "closed", "count": 1, "p50_ms": 90000, "p95_ms": 90000},
        ],
    });
    let error = b.script_async(
        "const done = arguments[arguments.length - 1];
         import('/ui/assets/map.js').then((m) => {
           document.getElementById('main').replaceChildren(m.draw(arguments[0]));
           done(null);
         }, (e) => done(String(e)));",
        json!([map]),
    );
    assert_eq!(error, Value::Null);
    assert_eq!(b.find_all("svg#process-map g.node").len(), 5);
    assert_eq!(b.find_all("svg#process-map g.edge").len(), 5);
    let x = |id: &str| -> f64 {
        let t = b.script(
            "return document.querySelector(`g.node[data-id='${arguments[0]}']`).getAttribute('transform')",
            json!([id]),
        );
        let t = t.as_str().unwrap();
        t.trim_start_matches("translate(")
            .split(',')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(
        x("registered") < x("fetching"),
        "a step comes after the one it follows"
    );
    assert!(x("fetching") < x("issued") && x("fetching") < x("retrying"));
    assert_eq!(
        x("issued"),
        x("retrying"),
        "both follow fetching: one layer"
    );
    assert_eq!(x("closed"), x("fetching"));
    let waiting = b.wait_for("svg#process-map g.node.waiting");
    assert!(b.text(&waiting).unwrap().contains("2 waiting"));
    assert_eq!(b.find_all("svg#process-map g.node.waiting").len(), 1);
    let back = b.wait_for("svg#process-map g.edge[data-from=retrying][data-to=fetching]");
    assert!(b.text(&back).unwrap().contains("3× · p50 4.0 s"));
    let first = b.wait_for("svg#process-map g.edge[data-from=registered][data-to=fetching]");
    assert!(b.text(&first).unwrap().contains("10× · p50 12 ms"));
    b.screenshot("2-drawn");
}
