//! The OpenAPI 3.1 document served at `GET /v1/openapi.json`: the operations of the route
//! table (routes.rs), each described by `#[utoipa::path]` on its handler, plus what all
//! operations share — the bearer security schemes, and the error responses, which are
//! all `application/problem+json` (with `Retry-After` or `WWW-Authenticate` where the
//! server sends them).

use std::sync::OnceLock;

use actix_web::HttpResponse;
use actix_web::http::header::ContentType;
use utoipa::OpenApi;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement};
use utoipa::openapi::{Content, Ref, RefOr, Response, Type};

use super::problem::Problem;
use super::routes::Operations;

/// The security scheme of a tenant's API key.
pub const TENANT_KEY: &str = "tenant_key";
/// The security scheme of the admin key.
pub const ADMIN_KEY: &str = "admin_key";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Dwell",
        description = "Long-running business processes as persistent actors whose logic is a \
            sandboxed WebAssembly component. A call is answered synchronously when the process \
            is quick and with `202` and a pollable request when it is not.\n\n\
            Every error is `application/problem+json` (RFC 9457). A path asked with a method it \
            does not serve answers `405` with an `Allow` header listing the methods it does; \
            an unknown path answers `404`."
    ),
    components(schemas(Problem)),
    tags(
        (name = "modules", description = "Process modules: versioned WebAssembly components"),
        (name = "actors", description = "Calls, events and inspection of actors"),
        (name = "requests", description = "Requests waiting for or holding a reply"),
        (name = "visibility", description = "Lists, turn history and process maps of many processes"),
        (name = "upgrades", description = "Live upgrades: move running actors to another module version"),
        (name = "tenants", description = "Admin: tenants and their API keys"),
        (name = "service", description = "Health, readiness and this document"),
    )
)]
struct Shared;

/// The whole document: the route table's operations and what they share.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = Shared::openapi();
    doc.merge(Operations::openapi());
    let components = doc.components.get_or_insert_with(Default::default);
    for (name, who) in [
        (
            TENANT_KEY,
            "a tenant's API key: modules, actors and requests of that tenant",
        ),
        (ADMIN_KEY, "the admin key: tenants and their keys"),
    ] {
        components.add_security_scheme(
            name,
            utoipa::openapi::security::SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(format!("`Authorization: Bearer <key>` with {who}")))
                    .build(),
            ),
        );
    }
    for item in doc.paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
        {
            add_shared_responses(op);
        }
    }
    doc
}

/// Which key an operation needs, from its `security` requirement.
fn needs(op: &Operation, scheme: &str) -> bool {
    let wanted = SecurityRequirement::new(scheme, Vec::<String>::new());
    op.security.iter().flatten().any(|s| *s == wanted)
}

/// The responses every authenticated operation can give (the key is checked, a tenant's
/// rate is counted, the store can fail), then every error response as problem+json.
fn add_shared_responses(op: &mut Operation) {
    let tenant = needs(op, TENANT_KEY);
    let admin = needs(op, ADMIN_KEY);
    let mut shared = Vec::new();
    if tenant || admin {
        shared.push(("401", "No key, or not a valid one."));
        shared.push((
            "500",
            "The server could not complete the operation; nothing was accepted.",
        ));
    }
    if tenant {
        shared.push((
            "403",
            "The admin key was used; this needs a tenant's API key.",
        ));
        shared.push((
            "429",
            "The tenant is over its request rate; retry after `Retry-After`.",
        ));
        shared.push((
            "421",
            "In a cluster: a request forwarded by another node (`dwell-forwarded`) reached a node that does not run the actor; nothing was accepted.",
        ));
    }
    if admin {
        shared.push(("403", "A tenant's key was used; this needs the admin key."));
    }
    for (status, description) in shared {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::T(Response::new(description)));
    }
    for (status, response) in op.responses.responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        if !status.starts_with(['4', '5']) {
            continue;
        }
        if response.content.is_empty() {
            response.content.insert(
                "application/problem+json".to_owned(),
                Content::new(Some(Ref::from_schema_name("Problem"))),
            );
        }
        let header = match status.as_str() {
            "429" => Some(("Retry-After", "Seconds to wait before retrying.")),
            "503" if tenant || admin => Some((
                "Retry-After",
                "Seconds to wait before retrying; nothing was accepted.",
            )),
            "401" => Some(("WWW-Authenticate", "`Bearer`.")),
            _ => None,
        };
        if let Some((name, description)) = header {
            response.headers.entry(name.to_owned()).or_insert_with(|| {
                HeaderBuilder::new()
                    .schema(utoipa::openapi::ObjectBuilder::new().schema_type(Type::String))
                    .description(Some(description))
                    .build()
            });
        }
    }
}

/// The document, serialized once.
fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| document().to_json().unwrap_or_default())
}

/// The OpenAPI document of this API.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    operation_id = "openapi",
    tag = "service",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document.", body = Object)),
)]
pub(super) async fn serve() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(ContentType::json())
        .body(document_json())
}
