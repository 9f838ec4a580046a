//! Distributed tracing out of the node: OpenTelemetry spans exported over OTLP/HTTP
//! (protobuf) when `--otlp-endpoint` is set, and the W3C `traceparent` header on what
//! the node sends out (guests' HTTP calls, callbacks).
//!
//! The trace context itself travels in the records ([`dwell_types::TraceParent`] on
//! envelopes, HTTP call specs and requests), so it survives restarts and retries; this
//! module only turns finished pieces of work into spans. A span is exported when its
//! work is done, with the id the context already gave it: [`Chosen`] hands the SDK that
//! id, so that a turn's span is the parent the writer stamped on what the turn caused.
//! Without an endpoint nothing here costs more than a relaxed atomic load.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use dwell_types::TraceParent;
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
    Tracer as _,
};
use opentelemetry::{Context, KeyValue, trace::Span as _};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SdkTracer, SdkTracerProvider};

pub use opentelemetry::KeyValue as Attribute;
pub use opentelemetry::trace::SpanKind as Kind;

struct Export {
    tracer: SdkTracer,
    provider: SdkTracerProvider,
    /// The share of new traces that are sampled.
    ratio: f64,
}

static EXPORT: OnceLock<Export> = OnceLock::new();

/// Whether spans are exported (an endpoint was configured).
pub fn enabled() -> bool {
    EXPORT.get().is_some()
}

/// Export spans to the OTLP/HTTP collector at `endpoint` (its base, e.g.
/// `http://127.0.0.1:4318`, or the full `…/v1/traces`) as service `service`, sampling
/// `ratio` of the traces the node starts. Once per process; spans are batched (the SDK's
/// `OTEL_BSP_*` variables tune the batches).
pub fn install(endpoint: &str, service: &str, ratio: f64) -> Result<(), String> {
    let url = if endpoint.trim_end_matches('/').ends_with("/v1/traces") {
        endpoint.to_owned()
    } else {
        format!("{}/v1/traces", endpoint.trim_end_matches('/'))
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(Collector::new())
        .with_endpoint(url)
        .build()
        .map_err(|e| format!("OTLP exporter: {e}"))?;
    let provider = SdkTracerProvider::builder()
        .with_id_generator(Chosen::default())
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service.to_owned())
                .build(),
        )
        .build();
    let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, "dwell");
    EXPORT
        .set(Export {
            tracer,
            provider,
            ratio,
        })
        .map_err(|_| "tracing export is already installed".to_owned())
}

/// The context of a trace the node starts (a call that brought none): sampled with the
/// configured ratio, so a trace is kept or dropped whole, downstream included (the
/// `traceparent` the node sends carries the decision).
pub fn new_trace() -> TraceParent {
    let ratio = EXPORT.get().map_or(0.0, |e| e.ratio);
    TraceParent {
        sampled: ratio >= 1.0 || rand::random::<f64>() < ratio,
        ..TraceParent::root()
    }
}

/// Send what is batched and stop exporting (at shutdown).
pub fn shutdown() {
    if let Some(e) = EXPORT.get()
        && let Err(err) = e.provider.shutdown()
    {
        tracing::warn!(error = %err, "flushing spans at shutdown");
    }
}

/// A finished piece of work, exported as one span.
pub struct Finished {
    pub name: String,
    pub kind: SpanKind,
    /// The span's own context (trace and span id).
    pub context: TraceParent,
    /// The span it belongs under, in the same trace (`None`: the trace's root).
    pub parent: Option<u64>,
    pub took: Duration,
    pub attributes: Vec<KeyValue>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// Export `span` (if export is on and the trace is sampled).
pub fn export(span: Finished) {
    let Some(e) = EXPORT.get() else { return };
    if !span.context.sampled {
        return;
    }
    let end = SystemTime::now();
    let start = end.checked_sub(span.took).unwrap_or(end);
    let parent = match span.parent {
        Some(p) => Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(span.context.trace_id),
            SpanId::from(p),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        )),
        None => Context::new(),
    };
    let builder = e
        .tracer
        .span_builder(span.name)
        .with_kind(span.kind)
        .with_start_time(start)
        .with_attributes(span.attributes);
    CHOSEN.with(|c| c.set(Some(span.context)));
    let mut s = e.tracer.build_with_context(builder, &parent);
    CHOSEN.with(|c| c.set(None));
    if let Some(error) = span.error {
        s.set_status(Status::error(error));
    }
    s.end_with_timestamp(end);
}

thread_local! {
    /// The ids the next span built on this thread gets (see [`export`]).
    static CHOSEN: Cell<Option<TraceParent>> = const { Cell::new(None) };
}

/// The SDK's id source: the ids [`export`] chose, else random ones.
#[derive(Debug, Default)]
struct Chosen(RandomIdGenerator);

impl IdGenerator for Chosen {
    fn new_trace_id(&self) -> TraceId {
        match CHOSEN.with(Cell::get) {
            Some(c) => TraceId::from(c.trace_id),
            None => self.0.new_trace_id(),
        }
    }

    fn new_span_id(&self) -> SpanId {
        match CHOSEN.with(Cell::get) {
            Some(c) => SpanId::from(c.span_id),
            None => self.0.new_span_id(),
        }
    }
}

/// The exporter's HTTP client: ureq, blocking, on the SDK's own export thread.
struct Collector(ureq::Agent);

impl Collector {
    fn new() -> Collector {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .new_agent();
        Collector(agent)
    }
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Collector")
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for Collector {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> Result<
        opentelemetry_http::Response<opentelemetry_http::Bytes>,
        opentelemetry_http::HttpError,
    > {
        let (parts, body) = request.into_parts();
        let request = ureq::http::Request::from_parts(parts, body.to_vec());
        let mut response = self.0.run(request)?;
        let status = response.status();
        let body = response
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()?;
        Ok(opentelemetry_http::Response::builder()
            .status(status)
            .body(body.into())?)
    }
}
