//! The web console at `/ui`: a few hand-written files (console/: HTML, CSS, JavaScript
//! modules; no build step) embedded in the binary, so it works with no internet. The app
//! runs in the browser and talks to the JSON API with the key the user signs in with;
//! this module only serves the files.
//!
//! `/ui/assets/<file>` is one of the embedded files (else `404`); every other path under
//! `/ui` answers the app's page, whose script routes on the path (`/ui/actors/counter/a`
//! can be bookmarked). The console is not part of the API: it is registered beside the
//! route table, not in it, so the OpenAPI document does not describe it.
//!
//! Every answer carries a strict Content-Security-Policy: scripts, styles and API calls
//! from this origin only, no inline script or style, no framing.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};

use super::problem::ApiError;

/// The embedded files: name under `/ui/assets/`, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../console/app.css"),
    ),
    ("app.js", JS, include_str!("../console/app.js")),
    ("api.js", JS, include_str!("../console/api.js")),
    ("dom.js", JS, include_str!("../console/dom.js")),
    ("pages.js", JS, include_str!("../console/pages.js")),
    ("actor.js", JS, include_str!("../console/actor.js")),
    ("map.js", JS, include_str!("../console/map.js")),
    ("upgrades.js", JS, include_str!("../console/upgrades.js")),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../console/favicon.svg"),
    ),
];

const JS: &str = "text/javascript; charset=utf-8";

/// The page every app path answers.
const INDEX: &str = include_str!("../console/index.html");

/// Scripts, styles, images and fetches from this origin only; nothing inline, no
/// plugins, no framing, forms post nowhere.
pub(crate) const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// Register `/ui`, `/ui/` and everything under it (GET and HEAD; other methods `405`).
pub fn register(cfg: &mut web::ServiceConfig) {
    for path in ["/ui", "/ui/{tail:.*}"] {
        cfg.service(
            web::resource(path)
                .route(web::get().to(serve))
                .route(web::head().to(serve))
                .default_service(web::to(not_allowed)),
        );
    }
}

async fn serve(req: HttpRequest) -> HttpResponse {
    let path = req.path();
    if let Some(name) = path.strip_prefix("/ui/assets/") {
        return match ASSETS.iter().find(|(n, _, _)| *n == name) {
            Some((_, content_type, body)) => answer(content_type, body),
            None => with_headers(actix_web::ResponseError::error_response(
                &ApiError::not_found(format!("no console asset {name:?}")),
            )),
        };
    }
    answer("text/html; charset=utf-8", INDEX)
}

fn answer(content_type: &str, body: &'static str) -> HttpResponse {
    let resp = HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type.to_owned()))
        // The files change with the binary: revalidate rather than keep a stale app.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body);
    with_headers(resp)
}

/// The console's security headers, on every answer under `/ui`.
fn with_headers(mut resp: HttpResponse) -> HttpResponse {
    let h = resp.headers_mut();
    for (name, value) in [
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cross-origin-opener-policy", "same-origin"),
    ] {
        h.insert(
            header::HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    resp
}

async fn not_allowed(req: HttpRequest) -> HttpResponse {
    let mut resp = actix_web::ResponseError::error_response(&ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        format!(
            "{} {} is not served; the console answers GET and HEAD",
            req.method(),
            req.path()
        ),
    ));
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    with_headers(resp)
}

#[cfg(test)]
mod tests {
    use actix_web::App;
    use actix_web::test as actix_test;

    use super::*;

    async fn get(uri: &str) -> (StatusCode, header::HeaderMap, String) {
        let app = actix_test::init_service(App::new().configure(register)).await;
        let req = actix_test::TestRequest::get().uri(uri).to_request();
        let resp = actix_test::call_service(&app, req).await;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = actix_test::read_body(resp).await;
        (status, headers, String::from_utf8(body.to_vec()).unwrap())
    }

    #[actix_web::test]
    async fn every_app_path_answers_the_page_with_a_strict_policy() {
        for uri in ["/ui", "/ui/", "/ui/actors/counter/a", "/ui/modules/x/map"] {
            let (status, h, body) = get(uri).await;
            assert_eq!(status, StatusCode::OK, "{uri}");
            assert_eq!(h.get("content-type").unwrap(), "text/html; charset=utf-8");
            assert_eq!(h.get("content-security-policy").unwrap(), CSP);
            assert_eq!(h.get("x-content-type-options").unwrap(), "nosniff");
            assert!(body.contains(r#"<script type="module" src="/ui/assets/app.js">"#));
            // No inline script: every <script> has a src.
            assert_eq!(body.matches("<script").count(), 1, "{body}");
        }
    }

    #[actix_web::test]
    async fn assets_are_served_with_their_types_and_unknown_ones_are_404() {
        let (status, h, body) = get("/ui/assets/app.js").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(h.get("content-type").unwrap(), JS);
        assert!(body.contains("import"));
        let (status, h, _) = get("/ui/assets/app.css").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(h.get("content-type").unwrap(), "text/css; charset=utf-8");
        let (status, h, _) = get("/ui/assets/nothing.js").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(h.get("content-type").unwrap(), "application/problem+json");
        assert_eq!(h.get("content-security-policy").unwrap(), CSP);
    }

    #[actix_web::test]
    async fn every_module_the_app_imports_is_embedded() {
        for (name, _, body) in ASSETS {
            for line in body.lines().filter(|l| l.starts_with("import ")) {
                let Some(from) = line.split('"').nth(1) else {
                    continue;
                };
                let file = from.trim_start_matches("./");
                assert!(
                    ASSETS.iter().any(|(n, _, _)| *n == file),
                    "{name} imports {from}, which is not embedded"
                );
            }
        }
    }

    #[actix_web::test]
    async fn other_methods_are_405() {
        let app = actix_test::init_service(App::new().configure(register)).await;
        let req = actix_test::TestRequest::post().uri("/ui/x").to_request();
        let resp = actix_test::call_service(&app, req).await;
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(resp.headers().get(header::ALLOW).unwrap(), "GET, HEAD");
    }
}
