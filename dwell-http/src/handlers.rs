//! Route handlers, one per API operation (DESIGN §3), each described for the OpenAPI
//! document by its `#[utoipa::path]`; routes.rs registers them.
//! Long because every API operation's handler carries its OpenAPI description next to it.

use std::time::Duration;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::domain::records::{CallbackStatus, Delivery, ModuleVersion, RequestRecord};
use crate::domain::{
    ActorId, ActorStatus, RefusalCode, RequestId, RequestStatus, TenantId, TraceParent,
    validate_name,
};
use dwell_engine::{AuthError, Caller, trace};

use super::AppState;
use super::codec::{self, read_body};
use super::problem::ApiError;
use super::schemas as wire;

type Result<T> = std::result::Result<T, ApiError>;

pub async fn no_route(req: HttpRequest) -> Result<HttpResponse> {
    Err(ApiError::not_found(format!(
        "no such endpoint: {} {}",
        req.method(),
        req.path()
    )))
}

/// Liveness: the process serves HTTP.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "service",
    security(()),
    responses((status = 200, description = "Alive.", body = wire::Health)),
)]
pub(super) async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Readiness: the store can be read and its writer commits (within 2 s).
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "service",
    security(()),
    responses(
        (status = 200, description = "Ready.", body = wire::Ready),
        (
            status = 503,
            description = "Not ready: the store does not take writes, or its writer does not \
                commit within 2 s.",
        ),
    ),
)]
pub(super) async fn ready(st: web::Data<AppState>) -> Result<HttpResponse> {
    match st.engine.ready(Duration::from_secs(2)).await {
        Ok(()) => Ok(HttpResponse::Ok().json(json!({"status": "ready"}))),
        Err(why) => {
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not-ready",
                "Not ready",
                why,
            );
            e.retry_after = Some(1);
            Err(e)
        }
    }
}

/// The bearer token of a request, if any.
pub(super) fn bearer(req: &HttpRequest) -> Option<&str> {
    bearer_of(req.headers())
}

/// The bearer token of these headers.
pub(super) fn bearer_of(headers: &actix_web::http::header::HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Authenticate the caller (401 without a valid key) and return its tenant; the admin
/// key is refused here (403). Counts the request against the tenant's rate (429).
pub(super) fn tenant(st: &AppState, req: &HttpRequest) -> Result<TenantId> {
    match st.engine.authenticate(bearer(req)) {
        Ok(Caller::Tenant(t)) => {
            st.engine.admit(&t).map_err(ApiError::rate_limited)?;
            Ok(t)
        }
        Ok(Caller::Admin) => Err(ApiError::forbidden(
            "the admin key manages tenants; use a tenant's API key here",
        )),
        Err(AuthError::Missing) => Err(ApiError::unauthorized(
            "send an API key: Authorization: Bearer <key>",
        )),
        Err(AuthError::Invalid) => Err(ApiError::unauthorized("the API key is not valid")),
    }
}

pub(super) fn name(kind: &str, value: &str) -> Result<()> {
    validate_name(kind, value).map_err(ApiError::bad_request)
}

fn version_json(v: &ModuleVersion) -> serde_json::Value {
    json!({
        "version": v.version,
        "digest": format!("sha256:{}", v.digest),
        "size": v.size,
        "created_ms": v.created_ms,
    })
}

/// Deploy a module version.
///
/// Validates the component against the `dwell:actor` world, compiles it and stores it as
/// a new version, unless the latest version has the same bytes.
#[utoipa::path(
    put,
    path = "/v1/modules/{name}",
    tag = "modules",
    security(("tenant_key" = [])),
    params(wire::ModuleName),
    request_body(
        description = "The component's bytes (built for `wasm32-wasip2`).",
        content((wire::ComponentBytes = "application/wasm")),
    ),
    responses(
        (status = 201, description = "A new version was stored.", body = wire::DeployedModule),
        (status = 200, description = "The latest version already has these bytes.", body = wire::DeployedModule),
        (status = 400, description = "Not a valid module name."),
        (status = 408, description = "The body did not arrive within the server's `body_timeout`."),
        (status = 413, description = "Over the tenant's `max_module_bytes`."),
        (status = 422, description = "Empty, or not a component of the `dwell:actor` world."),
        (status = 429, description = "Over the tenant's `max_modules`, or its request rate."),
    ),
)]
pub(super) async fn put_module(
    st: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let tenant = tenant(&st, &req)?;
    let module = path.into_inner();
    name("module name", &module)?;
    let limit = st.engine.quotas(&tenant)?.max_module_bytes as usize;
    let _reading = st.body_reads.start(&tenant)?;
    let bytes = read_body(&req, payload, limit, st.config.body_timeout).await?;
    if bytes.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-module",
            "Invalid module",
            "the body is empty; send the component's bytes",
        ));
    }
    let deployed = st.engine.deploy(&tenant, &module, bytes).await?;
    let mut body = version_json(&deployed.version);
    body["name"] = json!(module);
    body["created"] = json!(deployed.created);
    let status = if deployed.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(HttpResponse::build(status).json(body))
}

