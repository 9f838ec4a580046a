//! How the CLI shows API replies: aligned tables and `key  value` fields for people
//! (`--output text`, the default), the raw JSON body for scripts (`--output json`), and
//! problem documents as one-line errors. Plain text only: no colours, no escape codes.
//! Long because every view of every command is here, one arm each.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;

/// The `--output` format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Tables and fields for people.
    #[default]
    #[value(alias = "table")]
    Text,
    /// The API's JSON, unchanged, for scripts.
    Json,
}

/// What a reply is, so its text form can be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View<'a> {
    Deployed,
    /// An actor's reply to a call (or `202` and the request to poll).
    CallReply,
    Event,
    Actor,
    DeadLetters,
    Request,
    Modules,
    Module,
    Tenants,
    Tenant,
    /// A newly issued API key.
    Key,
    /// A dead letter put back into the mailbox.
    Retried,
    /// A page of actors.
    Actors,
    /// A page of an actor's turns.
    History,
    /// One turn with its states and diff.
    Turn,
    /// A module's process map.
    Map,
    /// A page of requests.
    Requests,
    /// A module's versions with the actors on each.
    Versions,
    /// An upgrade run and its report.
    Upgrade,
    /// A module's upgrade runs.
    Upgrades,
    /// A dead letter's dry run on another version.
    Hotfix,
    /// The cluster: its nodes and how many partitions each holds.
    Cluster,
    /// An operation answered `204 No Content`: this line says what was done.
    Done(&'a str),
}

/// Columns padded to their widest cell, two spaces apart, headers in capitals.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| h.to_uppercase()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                let pad = widths.get(i).copied().unwrap_or(0);
                line.extend(std::iter::repeat_n(
                    ' ',
                    pad.saturating_sub(cell.chars().count()),
                ));
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// `name  value` lines with the values aligned; empty values are left out.
fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        let _ = writeln!(out, "{k:width$}  {v}");
    }
    out
}

/// A JSON value as a table cell: strings without quotes, `-` for null, lists joined.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "-".into(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Milliseconds since the Unix epoch as UTC, to the second.
pub fn time(ms: &Value) -> String {
    match ms.as_u64() {
        Some(ms) => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
        }
        None => cell(ms),
    }
}

fn size(v: &Value) -> String {
    match v.as_u64() {
        Some(n) => bytesize::ByteSize(n).display().iec().to_string(),
        None => cell(v),
    }
}

/// `sha256:0123456789ab` (the first 12 hex digits are plenty to tell versions apart).
fn short_digest(v: &Value) -> String {
    let d = cell(v);
    match d.strip_prefix("sha256:") {
        Some(hex) if hex.len() > 12 => format!("sha256:{}", &hex[..12]),
        _ => d,
    }
}

fn items(v: &Value) -> impl Iterator<Item = &Value> {
    v["items"].as_array().into_iter().flatten()
}

/// The line that says how to get the next page, if there is one.
fn next(v: &Value) -> String {
    match v["next_cursor"].as_str() {
        Some(c) => format!("next: --cursor {c}\n"),
        None => String::new(),
    }
}

/// `call register`, `timer retry`…
fn message(m: &Value) -> String {
    match m["label"].as_str() {
        Some(l) => format!("{} {l}", cell(&m["kind"])),
        None => cell(&m["kind"]),
    }
}

fn outcome(o: &Value) -> String {
    match o["reason"].as_str() {
        Some(r) => format!("{}: {r}", cell(&o["status"])),
        None => cell(&o["status"]),
    }
}

