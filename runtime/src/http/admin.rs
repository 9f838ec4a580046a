//! The admin API: tenants and their API keys, quotas, allowlists and callback secrets.
//! Only the admin key is accepted here. Secrets appear in a response only when they are
//! created (a key at issue, a callback secret at tenant creation or rotation).

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use crate::domain::QuotaOverrides;
use crate::engine::{AuthError, Caller, TenantInfo};

use super::AppState;
use super::codec::read_body;
use super::handlers::{bearer, name};
use super::problem::ApiError;
use super::schemas as wire;

type Result<T> = std::result::Result<T, ApiError>;

fn admin(st: &AppState, req: &HttpRequest) -> Result<()> {
    match st.engine.authenticate(bearer(req)) {
        Ok(Caller::Admin) => Ok(()),
        Ok(Caller::Tenant(_)) => Err(ApiError::forbidden("this needs the admin key")),
        Err(AuthError::Missing) => Err(ApiError::unauthorized(
            "send the admin key: Authorization: Bearer <key>",
        )),
        Err(AuthError::Invalid) => Err(ApiError::unauthorized("the key is not valid")),
    }
}

async fn json_body<T: serde::de::DeserializeOwned>(
    st: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<T> {
    let body = read_body(req, payload, 64 << 10, st.config.body_timeout).await?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
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
