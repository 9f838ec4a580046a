//! Forwarding on a cluster node: any node takes any call, and a call for an actor another
//! node runs is passed to that node (its advertised address, over a kept-alive
//! connection) and its answer passed back, so clients need one address. What is
//! forwarded: calls, events, dead-letter retries and deletes of an actor, and waits on
//! a request (`GET /v1/requests/{id}`, answered where its actor runs). Reads of stored
//! data (inspect, history, lists) are answered by whichever node gets them: the store is
//! shared.
//!
//! A forwarded request carries `dwell-forwarded`; a node that gets one for an actor it
//! does not run either (the partition moved meanwhile) answers `421 Misdirected
//! Request`, and the forwarding node refreshes nothing itself — its membership loop
//! does within a fraction of the lease — but tries once more after a short pause.

use std::sync::OnceLock;
use std::time::Duration;

use actix_web::body::BoxBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpMessage, HttpResponse, web};
use dwell_engine::Caller;
use dwell_types::{ActorId, RequestId};
use futures_util::StreamExt;
use futures_util::future::LocalBoxFuture;

use crate::AppState;
use crate::problem::ApiError;

/// The header a forwarded request carries (its value: the forwarding node).
pub const FORWARDED: &str = "dwell-forwarded";

/// How long a forwarded exchange may take beyond the longest wait a request may ask for.
const SLACK: Duration = Duration::from_secs(30);

fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent("dwell-forward")
            .max_idle_connections(256)
            .max_idle_connections_per_host(64)
            .build()
            .new_agent()
    })
}

/// The actor a request addresses, if it is one that is forwarded.
fn target(st: &AppState, req: &ServiceRequest) -> Option<ActorId> {
    let Ok(Caller::Tenant(tenant)) = st
        .engine
        .authenticate(crate::handlers::bearer_of(req.headers()))
    else {
        return None;
    };
    let parts: Vec<&str> = req.path().trim_matches('/').split('/').collect();
    match (req.method(), parts.as_slice()) {
        (&Method::POST | &Method::DELETE, ["v1", "actors", module, key])
        | (&Method::POST, ["v1", "actors", module, key, "events"])
        | (&Method::POST, ["v1", "actors", module, key, "dead-letters", _, "retry"]) => {
            dwell_types::validate_name("module name", module).ok()?;
            dwell_types::validate_name("actor key", key).ok()?;
            Some(ActorId::new(tenant, *module, *key))
        }
        (&Method::GET, ["v1", "requests", id]) => {
            let id = RequestId::parse(id)?;
            st.engine
                .request(&tenant, id)
                .ok()
                .flatten()
                .map(|r| r.actor)
        }
        _ => None,
    }
}

/// The middleware (see the module doc).
pub fn forward<S>(
    req: ServiceRequest,
    srv: &S,
) -> LocalBoxFuture<'static, Result<ServiceResponse<BoxBody>, actix_web::Error>>
where
    S: Service<ServiceRequest, Response = ServiceResponse<BoxBody>, Error = actix_web::Error>,
    S::Future: 'static,
{
    let st = req.app_data::<web::Data<AppState>>().cloned();
    let elsewhere = st.as_ref().and_then(|st| {
        let placement = st.engine.placement()?;
        if req.headers().contains_key(FORWARDED) {
            return None;
        }
        let actor = target(st, &req)?;
        (!placement.local(&actor)).then(|| (placement.clone(), actor))
    });
    match (elsewhere, st) {
        (Some((placement, actor)), Some(st)) => Box::pin(pass_on(req, st, placement, actor)),
        _ => {
            let fut = srv.call(req);
            Box::pin(async move { fut.await.map(|r| r.map_into_boxed_body()) })
        }
    }
}

/// Pass `req` to the node that runs `actor` and answer what it answers.
async fn pass_on(
    mut req: ServiceRequest,
    st: web::Data<AppState>,
    placement: std::sync::Arc<dwell_types::placement::Placement>,
    actor: ActorId,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let limit = st.engine.limits().message_bytes + (64 << 10);
    let mut body = web::BytesMut::new();
    let mut payload = req.take_payload();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > limit {
            let e = ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
                format!(
                    "a message may be at most {} bytes",
                    st.engine.limits().message_bytes
                ),
            );
            return Ok(req
                .into_response(HttpResponse::from_error(e))
                .map_into_boxed_body());
        }
        body.extend_from_slice(&chunk);
    }
    let (http, _) = req.parts();
    let method = http.method().as_str().to_owned();
    let path = http
        .uri()
        .path_and_query()
        .map_or(http.path().to_owned(), |p| p.as_str().to_owned());
    let headers: Vec<(String, String)> = http
        .headers()
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "host" | "connection" | "content-length" | "transfer-encoding" | "keep-alive"
            )
        })
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let node = placement.node().to_owned();
    let timeout = st.config.max_wait + SLACK;
    let body = body.freeze();
    let mut answer = None;
    for attempt in 0..2 {
        let Some(owner) = placement.owner(&actor) else {
            break;
        };
        let (m, p, h, b, n) = (
            method.clone(),
            path.clone(),
            headers.clone(),
            body.clone(),
            node.clone(),
        );
        let url = format!("http://{owner}{p}");
        let got = tokio::task::spawn_blocking(move || exchange(&m, &url, &h, &b, &n, timeout))
            .await
            .map_err(|e| format!("{e}"))
            .and_then(|r| r);
        match got {
            // The owner moved meanwhile: once more, after the view is refreshed.
            Ok(resp) if resp.status == 421 && attempt == 0 => {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Ok(resp) => {
                answer = Some(resp.response());
                break;
            }
            Err(e) => {
                tracing::warn!(%owner, error = %e, "cannot forward to the owner");
                if attempt == 0 {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
    }
    let resp = answer.unwrap_or_else(|| {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "owner-unavailable",
            "Owner unavailable",
            "the node that runs this actor cannot be reached now (its partition may be moving); nothing was accepted here; retry",
        );
        e.retry_after = Some(1);
        HttpResponse::from_error(e)
    });
    Ok(req.into_response(resp).map_into_boxed_body())
}

/// The owner's answer, as it came.
struct Answer {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Answer {
    fn response(self) -> HttpResponse {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut out = HttpResponse::build(status);
        for (k, v) in self.headers {
            out.append_header((k.as_str(), v));
        }
        out.body(self.body)
    }
}

/// One blocking exchange with the owner.
fn exchange(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
    node: &str,
    timeout: Duration,
) -> Result<Answer, String> {
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    req = req.header(FORWARDED, node);
    let req = req.body(body.to_vec()).map_err(|e| e.to_string())?;
    let agent = agent();
    let req = agent
        .configure_request(req)
        .timeout_global(Some(timeout))
        .build();
    let mut resp = agent.run(req).map_err(|e| e.to_string())?;
    let headers = resp
        .headers()
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "connection" | "content-length" | "transfer-encoding" | "keep-alive"
            )
        })
        .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .map_err(|e| e.to_string())?;
    Ok(Answer {
        status: resp.status().as_u16(),
        headers,
        body,
    })
}