/// `reply,set_timer:retry,http_call:pass-1`…
fn effects(e: &Value) -> String {
    let list: Vec<String> = e
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| {
            let kind = cell(&x["kind"]);
            match x["name"].as_str().or(x["call_id"].as_str()) {
                Some(n) => format!("{kind}:{n}"),
                None => kind,
            }
        })
        .collect();
    if list.is_empty() {
        "-".into()
    } else {
        list.join(",")
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// The text form of a successful reply.
pub fn text(view: View<'_>, status: u16, v: &Value) -> String {
    match view {
        View::Done(what) => format!("{what}\n"),
        View::Deployed => fields(&[
            ("module", cell(&v["name"])),
            (
                "version",
                if v["created"] == Value::Bool(false) {
                    format!("{} (unchanged)", cell(&v["version"]))
                } else {
                    cell(&v["version"])
                },
            ),
            ("digest", cell(&v["digest"])),
            ("size", size(&v["size"])),
            ("deployed", time(&v["created_ms"])),
        ]),
        View::CallReply if status == 202 => pending(v),
        View::CallReply => format!("{}\n", pretty(v)),
        View::Event => {
            let seq = cell(&v["seq"]);
            if v["duplicate"] == Value::Bool(true) {
                format!("duplicate: already accepted as message {seq}\n")
            } else {
                format!("accepted as message {seq}\n")
            }
        }
        View::Retried if v["request_id"].is_string() => pending(v),
        View::Retried => "retried: the event is back in the mailbox\n".into(),
        View::Actor => actor(v),
        View::DeadLetters => {
            let t = dead_letters(v);
            if t.is_empty() {
                "no dead letters\n".into()
            } else {
                t.to_string()
            }
        }
        View::Request => request(v),
        View::Actors => {
            let mut t = Table::new(&["actor", "status", "version", "step", "turns", "updated"]);
            for a in items(v) {
                t.row(vec![
                    format!("{}/{}", cell(&a["module"]), cell(&a["key"])),
                    cell(&a["status"]),
                    cell(&a["version"]),
                    cell(&a["step"]),
                    cell(&a["turns"]),
                    time(&a["updated_ms"]),
                ]);
            }
            format!("{t}{}", next(v))
        }
        View::History => {
            let mut t = Table::new(&["seq", "at", "message", "outcome", "step", "effects", "µs"]);
            for h in items(v) {
                t.row(vec![
                    cell(&h["seq"]),
                    time(&h["at_ms"]),
                    message(&h["message"]),
                    outcome(&h["outcome"]),
                    cell(&h["step"]),
                    effects(&h["effects"]),
                    cell(&h["duration_us"]),
                ]);
            }
            format!("{t}{}", next(v))
        }
        View::Turn => {
            let mut out = fields(&[
                ("seq", cell(&v["seq"])),
                ("at", time(&v["at_ms"])),
                ("message", message(&v["message"])),
                ("body", v["message"]["body"].to_string()),
                ("outcome", outcome(&v["outcome"])),
                ("step", cell(&v["step"])),
                ("effects", effects(&v["effects"])),
                ("took", format!("{} µs", cell(&v["duration_us"]))),
            ]);
            let state = |s: &Value, known: &Value| {
                if known == &Value::Bool(true) {
                    pretty(s)
                } else {
                    "(not kept)".into()
                }
            };
            let _ = writeln!(
                out,
                "state after:\n{}",
                state(&v["state"], &v["state_known"])
            );
            match v["diff"].as_array() {
                Some(ops) if ops.is_empty() => out.push_str("diff: (none)\n"),
                Some(ops) => {
                    out.push_str("diff:\n");
                    for op in ops {
                        let _ = match cell(&op["op"]).as_str() {
                            "add" => writeln!(out, "  + {} = {}", cell(&op["path"]), op["value"]),
                            "remove" => {
                                writeln!(out, "  - {} (was {})", cell(&op["path"]), op["old"])
                            }
                            _ => writeln!(
                                out,
                                "  ~ {} = {} (was {})",
                                cell(&op["path"]),
                                op["value"],
                                op["old"]
                            ),
                        };
                    }
                }
                None => out.push_str("diff: (the state before is not kept)\n"),
            }
            out
        }
        View::Map => {
            let mut nodes = Table::new(&["step", "entered", "waiting now"]);
            for n in v["nodes"].as_array().into_iter().flatten() {
                nodes.row(vec![
                    cell(&n["label"]),
                    cell(&n["count"]),
                    cell(&n["waiting"]),
                ]);
            }
            let mut edges = Table::new(&["from", "to", "count", "p50", "p95"]);
            for e in v["edges"].as_array().into_iter().flatten() {
                edges.row(vec![
                    cell(&e["from"]),
                    cell(&e["to"]),
                    cell(&e["count"]),
                    format!("{} ms", cell(&e["p50_ms"])),
                    format!("{} ms", cell(&e["p95_ms"])),
                ]);
            }
            let more = if v["truncated"] == Value::Bool(true) {
                " (more exist; the map reads the first 5000)"
            } else {
                ""
            };
            format!(
                "module {}: {} actors{more}\n{nodes}\n{edges}",
                cell(&v["module"]),
                cell(&v["actors"])
            )
        }
        View::Requests => {
            let mut t = Table::new(&["request", "actor", "status", "created", "settled"]);
            for r in items(v) {
                t.row(vec![
                    cell(&r["request_id"]),
                    format!(
                        "{}/{}",
                        cell(&r["actor"]["module"]),
                        cell(&r["actor"]["key"])
                    ),
                    cell(&r["status"]),
                    time(&r["created_ms"]),
                    time(&r["settled_ms"]),
                ]);
            }
            format!("{t}{}", next(v))
        }
        View::Modules => {
            let mut t = Table::new(&["name", "version", "versions", "digest", "size", "deployed"]);
            for m in v["modules"].as_array().into_iter().flatten() {
                t.row(vec![
                    cell(&m["name"]),
                    cell(&m["version"]),
                    cell(&m["versions"]),
                    short_digest(&m["digest"]),
                    size(&m["size"]),
                    time(&m["created_ms"]),
                ]);
            }
            t.to_string()
        }
        View::Versions => {
            let mut t = Table::new(&["version", "actors", "digest", "deployed"]);
            for m in v["versions"].as_array().into_iter().flatten() {
                t.row(vec![
                    cell(&m["version"]),
                    cell(&m["actors"]),
                    cell(&m["digest"]),
                    time(&m["created_ms"]),
                ]);
            }
            format!("module {}\n{t}", cell(&v["name"]))
        }
        View::Upgrade => upgrade_run(v),
        View::Upgrades => {
            let mut t = Table::new(&[
                "id", "status", "from", "to", "mode", "selected", "moved", "problems", "created",
            ]);
            for r in items(v) {
                t.row(vec![
                    cell(&r["id"]),
                    cell(&r["status"]),
                    cell(&r["plan"]["from"]),
                    cell(&r["plan"]["to"]),
                    cell(&r["plan"]["mode"]),
                    cell(&r["report"]["selected"]),
                    cell(&r["report"]["moved"]),
                    cell(&r["report"]["problems"]),
                    time(&r["created_ms"]),
                ]);
            }
            t.to_string()
        }
        View::Hotfix => {
            let mut out = fields(&[
                ("version", cell(&v["version"])),
                ("migrate", cell(&v["migrate"])),
                ("outcome", cell(&v["outcome"])),
            ]);
            out.push_str(&format!("state:\n{}\n", pretty(&v["state"])));
            for e in v["effects"].as_array().into_iter().flatten() {
                out.push_str(&format!("effect: {e}\n"));
            }
            out.push_str("dry run: nothing was performed\n");
            out
        }
        View::Module => {
            let mut t = Table::new(&["version", "digest", "size", "deployed"]);
            for m in v["versions"].as_array().into_iter().flatten() {
                t.row(vec![
                    cell(&m["version"]),
                    cell(&m["digest"]),
                    size(&m["size"]),
                    time(&m["created_ms"]),
                ]);
            }
            format!("module {}\n{t}", cell(&v["name"]))
        }
        View::Tenants => {
            let mut t = Table::new(&[
                "name",
                "actors",
                "keys",
                "allow_http",
                "overrides",
                "created",
            ]);
            for x in v["tenants"].as_array().into_iter().flatten() {
                let keys = x["keys"].as_array().map_or(0, Vec::len);
                t.row(vec![
                    cell(&x["name"]),
                    cell(&x["actors"]),
                    keys.to_string(),
                    cell(&x["allow_http"]),
                    overrides(&x["overrides"]),
                    time(&x["created_ms"]),
                ]);
            }
            t.to_string()
        }
        View::Cluster => {
            let mut out = fields(&[
                ("mode", cell(&v["mode"])),
                ("node", cell(&v["node"])),
                ("partitions", cell(&v["partitions"])),
                ("held here", cell(&v["held"])),
                ("serving", cell(&v["serving"])),
                ("fenced commits", cell(&v["fenced_commits"])),
            ]);
            let mut t = Table::new(&["node", "advertise", "live", "lease_left_ms", "partitions"]);
            let owners = v["owners"].as_array().cloned().unwrap_or_default();
            for n in v["nodes"].as_array().into_iter().flatten() {
                let held = owners.iter().filter(|o| o["node"] == n["node"]).count();
                t.row(vec![
                    cell(&n["node"]),
                    cell(&n["advertise"]),
                    cell(&n["live"]),
                    cell(&n["lease_left_ms"]),
                    held.to_string(),
                ]);
            }
            if !owners.is_empty() {
                out.push('\n');
                out.push_str(&t.to_string());
            }
            out
        }
        View::Tenant => tenant(v),
        View::Key => fields(&[
            ("id", cell(&v["id"])),
            ("key", cell(&v["key"])),
            ("", "(shown once: keep it now)".into()),
        ]),
    }
}

fn pending(v: &Value) -> String {
    let id = cell(&v["request_id"]);
    format!(
        "request {id} is {}; follow it with: dwell request {id} --wait 30s\n",
        cell(&v["status"])
    )
}

/// Quota overrides as `key=value`, the ones that are set.
fn overrides(v: &Value) -> String {
    let set: Vec<String> = v
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, x)| !x.is_null())
        .map(|(k, x)| format!("{k}={}", cell(x)))
        .collect();
    if set.is_empty() {
        "-".into()
    } else {
        set.join(",")
    }
}

