//! The visibility endpoints: lists of actors and requests, an actor's turn history with
//! the state as of a turn and its diff, and a module's process map. Every list answers
//! `{"items": [...], "next_cursor": <string or null>}` and takes `?limit=&cursor=`;
//! cursors are opaque. Everything is scoped to the caller's tenant (another tenant's
//! actors, requests and modules are simply not found).

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::domain::history::{EffectNote, Outcome, StateMark, TurnRecord};
use crate::domain::records::ActorMeta;
use crate::domain::{ActorId, ActorStatus, RequestId};
use dwell_engine::visibility::{ActorFilter, Known};

use super::AppState;
use super::codec;
use super::handlers::{actor_from, name, request_json, tenant};
use super::problem::ApiError;
use super::schemas as wire;

type Result<T> = std::result::Result<T, ApiError>;

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;
/// 2^53 − 1: the largest integer a JSON number holds exactly (and the documented bound).
const MAX_JSON_INTEGER: u64 = (1 << 53) - 1;

/// The query parameters, refusing any not in `known` (a typo should not silently list
/// everything).
fn query(req: &HttpRequest, known: &[&str]) -> Result<HashMap<String, String>> {
    let q = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map_err(|e| ApiError::bad_request(format!("malformed query string: {e}")))?
        .into_inner();
    if let Some(k) = q.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!(
            "unknown query parameter {k:?} (known: {})",
            known.join(", ")
        )));
    }
    Ok(q)
}

fn limit(q: &HashMap<String, String>) -> Result<usize> {
    match q.get("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(format!(
                "limit must be a whole number from 1 to {MAX_LIMIT}, not {v:?}"
            ))),
        },
    }
}

fn bad_cursor(c: &str) -> ApiError {
    ApiError::bad_request(format!(
        "cursor {c:?} is not one this list answered; start again without it"
    ))
}

fn page(items: Vec<Value>, next: Option<String>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "items": items, "next_cursor": next }))
}

fn status_name(s: ActorStatus) -> &'static str {
    match s {
        ActorStatus::Active => "active",
        ActorStatus::Completed => "completed",
    }
}

fn actor_json(actor: &ActorId, m: &ActorMeta) -> Value {
    json!({
        "module": actor.module,
        "key": actor.key,
        "status": status_name(m.status),
        "version": m.version,
        "step": m.step,
        "turns": m.turns,
        "timers": m.timers,
        "dead_letter_count": m.dead_letters,
        "created_ms": m.created_ms,
        "updated_ms": m.updated_ms,
    })
}

/// The tenant's actors, in key order, filtered.
#[utoipa::path(
    get,
    path = "/v1/actors",
    tag = "visibility",
    security(("tenant_key" = [])),
    params(wire::ActorQuery, wire::PageQuery),
    responses(
        (status = 200, description = "A page of actors.", body = wire::ActorList),
        (status = 400, description = "A malformed filter, limit or cursor."),
    ),
)]
pub(super) async fn list_actors(st: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse> {
    let tenant = tenant(&st, &req)?;
    let q = query(
        &req,
        &[
            "module",
            "status",
            "version",
            "step",
            "updated_after",
            "limit",
            "cursor",
        ],
    )?;
    let limit = limit(&q)?;
    if let Some(m) = q.get("module") {
        name("module name", m)?;
    }
    let filter = ActorFilter {
        module: q.get("module").cloned(),
        status: match q.get("status").map(String::as_str) {
            None => None,
            Some("active") => Some(ActorStatus::Active),
            Some("completed") => Some(ActorStatus::Completed),
            Some(s) => {
                return Err(ApiError::bad_request(format!(
                    "status must be active or completed, not {s:?}"
                )));
            }
        },
        version: number(&q, "version")?
            .map(|v| u32::try_from(v).map_err(|_| ApiError::bad_request("version is too large")))
            .transpose()?,
        step: q.get("step").cloned(),
        updated_after: match number(&q, "updated_after")? {
            Some(t) if t > MAX_JSON_INTEGER => {
                return Err(ApiError::bad_request(format!(
                    "updated_after must be at most {MAX_JSON_INTEGER}"
                )));
            }
            t => t,
        },
    };
    // The cursor is the last actor's `module/key`: any string is a position in the
    // list (the next page starts after it), an empty one its start.
    let cursor = q.get("cursor").filter(|c| !c.is_empty());
    let page_ = st
        .engine
        .list_actors(&tenant, &filter, limit, cursor.map(String::as_str))?;
    let items = page_.items.iter().map(|(a, m)| actor_json(a, m)).collect();
    Ok(page(items, page_.next))
}

fn number(q: &HashMap<String, String>, key: &str) -> Result<Option<u64>> {
    q.get(key)
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("{key} must be a whole number, not {v:?}"))
            })
        })
        .transpose()
}