/// List the tenant's modules with their latest versions.
#[utoipa::path(
    get,
    path = "/v1/modules",
    tag = "modules",
    security(("tenant_key" = [])),
    responses((status = 200, description = "The modules.", body = wire::ModuleList)),
)]
pub(super) async fn list_modules(
    st: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse> {
    let tenant = tenant(&st, &req)?;
    let modules: Vec<_> = st
        .engine
        .modules(&tenant)?
        .into_iter()
        .filter_map(|(name, rec)| {
            let latest = rec.latest()?;
            let mut v = version_json(latest);
            v["name"] = json!(name);
            v["versions"] = json!(rec.versions.len());
            Some(v)
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "modules": modules })))
}

/// A module and its versions.
#[utoipa::path(
    get,
    path = "/v1/modules/{name}",
    tag = "modules",
    security(("tenant_key" = [])),
    params(wire::ModuleName),
    responses(
        (status = 200, description = "The module.", body = wire::ModuleVersions),
        (status = 400, description = "Not a valid module name."),
        (status = 404, description = "No module of that name."),
    ),
)]
pub(super) async fn get_module(
    st: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let tenant = tenant(&st, &req)?;
    let module = path.into_inner();
    name("module name", &module)?;
    let rec = st
        .engine
        .modules(&tenant)?
        .into_iter()
        .find(|(n, _)| *n == module)
        .ok_or_else(|| ApiError::not_found(format!("no module named {module:?}")))?
        .1;
    let versions: Vec<_> = rec.versions.iter().map(version_json).collect();
    Ok(HttpResponse::Ok().json(json!({ "name": module, "versions": versions })))
}

pub(super) fn actor_from(
    st: &AppState,
    req: &HttpRequest,
    path: (String, String),
) -> Result<ActorId> {
    let tenant = tenant(st, req)?;
    let (module, key) = path;
    name("module name", &module)?;
    name("actor key", &key)?;
    Ok(ActorId::new(tenant, module, key))
}

fn idempotency_key(req: &HttpRequest) -> Result<Option<String>> {
    let Some(v) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    // Visible ASCII only (no inner spaces or tabs), as the document's pattern says.
    let v = v
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 255 && v.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::bad_request("Idempotency-Key must be 1 to 255 visible ASCII characters")
        })?;
    Ok(Some(v.to_owned()))
}

fn callback_url(req: &HttpRequest) -> Result<Option<String>> {
    let Some(v) = req.headers().get("callback-url") else {
        return Ok(None);
    };
    let v = v
        .to_str()
        .map_err(|_| ApiError::bad_request("Callback-Url is not ASCII"))?
        .trim();
    let scheme = v.starts_with("http://") || v.starts_with("https://");
    if !scheme || v.len() > 2048 || !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::bad_request(
            "Callback-Url must be an http(s) URL of at most 2048 visible ASCII characters",
        ));
    }
    Ok(Some(v.to_owned()))
}