/// An upgrade run: what it is, what the dry run found, what it did, and the actors.
fn upgrade_run(v: &Value) -> String {
    let r = &v["report"];
    let plan = &v["plan"];
    let mut out = fields(&[
        ("run", cell(&v["id"])),
        ("module", cell(&v["module"])),
        (
            "versions",
            format!("{} -> {}", cell(&plan["from"]), cell(&plan["to"])),
        ),
        ("mode", cell(&plan["mode"])),
        ("status", cell(&v["status"])),
        ("reason", cell(&v["reason"])),
        ("selected", cell(&r["selected"])),
        (
            "replayed",
            format!(
                "{} turns ({} not replayable)",
                cell(&r["replayed_turns"]),
                cell(&r["not_replayed_turns"])
            ),
        ),
        (
            "problems",
            format!(
                "{} (migrate failed {}, would trap {}, would refuse {})",
                cell(&r["problems"]),
                cell(&r["migrate_failed"]),
                cell(&r["would_trap"]),
                cell(&r["would_refuse"])
            ),
        ),
        (
            "differs",
            format!(
                "state {}, effects {}",
                cell(&r["state_differs"]),
                cell(&r["effects_differ"])
            ),
        ),
        (
            "moved",
            format!(
                "{} (skipped {}, rolled back {}, kept {})",
                cell(&r["moved"]),
                cell(&r["skipped"]),
                cell(&r["rolled_back"]),
                cell(&r["kept"])
            ),
        ),
    ]);
    if let Some(c) = r["canary"].as_object() {
        out.push_str(&format!(
            "canary: {} moved, {} of {} watched turns failed; {}\n",
            cell(&c["moved"]),
            cell(&c["failed_turns"]),
            cell(&c["watched_turns"]),
            cell(&c["verdict"])
        ));
    }
    let mut t = Table::new(&["actor", "migrate", "turns", "problem"]);
    for a in r["actors"].as_array().into_iter().flatten() {
        t.row(vec![
            cell(&a["key"]),
            cell(&a["migrate"]),
            a["turns"].as_array().map_or(0, Vec::len).to_string(),
            cell(&a["problem"]),
        ]);
    }
    format!("{out}{t}")
}

