//! The HTTP API (actix-web): the only module that knows actix. Handlers validate input,
//! convert JSON to MessagePack at the edge, and talk to the [`Engine`] handle; they never
//! touch storage.

mod admin;
pub(crate) mod codec; // re-exported for the fuzzers by `crate::fuzzing`
mod handlers;
mod openapi;
mod problem;
mod routes;
mod schemas;

use std::net::TcpListener;
use std::time::Duration;

use actix_web::{App, HttpServer, web};

use crate::engine::Engine;

pub use problem::ApiError;

/// HTTP settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Wait for a reply when the caller gives no `Prefer: wait`.
    pub default_wait: Duration,
    /// Longest wait a caller may ask for.
    pub max_wait: Duration,
    pub workers: usize,
    /// How long a request body may take to arrive (then `408`).
    pub body_timeout: Duration,
    /// Request bodies of one tenant being received at once (more: `429`).
    pub max_body_reads: usize,
    /// Serve HTTPS with this configuration (`--tls-cert`, `--tls-key`) instead of HTTP.
    pub tls: Option<rustls::ServerConfig>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            default_wait: Duration::from_secs(5),
            max_wait: Duration::from_secs(60),
            workers: 2,
            body_timeout: Duration::from_secs(30),
            max_body_reads: 64,
            tls: None,
        }
    }
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub engine: Engine,
    pub config: HttpConfig,
    /// Request bodies being received, per tenant.
    pub body_reads: std::sync::Arc<codec::BodyReads>,
}

/// Serve the API on `listener` until the process is told to stop.
pub async fn serve(
    engine: Engine,
    listener: TcpListener,
    config: HttpConfig,
) -> std::io::Result<()> {
    let workers = config.workers.max(1);
    let tls = config.tls.clone();
    let body_reads = std::sync::Arc::new(codec::BodyReads::new(config.max_body_reads));
    let state = AppState {
        engine,
        config,
        body_reads,
    };
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .configure(routes::register)
            .default_service(web::to(handlers::no_route))
    })
    .workers(workers)
    .shutdown_timeout(5);
    match tls {
        Some(tls) => server.listen_rustls_0_23(listener, tls)?.run().await,
        None => server.listen(listener)?.run().await,
    }
}
