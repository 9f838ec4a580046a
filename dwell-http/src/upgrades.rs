//! The live-upgrade endpoints: start a run of a module (dry run, apply, canary), see its
//! runs and their reports, roll one back. Everything is scoped to the caller's tenant:
//! another tenant's module, runs and rollbacks are not found.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use dwell_engine::UpgradeError;
use dwell_engine::domain::upgrade::UpgradePlan;

use super::AppState;
use super::admin::{integral, json_body};
use super::handlers::{name, tenant};
use super::problem::ApiError;
use super::schemas as wire;

type Result<T> = std::result::Result<T, ApiError>;

impl From<UpgradeError> for ApiError {
    fn from(e: UpgradeError) -> Self {
        match e {
            UpgradeError::UnknownModule(_) => ApiError::not_found(e.to_string()),
            UpgradeError::UnknownVersion { .. } | UpgradeError::Invalid(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-upgrade",
                "Invalid upgrade",
                e.to_string(),
            ),
            UpgradeError::Engine(e) => e.into(),
        }
    }
}

fn module_of(
    st: &AppState,
    req: &HttpRequest,
    module: &str,
) -> Result<dwell_engine::domain::TenantId> {
    let tenant = tenant(st, req)?;
    name("module name", module)?;
    if !st.engine.module_exists(&tenant, module) {
        return Err(ApiError::not_found(format!("no module named {module:?}")));
    }
    Ok(tenant)
}

/// Start an upgrade run: the dry run is done before the answer; `apply` and `canary`
/// go on in the background (follow them at `GET …/upgrades/{id}`).
#[utoipa::path(
    post,
    path = "/v1/modules/{name}/upgrades",
    tag = "upgrades",
    security(("tenant_key" = [])),
    params(wire::ModuleName),
    request_body = wire::UpgradePlan,
    responses(
        (status = 201, description = "The run, with the dry run's report.", body = wire::UpgradeRun),
        (status = 400, description = "A malformed body or module name."),
        (status = 404, description = "No module of that name."),
        (status = 408, description = "The body did not arrive within the server's `body_timeout`."),
        (status = 413, description = "The body is over 64 KiB."),
        (status = 422, description = "No such version, `from` equal to `to`, or a share over 100."),
    ),
)]
pub(super) async fn start_upgrade(
    st: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let module = path.into_inner();
    let tenant = module_of(&st, &req, &module)?;
    let plan: UpgradePlan = json_body(&st, &req, payload).await?;
    let run = st.engine.start_upgrade(&tenant, &module, plan).await?;
    Ok(HttpResponse::build(StatusCode::CREATED)
        .insert_header((
            "Location",
            format!("/v1/modules/{module}/upgrades/{}", run.id),
        ))
        .json(run))
}

/// The module's upgrade runs, newest first.
#[utoipa::path(
    get,
    path = "/v1/modules/{name}/upgrades",
    tag = "upgrades",
    security(("tenant_key" = [])),
    params(wire::ModuleName),
    responses(
        (status = 200, description = "The runs.", body = wire::UpgradeRunList),
        (status = 400, description = "Not a valid module name."),
        (status = 404, description = "No module of that name."),
    ),
)]
pub(super) async fn list_upgrades(
    st: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let module = path.into_inner();
    let tenant = module_of(&st, &req, &module)?;
    let runs = st.engine.upgrade_runs(&tenant, &module)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": runs, "next_cursor": null })))
}

/// One upgrade run and its report.
#[utoipa::path(
    get,
    path = "/v1/modules/{name}/upgrades/{id}",
    tag = "upgrades",
    security(("tenant_key" = [])),
    params(wire::UpgradePath),
    responses(
        (status = 200, description = "The run.", body = wire::UpgradeRun),
        (status = 400, description = "Not a valid module name."),
        (status = 404, description = "No such module or run."),
    ),
)]
pub(super) async fn get_upgrade(
    st: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    let (module, id) = path.into_inner();
    let tenant = module_of(&st, &req, &module)?;
    match st.engine.upgrade_run(&tenant, &module, &id)? {
        Some(run) => Ok(HttpResponse::Ok().json(run)),
        None => Err(ApiError::not_found(format!(
            "module {module:?} has no upgrade run {id:?}"
        ))),
    }
}

/// Roll back the actors a run moved: each returns to its old version and the state it
/// had, unless a turn has changed its state on the new version since (it is then kept,
/// and counted in `report.kept`).
#[utoipa::path(
    post,
    path = "/v1/modules/{name}/upgrades/{id}/rollback",
    tag = "upgrades",
    security(("tenant_key" = [])),
    params(wire::UpgradePath),
    responses(
        (status = 200, description = "The run, rolled back.", body = wire::UpgradeRun),
        (status = 400, description = "Not a valid module name."),
        (status = 404, description = "No such module or run."),
    ),
)]
pub(super) async fn rollback_upgrade(
    st: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    let (module, id) = path.into_inner();
    let tenant = module_of(&st, &req, &module)?;
    match st.engine.rollback_upgrade(&tenant, &module, &id).await? {
        Some(run) => Ok(HttpResponse::Ok().json(run)),
        None => Err(ApiError::not_found(format!(
            "module {module:?} has no upgrade run {id:?}"
        ))),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HotfixRequest {
    version: u32,
    #[serde(default)]
    dry_run: bool,
}

/// A dead letter run on another version: see `handlers::retry_dead_letter`.
pub(super) async fn hotfix(
    st: &AppState,
    actor: &dwell_engine::domain::ActorId,
    seq: u64,
    body: &[u8],
) -> Result<HttpResponse> {
    let invalid =
        |e: &dyn std::fmt::Display| ApiError::bad_request(format!("invalid request body: {e}"));
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| invalid(&e))?;
    if !value.is_object() {
        return Err(invalid(&"expected a JSON object"));
    }
    let ask: HotfixRequest = serde_json::from_value(integral(value)).map_err(|e| invalid(&e))?;
    let apply = !ask.dry_run;
    let fix = match st
        .engine
        .hotfix_dead_letter(actor, seq, ask.version, apply)
        .await
    {
        Ok(Some(fix)) => fix,
        Ok(None) => {
            return Err(ApiError::not_found(format!(
                "actor {actor} has no dead letter {seq}"
            )));
        }
        Err(UpgradeError::Invalid(e)) if apply => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "actor-changed",
                "The actor changed",
                e,
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let mut v = serde_json::json!({
        "version": ask.version,
        "migrate": fix.migrate,
        "outcome": fix.outcome,
        "state": fix.state.as_deref().map(dwell_engine::domain::msgpack_to_json),
        "effects": fix.effects.iter().map(super::visibility::effect_json).collect::<Vec<_>>(),
    });
    match fix.retried {
        None if apply => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "hotfix-failed",
            "Not applied",
            format!("migrate {}: the actor stays on its version", fix.migrate),
        )),
        None => {
            v["dry_run"] = serde_json::json!(true);
            Ok(HttpResponse::Ok().json(v))
        }
        Some(Some(id)) => Ok(super::handlers::accepted(id, "pending")),
        Some(None) => Ok(HttpResponse::Accepted().json(serde_json::json!({"status": "accepted"}))),
    }
}
