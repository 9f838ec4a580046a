//! The admin API: tenants and their API keys, quotas, allowlists and callback secrets.
//! Only the admin key is accepted here. Secrets appear in a response only when they are
//! created (a key at issue, a callback secret at tenant creation or rotation).

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::domain::QuotaOverrides;
use dwell_engine::{AuthError, Caller, TenantInfo};

use super::AppState;
use super::codec::read_body;
use super::handlers::{bearer, name};
use super::problem::ApiError;
use super::schemas as wire;

type Result<T> = std::result::Result<T, ApiError>;

/// The caller holds the admin key (else 401 or 403).
pub(super) fn admin(st: &AppState, req: &HttpRequest) -> Result<()> {
    match st.engine.authenticate(bearer(req)) {
        Ok(Caller::Admin) => Ok(()),
        Ok(Caller::Tenant(_)) => Err(ApiError::forbidden("this needs the admin key")),
        Err(AuthError::Missing) => Err(ApiError::unauthorized(
            "send the admin key: Authorization: Bearer <key>",
        )),
        Err(AuthError::Invalid) => Err(ApiError::unauthorized("the key is not valid")),
    }
}

/// The largest integer a JSON number holds exactly (RFC 7493 §2.2): the document's
/// `maximum` for the integers of admin bodies, which are refused above it.
const MAX_JSON_INTEGER: u64 = (1 << 53) - 1;

/// An admin body: one JSON object (serde would also read a struct from an array, which
/// the document does not allow), with integers as JSON Schema counts them (`5.0` is 5).
pub(super) async fn json_body<T: serde::de::DeserializeOwned>(
    st: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<T> {
    let body = read_body(req, payload, 64 << 10, st.config.body_timeout).await?;
    let invalid =
        |e: &dyn std::fmt::Display| ApiError::bad_request(format!("invalid request body: {e}"));
    let value: Value = serde_json::from_slice(&body).map_err(|e| invalid(&e))?;
    if !value.is_object() {
        return Err(invalid(&"expected a JSON object"));
    }
    serde_json::from_value(integral(value)).map_err(|e| invalid(&e))
}

/// `value` with every number that has no fraction, and fits, as an integer.
pub(super) fn integral(value: Value) -> Value {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() <= MAX_JSON_INTEGER as f64 => {
                if f < 0.0 {
                    Value::from(f as i64)
                } else {
                    Value::from(f as u64)
                }
            }
            _ => Value::Number(n),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(integral).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, integral(v))).collect())
        }
        other => other,
    }
}

/// Quota overrides within the document's `maximum` (and far from what would overflow a
/// semaphore or a duration inside the engine).
fn check_quotas(quotas: &QuotaOverrides) -> Result<()> {
    let Ok(Value::Object(fields)) = serde_json::to_value(quotas) else {
        return Ok(());
    };
    for (name, value) in fields {
        if value.as_u64().is_some_and(|v| v > MAX_JSON_INTEGER) {
            return Err(ApiError::bad_request(format!(
                "quota {name} is {value}, over the largest accepted ({MAX_JSON_INTEGER})"
            )));
        }
    }
    Ok(())
}

/// An allowlist entry as the document describes it: `host` or `host:port` (an IPv6
/// address in brackets), 1 to 253 of `A-Z a-z 0-9 . _ : - [ ]`.
fn check_host_rule(rule: &str) -> Result<()> {
    let shape = |b: u8| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b);
    if rule.is_empty() || rule.len() > 253 || !rule.bytes().all(shape) {
        return Err(ApiError::bad_request(format!(
            "allow_http entry {rule:?} is not a host or host:port (1 to 253 of \
             A-Z a-z 0-9 . _ : - [ ])"
        )));
    }
    Ok(())
}