/// The reply body: JSON when it has a JSON form (or MessagePack if the caller asked).
fn reply_response(
    req: &HttpRequest,
    status: StatusCode,
    id: RequestId,
    reply: &[u8],
) -> HttpResponse {
    let mut resp = HttpResponse::build(status);
    resp.insert_header(("dwell-request-id", id.to_string()));
    if codec::wants_msgpack(req) {
        return resp
            .content_type("application/msgpack")
            .body(reply.to_vec());
    }
    match codec::to_json(reply) {
        Some(v) => resp.json(v),
        None => resp
            .content_type("application/msgpack")
            .body(reply.to_vec()),
    }
}

pub(super) fn accepted(id: RequestId, status: &str) -> HttpResponse {
    HttpResponse::Accepted()
        .insert_header((header::LOCATION, format!("/v1/requests/{id}")))
        .insert_header(("dwell-request-id", id.to_string()))
        .json(json!({ "request_id": id.to_string(), "status": status }))
}

fn failed(id: RequestId, error: &str, refusal: Option<RefusalCode>) -> ApiError {
    match refusal {
        Some(code) => ApiError::refused(code, error),
        None => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "request-failed",
            "The request failed",
            error,
        ),
    }
    .with_request(id.to_string())
}

fn wait_for(st: &AppState, prefer: codec::Prefer) -> Duration {
    prefer
        .wait
        .unwrap_or(st.config.default_wait)
        .min(st.config.max_wait)
}

/// The common part of a call and an event, after the caller is known: the actor's
/// module must exist; the body as MessagePack (bounded by the tenant's message quota)
/// and the `Idempotency-Key`.
async fn ingress(
    st: &AppState,
    req: &HttpRequest,
    actor: &ActorId,
    payload: web::Payload,
) -> Result<(Vec<u8>, Option<String>)> {
    if !st.engine.module_exists(&actor.tenant, &actor.module) {
        return Err(ApiError::not_found(format!(
            "no module named {:?}",
            actor.module
        )));
    }
    let key = idempotency_key(req)?;
    let limit = st.engine.quotas(&actor.tenant)?.max_message_bytes as usize;
    let _reading = st.body_reads.start(&actor.tenant)?;
    let raw = read_body(req, payload, limit, st.config.body_timeout).await?;
    let body = codec::to_guest(req, &raw)?;
    Ok((body, key))
}