/// The tenant's requests, in id order, filtered by status.
#[utoipa::path(
    get,
    path = "/v1/requests",
    tag = "visibility",
    security(("tenant_key" = [])),
    params(wire::RequestQuery, wire::PageQuery),
    responses(
        (status = 200, description = "A page of requests.", body = wire::RequestList),
        (status = 400, description = "A malformed status, limit or cursor."),
    ),
)]
pub(super) async fn list_requests(
    st: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse> {
    let tenant = tenant(&st, &req)?;
    let q = query(&req, &["status", "limit", "cursor"])?;
    let limit = limit(&q)?;
    let status = q.get("status").map(String::as_str);
    if let Some(s) = status
        && !matches!(s, "pending" | "completed" | "failed")
    {
        return Err(ApiError::bad_request(format!(
            "status must be pending, completed or failed, not {s:?}"
        )));
    }
    let cursor = match q.get("cursor") {
        None => None,
        Some(c) => Some(RequestId::parse(c).ok_or_else(|| bad_cursor(c))?),
    };
    let page_ = st.engine.list_requests(&tenant, status, limit, cursor)?;
    let items = page_
        .items
        .iter()
        .map(|(id, rec)| request_json(*id, rec))
        .collect();
    Ok(page(items, page_.next.map(|id| id.to_string())))
}

pub(super) fn effect_json(e: &EffectNote) -> Value {
    match e {
        EffectNote::Reply { to, ok } => json!({"kind": "reply", "to": to, "ok": ok}),
        EffectNote::Send { to } => json!({"kind": "send", "to": to}),
        EffectNote::Ask { to, correlation } => {
            json!({"kind": "ask", "to": to, "correlation": correlation})
        }
        EffectNote::SetTimer { name, due_ms } => {
            json!({"kind": "set_timer", "name": name, "due_ms": due_ms})
        }
        EffectNote::CancelTimer { name } => json!({"kind": "cancel_timer", "name": name}),
        EffectNote::HttpCall {
            call_id,
            method,
            url,
        } => json!({"kind": "http_call", "call_id": call_id, "method": method, "url": url}),
        EffectNote::Complete => json!({"kind": "complete"}),
    }
}

fn turn_json(seq: u64, r: &TurnRecord) -> Value {
    let m = &r.message;
    let outcome = match &r.outcome {
        Outcome::Ok => json!({"status": "ok", "reason": null}),
        Outcome::Refused { reason } => json!({"status": "refused", "reason": reason}),
        Outcome::DeadLetter { reason, attempts } => {
            json!({"status": "dead_letter", "reason": reason, "attempts": attempts})
        }
    };
    json!({
        "seq": seq,
        "at_ms": r.at_ms,
        "duration_us": r.took_us,
        "message": {
            "kind": m.kind,
            "label": m.label,
            "body": m.complete().then(|| codec::to_json_lossless(&m.body)),
            "body_bytes": m.body_len,
            "body_truncated": !m.complete(),
            "from": m.from,
        },
        "step": r.step,
        "effects": r.effects.iter().map(effect_json).collect::<Vec<_>>(),
        "outcome": outcome,
        "state_bytes": r.state_bytes,
        "state_changed": r.state != StateMark::Unchanged,
        "trace_id": r.trace.map(|t| format!("{:032x}", t.trace_id)),
        "span_id": r.trace.map(|t| format!("{:016x}", t.span_id)),
    })
}

/// An actor's turn history, newest first.
#[utoipa::path(
    get,
    path = "/v1/actors/{module}/{key}/history",
    tag = "visibility",
    security(("tenant_key" = [])),
    params(wire::ActorPath, wire::PageQuery, wire::HistoryQuery),
    responses(
        (status = 200, description = "A page of turns, newest first.", body = wire::HistoryPage),
        (status = 400, description = "A malformed name, limit or cursor."),
        (status = 404, description = "No such actor."),
    ),
)]
pub(super) async fn actor_history(
    st: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    let actor = actor_from(&st, &req, path.into_inner())?;
    let q = query(&req, &["limit", "cursor"])?;
    let limit = limit(&q)?;
    let cursor = match q.get("cursor") {
        None => None,
        Some(c) if c.len() <= 15 && c.bytes().all(|b| b.is_ascii_digit()) => {
            Some(c.parse::<u64>().map_err(|_| bad_cursor(c))?)
        }
        Some(c) => return Err(bad_cursor(c)),
    };
    let page_ = st
        .engine
        .history(&actor, limit, cursor)?
        .ok_or_else(|| ApiError::not_found(format!("no actor {actor}")))?;
    let items = page_.items.iter().map(|(s, r)| turn_json(*s, r)).collect();
    Ok(page(items, page_.next.map(|s| s.to_string())))
}

fn known_json(k: &Known) -> (Value, bool) {
    match k {
        Known::State(s) => (
            s.as_deref().map_or(Value::Null, codec::to_json_lossless),
            true,
        ),
        Known::Unknown => (Value::Null, false),
    }
}