fn dead_letters(v: &Value) -> Table {
    let mut t = Table::new(&["seq", "attempts", "at", "error", "body"]);
    for d in v["dead_letters"].as_array().into_iter().flatten() {
        t.row(vec![
            cell(&d["seq"]),
            cell(&d["attempts"]),
            time(&d["at_ms"]),
            cell(&d["error"]),
            d["body"].to_string(),
        ]);
    }
    t
}

fn actor(v: &Value) -> String {
    let mut out = fields(&[
        (
            "actor",
            format!("{}/{}", cell(&v["module"]), cell(&v["key"])),
        ),
        ("status", cell(&v["status"])),
        ("version", cell(&v["version"])),
        ("digest", cell(&v["digest"])),
        ("turns", cell(&v["turns"])),
        ("mailbox", cell(&v["mailbox_depth"])),
        ("dead letters", cell(&v["dead_letter_count"])),
        ("created", time(&v["created_ms"])),
        ("updated", time(&v["updated_ms"])),
    ]);
    let _ = writeln!(out, "state\n{}", pretty(&v["state"]));
    let mut timers = Table::new(&["timer", "due"]);
    for t in v["timers"].as_array().into_iter().flatten() {
        timers.row(vec![cell(&t["name"]), time(&t["due_ms"])]);
    }
    if !timers.is_empty() {
        let _ = write!(out, "\n{timers}");
    }
    let mut calls = Table::new(&[
        "call",
        "method",
        "url",
        "attempts",
        "next attempt",
        "last error",
    ]);
    for c in v["outbound_calls"].as_array().into_iter().flatten() {
        calls.row(vec![
            cell(&c["call_id"]),
            cell(&c["method"]),
            cell(&c["url"]),
            cell(&c["attempts"]),
            time(&c["next_attempt_ms"]),
            cell(&c["last_error"]),
        ]);
    }
    if !calls.is_empty() {
        let _ = write!(out, "\n{calls}");
    }
    let dead = dead_letters(v);
    if !dead.is_empty() {
        let _ = write!(out, "\n{dead}");
    }
    out
}

