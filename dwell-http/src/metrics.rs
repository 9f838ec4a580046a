//! `GET /metrics`: the engine's metrics (see `dwell_engine::metrics`) as Prometheus text.
//! On the API's listener it needs the admin key, like the admin API (an operator's
//! view of every tenant); [`serve_metrics`] serves it without a key on a listener of
//! its own (`--metrics-listen`), for a scraper on a private network.

use std::net::TcpListener;

use actix_web::{App, HttpRequest, HttpResponse, web};

use dwell_engine::Engine;

use super::AppState;
use super::problem::ApiError;

/// The node's metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "service",
    security(("admin_key" = [])),
    responses((
        status = 200,
        description = "The node's metrics in the Prometheus text format (version 0.0.4). \
                       `dwell_turns_total` is labelled per tenant and module.",
        content_type = "text/plain",
        body = String,
    )),
)]
pub(super) async fn scrape(
    st: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    super::admin::admin(&st, &req)?;
    Ok(text(&st.engine))
}

fn text(engine: &Engine) -> HttpResponse {
    let (body, content_type) = engine.metrics_text();
    HttpResponse::Ok()
        .insert_header(("content-type", content_type))
        .body(body)
}

/// Serve `GET /metrics` without a key on `listener` (and 404 for anything else) until the
/// process is told to stop.
pub async fn serve_metrics(engine: Engine, listener: TcpListener) -> std::io::Result<()> {
    actix_web::HttpServer::new(move || {
        let engine = engine.clone();
        App::new()
            .route(
                "/metrics",
                web::get().to(move || {
                    let engine = engine.clone();
                    async move { text(&engine) }
                }),
            )
            .default_service(web::to(super::handlers::no_route))
    })
    .workers(1)
    .shutdown_timeout(5)
    .listen(listener)?
    .run()
    .await
}