/// Call an actor: a request that expects a reply.
///
/// The actor is created on its first message. The answer is the reply when it comes
/// within the wait (`Prefer: wait=N`), else `202` with a request to poll; the message is
/// durable before either is sent.
#[utoipa::path(
    post,
    path = "/v1/actors/{module}/{key}",
    tag = "actors",
    security(("tenant_key" = [])),
    params(wire::ActorPath, wire::CallHeaders),
    request_body(
        description = "The message: JSON (the guest sees it as MessagePack), or MessagePack \
            with `Content-Type: application/msgpack` (passed through). At most the tenant's \
            `max_message_bytes`.",
        content((serde_json::Value = "application/json"), ("application/msgpack")),
    ),
    responses(
        (
            status = 200,
            description = "The reply, within the wait: JSON, or MessagePack when asked with \
                `Accept: application/msgpack` or when it has no JSON form.",
            content((serde_json::Value = "application/json"), ("application/msgpack")),
            headers(
                ("Dwell-Request-Id" = String, description = "The request's id."),
                ("Preference-Applied" = String, description = "`wait=N` when the call sent one."),
            ),
        ),
        (
            status = 202,
            description = "Durable, no reply yet (the wait ran out, or `Prefer: respond-async`): \
                poll `Location`, or wait for the callback.",
            body = wire::PendingRequest,
            headers(
                ("Location" = String, description = "`/v1/requests/{id}`"),
                ("Dwell-Request-Id" = String, description = "The request's id."),
                (
                    "Preference-Applied" = String,
                    description = "`respond-async`, or `wait=N` when the call sent one."
                ),
            ),
        ),
        (status = 400, description = "A malformed body, header or name, or a refused `Callback-Url`."),
        (status = 404, description = "No module of that name, or the process refused the request \
            as about something that does not exist (`refused-not-found`)."),
        (status = 409, description = "The actor's process is complete, or the process refused \
            the request as contradicting its state (`refused-conflict`)."),
        (status = 412, description = "The process refused the request: a condition it depends on \
            does not hold (`refused-failed-precondition`)."),
        (status = 408, description = "The body did not arrive within the server's `body_timeout`."),
        (status = 413, description = "Over the tenant's `max_message_bytes`."),
        (status = 422, description = "The `Idempotency-Key` was used for a different request, or \
            the process refused the request as invalid (`refused-invalid`, e.g. a body it cannot \
            decode)."),
        (status = 429, description = "Over the tenant's `max_actors`, or its request rate."),
        (status = 500, description = "The request failed: the turn trapped, ran out of time or \
            memory, or the actor failed it without a refusal class (then it is dead-lettered). \
            `request_id` names the request."),
        (status = 503, description = "Overloaded; nothing was accepted. Retry after `Retry-After`."),
        (status = 507, description = "The disk holding the data is full; nothing was accepted."),
    ),
)]
pub(super) async fn call_actor(
    st: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let span = Ingress::start(&req, "POST /v1/actors/{module}/{key}");
    let result = call(st, &req, path, payload, span.context).await;
    span.finish(&result);
    result
}

async fn call(
    st: web::Data<AppState>,
    req: &HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    trace: Option<TraceParent>,
) -> Result<HttpResponse> {
    // The key first: without a valid one, nothing about the request is looked at (401).
    let actor = actor_from(&st, req, path.into_inner())?;
    let prefer = codec::prefer(req)?;
    let callback = callback_url(req)?;
    let (body, key) = ingress(&st, req, &actor, payload).await?;
    let fresh = RequestId::random();
    let watch = st.engine.watch(fresh);
    let inline = !prefer.respond_async;
    let (id, repeat) = st
        .engine
        .call(&actor, fresh, body, callback, key, inline, trace)
        .await?;
    // A repeated Idempotency-Key answers for the first request.
    let watch = if repeat { st.engine.watch(id) } else { watch };
    if prefer.respond_async {
        let mut resp = accepted(id, "pending");
        applied(&mut resp, "respond-async".to_owned());
        return Ok(resp);
    }
    let wait = wait_for(&st, prefer);
    let rec = st
        .engine
        .wait(&actor.tenant, id, Some(watch), wait)
        .await?
        .ok_or_else(|| ApiError::not_found("the request vanished"))?;
    let mut resp = match rec.status {
        RequestStatus::Pending => accepted(id, "pending"),
        RequestStatus::Completed { reply } => reply_response(req, StatusCode::OK, id, &reply),
        RequestStatus::Failed { error, refusal } => return Err(failed(id, &error, refusal)),
    };
    if prefer.wait.is_some() {
        applied(&mut resp, codec::wait_applied(wait));
    }
    Ok(resp)
}

/// Say which preference was honoured (RFC 7240 `Preference-Applied`).
fn applied(resp: &mut HttpResponse, preference: String) {
    if let Ok(v) = header::HeaderValue::from_str(&preference) {
        resp.headers_mut()
            .insert(header::HeaderName::from_static("preference-applied"), v);
    }
}