fn request(v: &Value) -> String {
    let actor = match (&v["actor"]["module"], &v["actor"]["key"]) {
        (Value::String(m), Value::String(k)) => format!("{m}/{k}"),
        _ => "-".into(),
    };
    let cb = &v["callback"];
    let mut out = fields(&[
        ("request", cell(&v["request_id"])),
        ("actor", actor),
        ("status", cell(&v["status"])),
        ("created", time(&v["created_ms"])),
        (
            "settled",
            if v["settled_ms"].is_null() {
                String::new()
            } else {
                time(&v["settled_ms"])
            },
        ),
        (
            "error",
            v["error"].as_str().map(str::to_owned).unwrap_or_default(),
        ),
        (
            "callback",
            if cb.is_null() {
                String::new()
            } else {
                format!(
                    "{} ({}, {} attempts{})",
                    cell(&cb["url"]),
                    cell(&cb["status"]),
                    cb["attempts"].as_u64().unwrap_or(0),
                    cb["error"]
                        .as_str()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                )
            },
        ),
    ]);
    if v["status"] == "completed" {
        let _ = writeln!(out, "reply\n{}", pretty(&v["reply"]));
    }
    out
}

fn tenant(v: &Value) -> String {
    let mut out = fields(&[
        ("tenant", cell(&v["name"])),
        ("created", time(&v["created_ms"])),
        ("actors", cell(&v["actors"])),
        ("keys", cell(&v["keys"])),
        ("allow http", cell(&v["allow_http"])),
        (
            "webhook secret",
            v["webhook_secret"]
                .as_str()
                .map(|s| format!("{s}  (shown once: keep it now)"))
                .unwrap_or_default(),
        ),
    ]);
    let mut t = Table::new(&["quota", "value", "source"]);
    for (k, q) in v["quotas"].as_object().into_iter().flatten() {
        let overridden = !v["overrides"][k].is_null();
        let value = match q.as_u64() {
            Some(n) if k.ends_with("_bytes") => crate::config::Size(n).to_string(),
            _ => cell(q),
        };
        t.row(vec![
            k.clone(),
            value,
            if overridden {
                "tenant"
            } else {
                "server default"
            }
            .into(),
        ]);
    }
    let _ = write!(out, "\n{t}");
    out
}

