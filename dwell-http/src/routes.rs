//! The route table: every path the API serves, its methods and their handlers, written
//! once. The same table registers the actix resources (a method not in a path's list
//! answers `405` with `Allow`), lists the operations of the OpenAPI document, and gives
//! the tests the set of (path, method) pairs, so routes and spec cannot drift apart.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};

use super::problem::ApiError;
use super::{admin, handlers, metrics, openapi, upgrades, visibility};

/// `routes! { "/path" => { METHOD module::handler, ... }, ... }` expands to [`ROUTES`],
/// [`register`] and [`Operations`] (the handlers' `#[utoipa::path]` descriptions).
macro_rules! routes {
    ($($path:literal => { $($method:ident $module:ident :: $handler:ident),+ $(,)? }),+ $(,)?) => {
        /// Every path and its methods, in registration order (for the tests; the
        /// server registers through [`register`]).
        #[cfg(test)]
        pub(super) const ROUTES: &[(&str, &[&str])] = &[
            $(($path, &[$(stringify!($method)),+])),+
        ];

        /// Register one resource per path with its methods; any other method on the
        /// path answers `405` with `Allow`, and a malformed path parameter `404`.
        pub fn register(cfg: &mut web::ServiceConfig) {
            cfg.app_data(web::PathConfig::default().error_handler(bad_path_parameter));
            $(
                cfg.service(
                    web::resource($path)
                        $(.route(web::method(Method::$method).to($module::$handler)))+
                        .default_service(web::to(|req: HttpRequest| {
                            method_not_allowed(req, &[$(stringify!($method)),+])
                        })),
                );
            )+
        }

        /// The operations of the route table, as their handlers describe them.
        #[derive(utoipa::OpenApi)]
        #[openapi(paths($($($module::$handler),+),+))]
        pub(super) struct Operations;
    };
}

routes! {
    "/healthz" => { GET handlers::health },
    "/readyz" => { GET handlers::ready },
    "/v1/openapi.json" => { GET openapi::serve },
    "/metrics" => { GET metrics::scrape },
    "/v1/modules" => { GET handlers::list_modules },
    "/v1/modules/{name}" => {
        PUT handlers::put_module,
        GET handlers::get_module,
        DELETE handlers::delete_module,
    },
    "/v1/modules/{name}/map" => { GET visibility::process_map },
    "/v1/modules/{name}/upgrades" => {
        POST upgrades::start_upgrade,
        GET upgrades::list_upgrades,
    },
    "/v1/modules/{name}/upgrades/{id}" => { GET upgrades::get_upgrade },
    "/v1/modules/{name}/upgrades/{id}/rollback" => { POST upgrades::rollback_upgrade },
    "/v1/actors" => { GET visibility::list_actors },
    "/v1/actors/{module}/{key}" => {
        POST handlers::call_actor,
        GET handlers::inspect_actor,
        DELETE handlers::delete_actor,
    },
    "/v1/actors/{module}/{key}/events" => { POST handlers::send_event },
    "/v1/actors/{module}/{key}/history" => { GET visibility::actor_history },
    "/v1/actors/{module}/{key}/history/{seq}" => { GET visibility::history_entry },
    "/v1/actors/{module}/{key}/dead-letters/{seq}/retry" => {
        POST handlers::retry_dead_letter,
    },
    "/v1/requests" => { GET visibility::list_requests },
    "/v1/requests/{id}" => { GET handlers::get_request },
    "/v1/tenants" => { POST admin::create_tenant, GET admin::list_tenants },
    "/v1/tenants/{name}" => {
        GET admin::get_tenant,
        PATCH admin::update_tenant,
        DELETE admin::delete_tenant,
    },
    "/v1/tenants/{name}/keys" => { POST admin::issue_key },
    "/v1/tenants/{name}/keys/{id}" => { DELETE admin::revoke_key },
    "/v1/cluster" => { GET admin::cluster },
}

/// A path parameter of the wrong shape (a `seq` that is not a number): the resource does
/// not exist, `404` as problem+json like every other error.
fn bad_path_parameter(err: actix_web::error::PathError, req: &HttpRequest) -> actix_web::Error {
    ApiError::not_found(format!("no such resource: {}: {err}", req.path())).into()
}