fn tenant_json(st: &AppState, t: &TenantInfo) -> serde_json::Value {
    json!({
        "name": t.name,
        "created_ms": t.record.created_ms,
        "quotas": t.quotas,
        "overrides": t.record.quotas,
        "allow_http": t.record.allow_http,
        "keys": st.engine.key_ids(&t.id),
        "actors": st.engine.actor_count(&t.id).unwrap_or(0),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTenant {
    name: String,
}

/// Create a tenant; the answer holds its callback signing secret, shown this once.
#[utoipa::path(
    post,
    path = "/v1/tenants",
    tag = "tenants",
    security(("admin_key" = [])),
    request_body = wire::NewTenant,
    responses(
        (status = 201, description = "Created, with `webhook_secret`.", body = wire::Tenant),
        (status = 400, description = "A malformed body or an invalid name."),
        (status = 409, description = "A tenant of that name exists."),
        (status = 408, description = "The body did not arrive within the server's `body_timeout`."),
        (status = 413, description = "The body is over 64 KiB."),
    ),
)]
pub(super) async fn create_tenant(
    st: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse> {
    admin(&st, &req)?;
    let body: NewTenant = json_body(&st, &req, payload).await?;
    name("tenant name", &body.name)?;
    let (info, secret) = st.engine.create_tenant(&body.name).await?;
    let mut v = tenant_json(&st, &info);
    v["webhook_secret"] = json!(secret);
    Ok(HttpResponse::build(StatusCode::CREATED).json(v))
}

/// List the tenants.
#[utoipa::path(
    get,
    path = "/v1/tenants",
    tag = "tenants",
    security(("admin_key" = [])),
    responses((status = 200, description = "The tenants.", body = wire::TenantList)),
)]
pub(super) async fn list_tenants(
    st: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse> {
    admin(&st, &req)?;
    let tenants: Vec<_> = st
        .engine
        .tenants()
        .iter()
        .map(|t| tenant_json(&st, t))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "tenants": tenants })))
}

/// The cluster: nodes and their leases, each partition's owner and epoch (a single
/// node answers `mode: single`).
#[utoipa::path(
    get,
    path = "/v1/cluster",
    tag = "tenants",
    security(("admin_key" = [])),
    responses((status = 200, description = "The cluster as this node last saw it.", body = wire::Cluster)),
)]
pub(super) async fn cluster(st: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse> {
    admin(&st, &req)?;
    let Some(p) = st.engine.placement() else {
        return Ok(HttpResponse::Ok().json(json!({
            "mode": "single", "node": "", "partitions": 1, "held": 1, "serving": true,
            "fenced_commits": 0, "nodes": [], "owners": [],
        })));
    };
    let now = p.snapshot();
    let view = p.view();
    Ok(HttpResponse::Ok().json(json!({
        "mode": "cluster",
        "node": p.node(),
        "partitions": p.partitions(),
        "held": now.held.len(),
        "serving": now.serving,
        "fenced_commits": p.fenced(),
        "nodes": view.nodes,
        "owners": view.owners,
    })))
}

fn known(st: &AppState, tenant: &str) -> Result<Arc<TenantInfo>> {
    name("tenant name", tenant)?;
    Ok(st.engine.tenant(tenant)?)
}

/// A tenant: quotas, allowlist, key ids, actor count.
#[utoipa::path(
    get,
    path = "/v1/tenants/{name}",
    tag = "tenants",
    security(("admin_key" = [])),
    params(wire::TenantName),
    responses(
        (status = 200, description = "The tenant.", body = wire::Tenant),
        (status = 400, description = "Not a valid tenant name."),
        (status = 404, description = "No tenant of that name."),
    ),
)]
pub(super) async fn get_tenant(
    st: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    admin(&st, &req)?;
    let t = known(&st, &path)?;
    Ok(HttpResponse::Ok().json(tenant_json(&st, &t)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantPatch {
    quotas: Option<QuotaOverrides>,
    allow_http: Option<Vec<String>>,
    #[serde(default)]
    rotate_webhook_secret: bool,
}

/// Change a tenant's quotas or allowlist, or rotate its callback signing secret.
#[utoipa::path(
    patch,
    path = "/v1/tenants/{name}",
    tag = "tenants",
    security(("admin_key" = [])),
    params(wire::TenantName),
    request_body = wire::TenantPatch,
    responses(
        (status = 200, description = "The tenant as changed; with `webhook_secret` when rotated.", body = wire::Tenant),
        (status = 400, description = "A malformed body, an invalid name or allowlist entry."),
        (status = 404, description = "No tenant of that name."),
        (status = 408, description = "The body did not arrive within the server's `body_timeout`."),
        (status = 413, description = "The body is over 64 KiB."),
    ),
)]
pub(super) async fn update_tenant(
    st: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    admin(&st, &req)?;
    known(&st, &path)?;
    let patch: TenantPatch = json_body(&st, &req, payload).await?;
    if let Some(q) = &patch.quotas {
        check_quotas(q)?;
    }
    for rule in patch.allow_http.iter().flatten() {
        check_host_rule(rule)?;
    }
    let (info, secret) = st
        .engine
        .update_tenant(
            &path,
            patch.quotas,
            patch.allow_http,
            patch.rotate_webhook_secret,
        )
        .await?;
    let mut v = tenant_json(&st, &info);
    if let Some(s) = secret {
        v["webhook_secret"] = json!(s);
    }
    Ok(HttpResponse::Ok().json(v))
}

/// Delete a tenant with its keys and modules; its keys stop working at once.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{name}",
    tag = "tenants",
    security(("admin_key" = [])),
    params(wire::TenantName),
    responses(
        (status = 204, description = "Deleted."),
        (status = 400, description = "Not a valid tenant name."),
        (status = 404, description = "No tenant of that name."),
    ),
)]
pub(super) async fn delete_tenant(
    st: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    admin(&st, &req)?;
    known(&st, &path)?;
    st.engine.delete_tenant(&path).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Issue an API key for a tenant; the key is shown this once and stored as its SHA-256.
#[utoipa::path(
    post,
    path = "/v1/tenants/{name}/keys",
    tag = "tenants",
    security(("admin_key" = [])),
    params(wire::TenantName),
    responses(
        (status = 201, description = "Issued.", body = wire::IssuedKey),
        (status = 400, description = "Not a valid tenant name."),
        (status = 404, description = "No tenant of that name."),
    ),
)]
pub(super) async fn issue_key(
    st: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    admin(&st, &req)?;
    known(&st, &path)?;
    let (id, key) = st.engine.issue_key(&path).await?;
    Ok(HttpResponse::build(StatusCode::CREATED).json(json!({ "id": id, "key": key })))
}