/// Send an actor an event: a one-way message.
#[utoipa::path(
    post,
    path = "/v1/actors/{module}/{key}/events",
    tag = "actors",
    security(("tenant_key" = [])),
    params(wire::ActorPath, wire::EventHeaders),
    request_body(
        description = "The event: JSON, or MessagePack with `Content-Type: application/msgpack`. \
            At most the tenant's `max_message_bytes`.",
        content((serde_json::Value = "application/json"), ("application/msgpack")),
    ),
    responses(
        (status = 202, description = "Durable.", body = wire::EventAccepted),
        (status = 400, description = "A malformed body, header or name."),
        (status = 404, description = "No module of that name."),
        (status = 409, description = "The actor's process is complete; it takes no more messages."),
        (status = 408, description = "The body did not arrive within the server's `body_timeout`."),
        (status = 413, description = "Over the tenant's `max_message_bytes`."),
        (status = 422, description = "The `Idempotency-Key` was used for a different message."),
        (status = 429, description = "Over the tenant's `max_actors`, or its request rate."),
        (status = 503, description = "Overloaded; nothing was accepted. Retry after `Retry-After`."),
        (status = 507, description = "The disk holding the data is full; nothing was accepted."),
    ),
)]
pub(super) async fn send_event(
    st: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let span = Ingress::start(&req, "POST /v1/actors/{module}/{key}/events");
    let result = async {
        let actor = actor_from(&st, &req, path.into_inner())?;
        let (body, key) = ingress(&st, &req, &actor, payload).await?;
        let (seq, repeat) = st
            .engine
            .send_event(&actor, body, key, span.context)
            .await?;
        Ok(HttpResponse::Accepted()
            .json(json!({ "status": "accepted", "seq": seq, "duplicate": repeat })))
    }
    .await;
    span.finish(&result);
    result
}

/// The trace context a message carries in: the caller's W3C `traceparent` (a malformed
/// one is ignored, as the specification asks), continued under a server span of ours
/// when spans are exported — a new trace when the caller sent none.
struct Ingress {
    name: &'static str,
    incoming: Option<TraceParent>,
    context: Option<TraceParent>,
    started: std::time::Instant,
}

impl Ingress {
    fn start(req: &HttpRequest, name: &'static str) -> Ingress {
        let incoming = req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(TraceParent::parse);
        let context = if trace::enabled() {
            Some(incoming.map_or_else(trace::new_trace, |p| p.fresh_child()))
        } else {
            incoming
        };
        Ingress {
            name,
            incoming,
            context,
            started: std::time::Instant::now(),
        }
    }

    fn finish(self, result: &Result<HttpResponse>) {
        let Some(context) = self.context.filter(|_| trace::enabled()) else {
            return;
        };
        let status = match result {
            Ok(r) => r.status(),
            Err(e) => actix_web::ResponseError::status_code(e),
        };
        trace::export(trace::Finished {
            name: self.name.to_owned(),
            kind: trace::Kind::Server,
            context,
            parent: self.incoming.map(|p| p.span_id),
            took: self.started.elapsed(),
            attributes: vec![trace::Attribute::new(
                "http.response.status_code",
                i64::from(status.as_u16()),
            )],
            error: status
                .is_server_error()
                .then(|| format!("HTTP {}", status.as_u16())),
        });
    }
}

pub(super) fn request_json(id: RequestId, rec: &RequestRecord) -> serde_json::Value {
    let actor = Some(&rec.actor);
    let mut v = json!({
        "request_id": id.to_string(),
        "actor": actor.map(|a| json!({"module": a.module, "key": a.key})),
        "created_ms": rec.created_ms,
        "settled_ms": rec.settled_ms,
    });
    match &rec.status {
        RequestStatus::Pending => v["status"] = json!("pending"),
        RequestStatus::Completed { reply } => {
            v["status"] = json!("completed");
            v["reply"] = codec::to_json_lossless(reply);
        }
        RequestStatus::Failed { error, refusal } => {
            v["status"] = json!("failed");
            v["error"] = json!(error);
            if let Some(code) = refusal {
                v["refusal"] = json!(code.as_str());
            }
        }
    }
    if let Some(cb) = &rec.callback_url {
        v["callback"] = match &rec.callback {
            None => json!({"url": cb, "status": "waiting_for_result"}),
            Some(CallbackStatus::Pending { attempts }) => {
                json!({"url": cb, "status": "pending", "attempts": attempts})
            }
            Some(CallbackStatus::Delivered { attempts, at_ms }) => {
                json!({"url": cb, "status": "delivered", "attempts": attempts, "at_ms": at_ms})
            }
            Some(CallbackStatus::GaveUp { attempts, error }) => {
                json!({"url": cb, "status": "gave_up", "attempts": attempts, "error": error})
            }
        };
    }
    v
}