/// One turn of an actor with the state as of it, the state before it and their diff.
#[utoipa::path(
    get,
    path = "/v1/actors/{module}/{key}/history/{seq}",
    tag = "visibility",
    security(("tenant_key" = [])),
    params(wire::TurnPath),
    responses(
        (status = 200, description = "The turn.", body = wire::TurnDetail),
        (status = 400, description = "Not a valid module name or actor key."),
        (status = 404, description = "No such actor, or no record of that turn."),
    ),
)]
pub(super) async fn history_entry(
    st: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String, u64)>,
) -> Result<HttpResponse> {
    let (module, key, seq) = path.into_inner();
    let actor = actor_from(&st, &req, (module, key))?;
    let entry = st
        .engine
        .history_entry(&actor, seq)?
        .ok_or_else(|| ApiError::not_found(format!("actor {actor} has no record of turn {seq}")))?;
    let mut v = turn_json(entry.seq, &entry.record);
    let (state, state_known) = known_json(&entry.state);
    let (previous, previous_known) = known_json(&entry.previous);
    v["diff"] = if state_known && previous_known {
        let mut ops = Vec::new();
        diff(&previous, &state, "", &mut ops);
        Value::Array(ops)
    } else {
        Value::Null
    };
    v["state"] = state;
    v["state_known"] = json!(state_known);
    v["previous_state"] = previous;
    v["previous_known"] = json!(previous_known);
    Ok(HttpResponse::Ok().json(v))
}

/// A JSON Pointer token (RFC 6901).
fn token(k: &str) -> String {
    k.replace('~', "~0").replace('/', "~1")
}

/// What changes `from` into `to`, as JSON-Patch-like operations with the old values.
fn diff(from: &Value, to: &Value, path: &str, out: &mut Vec<Value>) {
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, old) in a {
                let p = format!("{path}/{}", token(k));
                match b.get(k) {
                    Some(new) => diff(old, new, &p, out),
                    None => out.push(json!({"op": "remove", "path": p, "old": old})),
                }
            }
            for (k, new) in b {
                if !a.contains_key(k) {
                    let p = format!("{path}/{}", token(k));
                    out.push(json!({"op": "add", "path": p, "value": new}));
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (old, new)) in a.iter().zip(b).enumerate() {
                diff(old, new, &format!("{path}/{i}"), out);
            }
            for (i, old) in a.iter().enumerate().skip(b.len()).rev() {
                out.push(json!({"op": "remove", "path": format!("{path}/{i}"), "old": old}));
            }
            for (i, new) in b.iter().enumerate().skip(a.len()) {
                out.push(json!({"op": "add", "path": format!("{path}/{i}"), "value": new}));
            }
        }
        (a, b) if a == b => {}
        (a, b) => out.push(json!({"op": "replace", "path": path, "value": b, "old": a})),
    }
}

/// The process map of a module: a directly-follows graph of the steps its actors went
/// through, mined from their history, with how many wait at each step now.
#[utoipa::path(
    get,
    path = "/v1/modules/{name}/map",
    tag = "visibility",
    security(("tenant_key" = [])),
    params(wire::ModuleName),
    responses(
        (status = 200, description = "The process map.", body = wire::ProcessMapView),
        (status = 400, description = "Not a valid module name."),
        (status = 404, description = "No module of that name."),
    ),
)]
pub(super) async fn process_map(
    st: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let tenant = tenant(&st, &req)?;
    let module = path.into_inner();
    name("module name", &module)?;
    // Mining reads many actors' history: off the HTTP worker.
    let engine = st.engine.clone();
    let (t, m) = (tenant.clone(), module.clone());
    let map = web::block(move || engine.process_map(&t, &m))
        .await
        .map_err(|e| ApiError::internal(format!("process map: {e}")))??
        .ok_or_else(|| ApiError::not_found(format!("no module named {module:?}")))?;
    let mut v = serde_json::to_value(&map).unwrap_or_default();
    v["module"] = json!(module);
    Ok(HttpResponse::Ok().json(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diff_names_what_was_added_removed_and_replaced() {
        let a = json!({"status": "new", "n": 1, "list": [1, 2, 3], "a/b": {"x": 1}});
        let b = json!({"status": "paid", "list": [1, 5], "a/b": {"x": 1, "y": 2}, "m": null});
        let mut ops = Vec::new();
        diff(&a, &b, "", &mut ops);
        let has = |op: Value| assert!(ops.contains(&op), "{op} not in {ops:?}");
        has(json!({"op": "replace", "path": "/status", "value": "paid", "old": "new"}));
        has(json!({"op": "remove", "path": "/n", "old": 1}));
        has(json!({"op": "replace", "path": "/list/1", "value": 5, "old": 2}));
        has(json!({"op": "remove", "path": "/list/2", "old": 3}));
        has(json!({"op": "add", "path": "/a~1b/y", "value": 2}));
        has(json!({"op": "add", "path": "/m", "value": null}));
        assert_eq!(ops.len(), 6, "{ops:?}");
        let mut none = Vec::new();
        diff(&a, &a, "", &mut none);
        assert!(none.is_empty());
        let mut whole = Vec::new();
        diff(&Value::Null, &json!({"n": 1}), "", &mut whole);
        assert_eq!(
            whole,
            [json!({"op": "replace", "path": "", "value": {"n": 1}, "old": null})]
        );
    }
}