/// An error reply as one line for people: the problem's title, status and detail (or
/// the body as it came, when it is not a problem document).
pub fn problem_text(status: u16, body: &str) -> String {
    let p: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    match (p["title"].as_str(), p["detail"].as_str()) {
        (Some(title), detail) => {
            let mut line = format!("error: {title} ({status})");
            if let Some(d) = detail {
                let _ = write!(line, ": {d}");
            }
            if let Some(id) = p["request_id"].as_str() {
                let _ = write!(line, " [request {id}]");
            }
            line
        }
        _ if body.trim().is_empty() => format!("error: HTTP {status}"),
        _ => format!("error: HTTP {status}: {}", body.trim()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_columns_and_trim_lines() {
        let mut t = Table::new(&["name", "n"]);
        t.row(vec!["counter".into(), "1".into()]);
        t.row(vec!["a".into(), "12".into()]);
        assert_eq!(t.to_string(), "NAME     N\ncounter  1\na        12\n");
    }

    #[test]
    fn module_lists_show_one_row_per_module() {
        let v = json!({"modules": [{
            "name": "counter", "version": 2, "versions": 2, "size": 2048,
            "digest": "sha256:0123456789abcdef0123", "created_ms": 0,
        }]});
        let text = text(View::Modules, 200, &v);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("NAME"), "{text}");
        assert!(lines[1].starts_with("counter  2"), "{text}");
        assert!(lines[1].contains("sha256:0123456789ab "), "{text}");
        assert!(lines[1].contains("2.0 KiB"), "{text}");
        assert!(lines[1].ends_with("1970-01-01T00:00:00Z"), "{text}");
    }

    #[test]
    fn a_tenant_shows_its_quotas_and_where_they_come_from() {
        let v = json!({
            "name": "acme", "created_ms": 0, "actors": 3, "keys": ["k1"],
            "allow_http": ["a.example", "b.example"],
            "quotas": {"max_actors": 5, "burst": 0, "max_state_bytes": 4194304},
            "overrides": {"max_actors": 5, "burst": null},
            "webhook_secret": "whsec_x",
        });
        let text = text(View::Tenant, 200, &v);
        assert!(text.contains("tenant          acme\n"), "{text}");
        assert!(
            text.contains("allow http      a.example,b.example\n"),
            "{text}"
        );
        assert!(text.contains("whsec_x  (shown once"), "{text}");
        assert!(text.contains("max_actors       5      tenant\n"), "{text}");
        assert!(
            text.contains("burst            0      server default\n"),
            "{text}"
        );
        assert!(
            text.contains("max_state_bytes  4 MiB  server default\n"),
            "{text}"
        );
    }

    #[test]
    fn pending_calls_say_how_to_follow_them() {
        let v = json!({"request_id": "abc", "status": "pending"});
        assert_eq!(
            text(View::CallReply, 202, &v),
            "request abc is pending; follow it with: dwell request abc --wait 30s\n"
        );
        assert_eq!(
            text(View::CallReply, 200, &json!({"total": 1})),
            "{\n  \"total\": 1\n}\n"
        );
    }

    #[test]
    fn problems_become_one_line() {
        let body =
            r#"{"type":"x","title":"Not found","status":404,"detail":"no module named \"nope\""}"#;
        assert_eq!(
            problem_text(404, body),
            "error: Not found (404): no module named \"nope\""
        );
        assert_eq!(
            problem_text(502, "bad gateway"),
            "error: HTTP 502: bad gateway"
        );
        assert_eq!(problem_text(500, ""), "error: HTTP 500");
    }
}