/// A known path asked with a method it does not serve: `405`, `Allow`, problem+json.
async fn method_not_allowed(req: HttpRequest, allow: &'static [&'static str]) -> HttpResponse {
    let allow = allow.join(", ");
    let mut resp = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        format!(
            "{} {} is not served; allowed: {allow}",
            req.method(),
            req.path()
        ),
    )
    .error_response();
    if let Ok(v) = HeaderValue::from_str(&allow) {
        resp.headers_mut().insert(header::ALLOW, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use actix_web::App;
    use actix_web::test as actix_test;

    use super::*;

    /// (path, method) pairs of the route table, methods upper-case.
    fn registered() -> BTreeSet<(String, String)> {
        ROUTES
            .iter()
            .flat_map(|(path, methods)| methods.iter().map(|m| (path.to_string(), m.to_string())))
            .collect()
    }

    /// (path, method) pairs the OpenAPI document describes.
    fn described() -> BTreeSet<(String, String)> {
        let doc = serde_json::to_value(openapi::document()).unwrap();
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                if ["parameters", "summary", "description", "servers"].contains(&method.as_str()) {
                    continue;
                }
                out.insert((path.clone(), method.to_uppercase()));
            }
        }
        out
    }

    #[test]
    fn the_openapi_document_describes_exactly_the_registered_routes() {
        let registered = registered();
        let described = described();
        let undescribed: Vec<_> = registered.difference(&described).collect();
        let unregistered: Vec<_> = described.difference(&registered).collect();
        assert!(
            undescribed.is_empty() && unregistered.is_empty(),
            "registered but not described: {undescribed:?}; described but not registered: \
             {unregistered:?}"
        );
        assert!(registered.contains(&("/v1/actors/{module}/{key}".into(), "POST".into())));
    }

    #[test]
    fn every_path_is_registered_once() {
        let paths: BTreeSet<_> = ROUTES.iter().map(|(p, _)| p).collect();
        assert_eq!(
            paths.len(),
            ROUTES.len(),
            "a path appears once in the table"
        );
    }

    /// A placeholder request path for a route pattern (`{seq}` must be a number).
    fn concrete(pattern: &str) -> String {
        pattern
            .replace("{seq}", "1")
            .replace("{id}", "0123456789abcdef0123456789abcdef")
            .replace(['{', '}'], "")
    }

    #[actix_web::test]
    async fn other_methods_get_405_with_allow_and_described_ones_reach_their_handler() {
        // No engine behind it: a handler that needs one fails with 500, which is enough
        // to tell that routing reached it.
        let app = actix_test::init_service(
            App::new()
                .configure(register)
                .default_service(web::to(handlers::no_route)),
        )
        .await;
        let all = ["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS"];
        for (pattern, methods) in ROUTES {
            let uri = concrete(pattern);
            for m in all {
                let req = actix_test::TestRequest::default()
                    .method(Method::from_bytes(m.as_bytes()).unwrap())
                    .uri(&uri)
                    .to_request();
                let resp = actix_test::call_service(&app, req).await;
                let status = resp.status();
                if methods.contains(&m) {
                    assert!(
                        status != StatusCode::METHOD_NOT_ALLOWED && status != StatusCode::NOT_FOUND,
                        "{m} {uri}: {status}"
                    );
                    continue;
                }
                assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{m} {uri}");
                let h = resp.headers();
                assert_eq!(
                    h.get(header::ALLOW).unwrap(),
                    &methods.join(", "),
                    "{m} {uri}"
                );
                assert_eq!(
                    h.get(header::CONTENT_TYPE).unwrap(),
                    "application/problem+json"
                );
                let body: serde_json::Value =
                    serde_json::from_slice(&actix_test::read_body(resp).await).unwrap();
                assert_eq!(body["status"], 405);
            }
        }
        let req = actix_test::TestRequest::get()
            .uri("/v1/nothing")
            .to_request();
        let resp = actix_test::call_service(&app, req).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert!(resp.headers().get(header::ALLOW).is_none());
    }
}
