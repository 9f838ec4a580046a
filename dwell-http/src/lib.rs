//! The HTTP API (actix-web): the only module that knows actix. Handlers validate input,
//! convert JSON to MessagePack at the edge, and talk to the [`Engine`] handle; they never
//! touch storage. The web console's files are served beside the API at `/ui` (console.rs).

mod admin;
#[doc(hidden)]
pub mod codec; // public for the fuzzers (`dwell::fuzzing`), not an API
mod console;
mod forward;
mod handlers;
mod malformed;
mod metrics;
mod openapi;
mod problem;
mod routes;
mod schemas;
mod upgrades;
mod visibility;

use std::net::TcpListener;
use std::time::Duration;

use actix_web::{App, web};

use dwell_engine::Engine;
use dwell_engine::domain;

pub use metrics::serve_metrics;
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
    // actix-web's `HttpServer`, assembled by hand so that every connection is wrapped
    // in [`malformed::ProblemIo`] (HTTP/1.1 only: the TLS config offers no h2).
    let app = move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .wrap_fn(forward::forward)
            .configure(routes::register)
            // Beside the route table, not in it: the console is no API operation.
            .configure(console::register)
            .default_service(web::to(handlers::no_route))
    };
    // As actix-web's `HttpServer` has it (actix-http's own default is 0): after an early
    // answer (e.g. a refused upload) the connection lingers so that the client can finish
    // writing and read the answer instead of failing with a broken pipe.
    const DISCONNECT: Duration = Duration::from_secs(1);
    // The app as a service of `actix_http::Request`s whose errors are responses.
    fn factory(
        app: App<
            impl actix_service::ServiceFactory<
                actix_web::dev::ServiceRequest,
                Config = (),
                Response = actix_web::dev::ServiceResponse,
                Error = actix_web::Error,
                InitError = (),
            > + 'static,
        >,
    ) -> impl actix_service::ServiceFactory<
        actix_http::Request,
        Config = actix_web::dev::AppConfig,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::HttpResponse,
        InitError = (),
    > {
        IntoServiceFactory::<_, actix_http::Request>::into_factory(app)
            .map_err(|e: actix_web::Error| e.error_response())
    }
    let builder = actix_server::Server::build()
        .workers(workers)
        .shutdown_timeout(5);
    use actix_service::{IntoServiceFactory, ServiceFactoryExt, fn_service};
    let server = match tls {
        Some(tls) => {
            let acceptor = actix_tls::accept::rustls_0_23::Acceptor::new(tls);
            builder.listen("dwell-https", listener, move || {
                let app = app.clone();
                acceptor
                    .clone()
                    .map_err(|e| tracing::debug!(error = ?e, "TLS handshake failed"))
                    .and_then(fn_service(
                        |io: actix_tls::accept::rustls_0_23::TlsStream<tokio::net::TcpStream>| async move {
                            let peer = io.get_ref().0.peer_addr().ok();
                            Ok((malformed::ProblemIo::new(io), peer))
                        },
                    ))
                    .and_then(
                        actix_http::HttpService::build()
                            .client_disconnect_timeout(DISCONNECT)
                            .h1(actix_service::map_config(factory(app()), |_: ()| {
                                actix_web::dev::AppConfig::default()
                            }))
                            .map_err(|_| ()),
                    )
            })?
        }
        None => builder.listen("dwell-http", listener, move || {
            let app = app.clone();
            fn_service(|io: tokio::net::TcpStream| async move {
                let peer = io.peer_addr().ok();
                Ok::<_, ()>((malformed::ProblemIo::new(io), peer))
            })
            .and_then(
                actix_http::HttpService::build()
                    .client_disconnect_timeout(DISCONNECT)
                    .h1(actix_service::map_config(factory(app()), |_: ()| {
                        actix_web::dev::AppConfig::default()
                    }))
                    .map_err(|_| ()),
            )
        })?,
    };
    server.run().await
}
