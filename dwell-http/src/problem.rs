//! Errors as HTTP responses: every error is `application/problem+json` (RFC 9457), and
//! this is the one place that maps engine errors to status codes.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::domain::RefusalCode;
use dwell_engine as engine;

/// An error, as RFC 9457 problem details (`application/problem+json`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct Problem<'a> {
    /// A URI naming the kind of problem; stable, one per cause.
    #[serde(rename = "type")]
    #[schema(format = "uri", example = "https://dwell.dev/problems/not-found")]
    kind: String,
    /// A short summary of the kind of problem.
    title: &'a str,
    /// The HTTP status code.
    status: u16,
    /// What went wrong this time, for a human.
    detail: &'a str,
    /// The request this error is the outcome of (a failed call).
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

/// An API error: a status, a short stable slug, and a human-readable detail.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub slug: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub request_id: Option<String>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        slug: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            slug,
            title,
            detail: detail.into(),
            request_id: None,
            retry_after: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Malformed request",
            detail,
        )
    }

    /// A failure inside the server (logged here; the caller hears no details).
    pub fn internal(detail: impl Into<String>) -> Self {
        let detail = detail.into();
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the server could not complete the operation",
        )
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    pub fn too_large(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "Payload too large",
            detail,
        )
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            detail,
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }

    pub fn rate_limited(wait: std::time::Duration) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
            "this tenant is over its request rate; retry after the time in Retry-After",
        );
        e.retry_after = Some(wait.as_secs_f64().ceil().max(1.0) as u64);
        e
    }

    /// The process refused the request: its class decides the status.
    pub fn refused(code: RefusalCode, detail: impl Into<String>) -> Self {
        let (status, slug) = match code {
            RefusalCode::Invalid => (StatusCode::UNPROCESSABLE_ENTITY, "refused-invalid"),
            RefusalCode::NotFound => (StatusCode::NOT_FOUND, "refused-not-found"),
            RefusalCode::Conflict => (StatusCode::CONFLICT, "refused-conflict"),
            RefusalCode::FailedPrecondition => (
                StatusCode::PRECONDITION_FAILED,
                "refused-failed-precondition",
            ),
        };
        Self::new(status, slug, "Refused by the process", detail)
    }

    pub fn with_request(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.title, self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let body = Problem {
            kind: format!("https://dwell.dev/problems/{}", self.slug),
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
            request_id: self.request_id.as_deref(),
        };
        let mut resp = HttpResponse::build(self.status);
        resp.insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        ));
        if let Some(secs) = self.retry_after {
            resp.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        resp.body(serde_json::to_vec(&body).unwrap_or_default())
    }
}

impl From<engine::Error> for ApiError {
    fn from(e: engine::Error) -> Self {
        use engine::Error as E;
        match &e {
            E::UnknownModule(_) => ApiError::not_found(e.to_string()),
            E::ActorCompleted(_) => ApiError::new(
                StatusCode::CONFLICT,
                "actor-completed",
                "Process complete",
                e.to_string(),
            ),
            E::InvalidModule(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-module",
                "Invalid module",
                e.to_string(),
            ),
            E::IdempotencyConflict => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-conflict",
                "Idempotency-Key reused",
                e.to_string(),
            ),
            E::Refused(_) => ApiError::bad_request(e.to_string()),
            E::Quota(_) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "quota-exceeded",
                "Quota exceeded",
                e.to_string(),
            ),
            E::TenantExists(_) => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "Already exists",
                e.to_string(),
            ),
            E::UnknownTenant(_) => ApiError::not_found(e.to_string()),
            E::Misdirected { owner: Some(_) } => ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                "misdirected",
                "Misdirected request",
                format!(
                    "{e}; nothing was accepted here: send it there, or to any node without the dwell-forwarded header"
                ),
            ),
            E::Misdirected { owner: None } => {
                let mut e = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "partition-moving",
                    "Partition moving",
                    e.to_string(),
                );
                e.retry_after = Some(1);
                e
            }
            E::StorageFull => ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "storage-full",
                "Storage full",
                "the disk holding the data is full; nothing was accepted; retry once there is room",
            ),
            E::StorageUnavailable => {
                let mut e = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage-unavailable",
                    "Storage unavailable",
                    "the store is being reopened or reconnected, or this node no longer owns the data; nothing was accepted; retry",
                );
                e.retry_after = Some(1);
                e
            }
            E::Overloaded => {
                let mut e = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    "Overloaded",
                    "the server is at capacity and accepted nothing; retry shortly",
                );
                e.retry_after = Some(1);
                e
            }
            E::Storage(_) | E::Setup(_) | E::Io(_) => {
                tracing::error!(error = %e, "internal error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal error",
                    "the server could not complete the operation; nothing was accepted",
                )
            }
        }
    }
}