/// Revoke an API key; effective at once.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{name}/keys/{id}",
    tag = "tenants",
    security(("admin_key" = [])),
    params(wire::KeyPath),
    responses(
        (status = 204, description = "Revoked."),
        (status = 400, description = "Not a valid tenant name."),
        (status = 404, description = "No tenant of that name, or it has no such key."),
    ),
)]
pub(super) async fn revoke_key(
    st: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    admin(&st, &req)?;
    let (tenant, id) = path.into_inner();
    known(&st, &tenant)?;
    if !st.engine.revoke_key(&tenant, &id).await? {
        return Err(ApiError::not_found(format!(
            "tenant {tenant:?} has no key {id:?}"
        )));
    }
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_without_a_fraction_are_integers() {
        let v = integral(json!({"a": 5.0, "b": [1.5, -2.0, 7], "c": {"d": 1e300}}));
        assert_eq!(v["a"].as_u64(), Some(5));
        assert_eq!(v["b"][0].as_f64(), Some(1.5));
        assert_eq!(v["b"][1].as_i64(), Some(-2));
        assert_eq!(v["b"][2].as_u64(), Some(7));
        // Past 2^53 a float is not an exact integer: left as it is, refused by serde.
        assert!(v["c"]["d"].is_f64());
    }

    #[test]
    fn quotas_over_2_pow_53_are_refused() {
        let ok = QuotaOverrides {
            concurrent_turns: Some(MAX_JSON_INTEGER),
            ..Default::default()
        };
        assert!(check_quotas(&ok).is_ok());
        let huge = QuotaOverrides {
            max_actors: Some(MAX_JSON_INTEGER + 1),
            ..Default::default()
        };
        let e = check_quotas(&huge).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.detail.contains("max_actors"), "{}", e.detail);
    }

    #[test]
    fn allowlist_entries_are_hosts_with_an_optional_port() {
        for ok in [
            "api.example.com",
            "api.example.com:8443",
            "[::1]:9000",
            "10.0.0.1",
        ] {
            assert!(check_host_rule(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(254);
        for bad in ["", "a b", "example.com/x", "exämple.com", long.as_str()] {
            assert!(check_host_rule(bad).is_err(), "{bad}");
        }
    }
}