/// A request: pending, completed with its reply, or failed; and its callback's delivery.
#[utoipa::path(
    get,
    path = "/v1/requests/{id}",
    tag = "requests",
    security(("tenant_key" = [])),
    params(wire::RequestPath, wire::PollHeaders),
    responses(
        (
            status = 200,
            description = "The request.",
            body = wire::RequestView,
            headers(("Preference-Applied" = String, description = "`wait=N` when asked to wait.")),
        ),
        (status = 400, description = "A malformed `Prefer` header."),
        (status = 404, description = "No such request (or another tenant's)."),
    ),
)]
pub(super) async fn get_request(
    st: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let tenant = tenant(&st, &req)?;
    let raw = path.into_inner();
    let unknown = || ApiError::not_found(format!("no request {raw:?}"));
    let id = RequestId::parse(&raw).ok_or_else(unknown)?;
    let prefer = codec::prefer(&req)?;
    let wait = prefer
        .wait
        .unwrap_or(Duration::ZERO)
        .min(st.config.max_wait);
    let rec = st
        .engine
        .wait(&tenant, id, None, wait)
        .await?
        .ok_or_else(unknown)?;
    let mut resp = HttpResponse::Ok().json(request_json(id, &rec));
    if prefer.wait.is_some() {
        applied(&mut resp, codec::wait_applied(wait));
    }
    Ok(resp)
}

/// Inspect an actor: status, version, state, mailbox, timers, outbound calls, dead letters.
#[utoipa::path(
    get,
    path = "/v1/actors/{module}/{key}",
    tag = "actors",
    security(("tenant_key" = [])),
    params(wire::ActorPath),
    responses(
        (status = 200, description = "The actor.", body = wire::ActorView),
        (status = 400, description = "Not a valid module name or actor key."),
        (status = 404, description = "No such actor."),
    ),
)]
pub(super) async fn inspect_actor(
    st: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    let actor = actor_from(&st, &req, path.into_inner())?;
    let view = st
        .engine
        .inspect(&actor)?
        .ok_or_else(|| ApiError::not_found(format!("no actor {actor}")))?;
    let m = &view.meta;
    let timers: Vec<_> = st
        .engine
        .timers_of(&actor)?
        .into_iter()
        .map(|(name, due)| json!({"name": name, "due_ms": due}))
        .collect();
    let calls: Vec<_> = st
        .engine
        .http_calls_of(&actor)?
        .into_iter()
        .filter_map(|e| match e.delivery {
            Delivery::Http { spec, .. } => Some(json!({
                "call_id": spec.call_id,
                "method": spec.method,
                "url": spec.url,
                "attempts": e.attempts,
                "next_attempt_ms": e.due_ms,
                "last_error": e.last_error,
            })),
            Delivery::Callback { .. } => None,
        })
        .collect();
    let dead: Vec<_> = view
        .dead_letters
        .iter()
        .map(|(seq, d)| {
            json!({
                "seq": seq,
                "error": d.error,
                "attempts": d.attempts,
                "at_ms": d.at_ms,
                "body": codec::to_json_lossless(&d.envelope.body),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "module": actor.module,
        "key": actor.key,
        "status": match m.status { ActorStatus::Active => "active", ActorStatus::Completed => "completed" },
        "version": m.version,
        "step": m.step,
        "digest": format!("sha256:{}", m.digest),
        "state": view.state.as_deref().map(codec::to_json_lossless),
        "mailbox_depth": view.mailbox_depth,
        "turns": m.turns,
        "timers": timers,
        "outbound_calls": calls,
        "dead_letter_count": m.dead_letters,
        "dead_letters": dead,
        "created_ms": m.created_ms,
        "updated_ms": m.updated_ms,
    })))
}

/// Delete a module name; actors pinned to its versions keep running them.
#[utoipa::path(
    delete,
    path = "/v1/modules/{name}",
    tag = "modules",
    security(("tenant_key" = [])),
    params(wire::ModuleName),
    responses(
        (status = 204, description = "Deleted."),
        (status = 400, description = "Not a valid module name."),
        (status = 404, description = "No module of that name."),
    ),
)]
pub(super) async fn delete_module(
    st: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    let tenant = tenant(&st, &req)?;
    let module = path.into_inner();
    name("module name", &module)?;
    if !st.engine.delete_module(&tenant, &module).await? {
        return Err(ApiError::not_found(format!("no module named {module:?}")));
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Delete an actor and everything it holds; its waiting requests fail.
#[utoipa::path(
    delete,
    path = "/v1/actors/{module}/{key}",
    tag = "actors",
    security(("tenant_key" = [])),
    params(wire::ActorPath),
    responses(
        (status = 204, description = "Deleted."),
        (status = 400, description = "Not a valid module name or actor key."),
        (status = 404, description = "No such actor."),
    ),
)]
pub(super) async fn delete_actor(
    st: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse> {
    let actor = actor_from(&st, &req, path.into_inner())?;
    if !st.engine.delete_actor(&actor).await? {
        return Err(ApiError::not_found(format!("no actor {actor}")));
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Put a dead letter back into its actor's mailbox; a request gets a new request id.
/// With a body naming a `version`, the message is run on that version of the module
/// instead (a hotfix): `dry_run: true` shows what it would do, nothing performed;
/// otherwise the actor moves to that version (its state migrated) and the message goes
/// back into its mailbox.
#[utoipa::path(
    post,
    path = "/v1/actors/{module}/{key}/dead-letters/{seq}/retry",
    tag = "actors",
    security(("tenant_key" = [])),
    params(wire::DeadLetterPath),
    request_body(content = Option<wire::HotfixRequest>, description = "Optional: run it on another version."),
    responses(
        (status = 200, description = "A dry run on another version: what it would do.", body = wire::HotfixDryRun),
        (status = 202, description = "Back in the mailbox, durable.", body = wire::Retried),
        (status = 400, description = "Not a valid module name or actor key, or a malformed body."),
        (status = 404, description = "No such dead letter."),
        (status = 408, description = "The body did not arrive within the server's `body_timeout`."),
        (status = 413, description = "The body is over 64 KiB."),
        (status = 409, description = "The actor took a turn while it was being moved."),
        (status = 422, description = "No such version."),
    ),
)]
pub(super) async fn retry_dead_letter(
    st: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String, u64)>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let (module, key, seq) = path.into_inner();
    let actor = actor_from(&st, &req, (module, key))?;
    let body = read_body(&req, payload, 64 << 10, st.config.body_timeout).await?;
    // No body (or `{}`, or `null`): put it back as it is.
    let plain = body.iter().all(u8::is_ascii_whitespace)
        || serde_json::from_slice::<serde_json::Value>(&body)
            .is_ok_and(|v| v == json!({}) || v.is_null());
    if !plain {
        return super::upgrades::hotfix(&st, &actor, seq, &body).await;
    }
    match st.engine.retry_dead_letter(&actor, seq).await? {
        None => Err(ApiError::not_found(format!(
            "actor {actor} has no dead letter {seq}"
        ))),
        Some(Some(id)) => Ok(accepted(id, "pending")),
        Some(None) => Ok(HttpResponse::Accepted().json(json!({ "status": "accepted" }))),
    }
}
