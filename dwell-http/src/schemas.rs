//! The wire shapes of the API for its OpenAPI document: request and response bodies,
//! path parameters and request headers. The handlers build their JSON with `json!`;
//! these types only describe it (they are never built, hence `dead_code` is allowed),
//! and the `openapi` end-to-end test checks real responses against them.
//! Long because it is every shape of the API, one small type each.
#![allow(dead_code)]

use serde::Serialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

// ---- path parameters ----

/// `{name}` of a module.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ModuleName {
    /// The module's name: 1 to 128 of `A-Z a-z 0-9 _ . : -`, not only dots.
    #[param(
        pattern = r"^[A-Za-z0-9_.:-]*[A-Za-z0-9_:-][A-Za-z0-9_.:-]*$",
        min_length = 1,
        max_length = 128
    )]
    name: String,
}

/// `{module}/{key}` of an actor.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ActorPath {
    /// The actor's module: 1 to 128 of `A-Z a-z 0-9 _ . : -`, not only dots.
    #[param(
        pattern = r"^[A-Za-z0-9_.:-]*[A-Za-z0-9_:-][A-Za-z0-9_.:-]*$",
        min_length = 1,
        max_length = 128
    )]
    module: String,
    /// The actor's key within its module: 1 to 128 of `A-Z a-z 0-9 _ . : -`, not only dots.
    #[param(
        pattern = r"^[A-Za-z0-9_.:-]*[A-Za-z0-9_:-][A-Za-z0-9_.:-]*$",
        min_length = 1,
        max_length = 128
    )]
    key: String,
}

/// `{module}/{key}/dead-letters/{seq}` of a dead letter.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct DeadLetterPath {
    /// The actor's module.
    #[param(
        pattern = r"^[A-Za-z0-9_.:-]*[A-Za-z0-9_:-][A-Za-z0-9_.:-]*$",
        min_length = 1,
        max_length = 128
    )]
    module: String,
    /// The actor's key.
    #[param(
        pattern = r"^[A-Za-z0-9_.:-]*[A-Za-z0-9_:-][A-Za-z0-9_.:-]*$",
        min_length = 1,
        max_length = 128
    )]
    key: String,
    /// The dead letter's mailbox sequence number (`seq` in the actor's `dead_letters`).
    seq: u64,
}

/// `{name}/upgrades/{id}` of an upgrade run.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct UpgradePath {
    /// The module's name.
    #[param(
        pattern = r"^[A-Za-z0-9_.:-]*[A-Za-z0-9_:-][A-Za-z0-9_.:-]*$",
        min_length = 1,
        max_length = 128
    )]
    name: String,
    /// The run's id (`up_…`).
    id: String,
}

/// `{id}` of a request.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RequestPath {
    /// The request id: 32 lower-case hex digits, from `request_id` or `Location`.
    #[param(pattern = "^[0-9a-f]{32}$")]
    id: String,
}

/// `{name}` of a tenant.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TenantName {
    /// The tenant's name: 1 to 128 of `A-Z a-z 0-9 _ . : -`, not only dots.
    #[param(
        pattern = r"^[A-Za-z0-9_.:-]*[A-Za-z0-9_:-][A-Za-z0-9_.:-]*$",
        min_length = 1,
        max_length = 128
    )]
    name: String,
}

/// `{name}/keys/{id}` of an API key.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct KeyPath {
    /// The tenant's name.
    #[param(
        pattern = r"^[A-Za-z0-9_.:-]*[A-Za-z0-9_:-][A-Za-z0-9_.:-]*$",
        min_length = 1,
        max_length = 128
    )]
    name: String,
    /// The key's id, as issued (`id`) and listed in the tenant's `keys`.
    id: String,
}

// ---- request headers ----

/// The headers of a call.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct CallHeaders {
    /// RFC 7240: `wait=N` waits up to N seconds for the reply (default and maximum from
    /// the server's settings) before answering `202`; `respond-async` answers `202` as
    /// soon as the call is durable.
    #[param(rename = "Prefer", nullable = false, example = "wait=5")]
    prefer: Option<String>,
    /// 1 to 255 visible ASCII characters. A repeat within the retention window (24 h)
    /// answers for the first request instead of sending a second message; reused with
    /// another body: `422`.
    #[param(
        rename = "Idempotency-Key",
        nullable = false,
        pattern = r"^[\x21-\x7E]{1,255}$"
    )]
    idempotency_key: Option<String>,
    /// An http(s) URL (at most 2048 visible ASCII characters) the result is POSTed to once
    /// the request settles, signed per Standard Webhooks (`webhook-id`,
    /// `webhook-timestamp`, `webhook-signature`) and retried with backoff. Its host must
    /// be on the server's or the tenant's outbound allowlist (else `400`).
    #[param(
        rename = "Callback-Url",
        nullable = false,
        pattern = r"^https?://[\x21-\x7E]+$",
        max_length = 2048,
        example = "https://example.com/hooks/dwell"
    )]
    callback_url: Option<String>,
}

/// The headers of an event.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct EventHeaders {
    /// 1 to 255 visible ASCII characters. A repeat within the retention window (24 h)
    /// is acknowledged (`duplicate: true`) without a second message.
    #[param(
        rename = "Idempotency-Key",
        nullable = false,
        pattern = r"^[\x21-\x7E]{1,255}$"
    )]
    idempotency_key: Option<String>,
}

/// The headers of a request lookup.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct PollHeaders {
    /// RFC 7240 `wait=N`: long-poll, answering as soon as the request settles or after
    /// N seconds (at most the server's maximum wait). Without it the answer is immediate.
    #[param(rename = "Prefer", nullable = false, example = "wait=10")]
    prefer: Option<String>,
}

// ---- bodies ----

/// A WebAssembly component (`PUT /v1/modules/{name}`).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct ComponentBytes(Vec<u8>);

/// `GET /healthz`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "ok"}))]
pub struct Health {
    /// Always `ok`: the process serves HTTP.
    status: String,
}

/// `GET /readyz`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": "ready"}))]
pub struct Ready {
    /// `ready`: the server accepts calls.
    status: String,
}

/// One version of a module.
#[derive(Serialize, ToSchema)]
pub struct ModuleVersion {
    /// 1 for the first version, one more for each new digest.
    version: u32,
    /// The component's digest.
    #[schema(example = "sha256:4f1c…")]
    digest: String,
    /// The component's size in bytes.
    size: u64,
    /// When this version was stored (Unix milliseconds).
    created_ms: u64,
}

/// The version a deploy stored or found.
#[derive(Serialize, ToSchema)]
pub struct DeployedModule {
    name: String,
    version: u32,
    #[schema(example = "sha256:4f1c…")]
    digest: String,
    size: u64,
    created_ms: u64,
    /// `true`: a new version (`201`); `false`: the latest version already has these bytes
    /// (`200`).
    created: bool,
}

/// A module with its latest version.
#[derive(Serialize, ToSchema)]
pub struct ModuleSummary {
    name: String,
    /// The latest version.
    version: u32,
    digest: String,
    size: u64,
    created_ms: u64,
    /// How many versions the module has.
    versions: u64,
}

#[derive(Serialize, ToSchema)]
pub struct ModuleList {
    modules: Vec<ModuleSummary>,
}

/// A module and all its versions, oldest first.
#[derive(Serialize, ToSchema)]
pub struct ModuleVersions {
    name: String,
    versions: Vec<ModuleVersion>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    Pending,
    Completed,
    Failed,
}

/// A request that has no reply yet: poll `Location` (`GET /v1/requests/{id}`).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"request_id": "5f0c1d2e3a4b5c6d7e8f90a1b2c3d4e1", "status": "pending"}))]
pub struct PendingRequest {
    #[schema(pattern = "^[0-9a-f]{32}$")]
    request_id: String,
    /// `pending`.
    status: RequestStatus,
}

/// An event, durable.
#[derive(Serialize, ToSchema)]
pub struct EventAccepted {
    /// `accepted`.
    status: String,
    /// The event's sequence number in the actor's mailbox.
    seq: u64,
    /// `true`: the `Idempotency-Key` was seen before; nothing new was sent.
    duplicate: bool,
}

/// A dead letter back in its mailbox; a request gets a new request id.
#[derive(Serialize, ToSchema)]
pub struct Retried {
    /// The new request, when the dead letter was a request.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, pattern = "^[0-9a-f]{32}$")]
    request_id: Option<String>,
    /// `pending` for a request, `accepted` otherwise.
    status: String,
}

/// The actor a request was sent to.
#[derive(Serialize, ToSchema)]
pub struct ActorRef {
    module: String,
    key: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallbackState {
    /// The request has not settled yet.
    WaitingForResult,
    /// Being delivered (retried with backoff).
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed.
    GaveUp,
}

/// Delivery of a request's `Callback-Url`.
#[derive(Serialize, ToSchema)]
pub struct CallbackView {
    url: String,
    status: CallbackState,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    attempts: Option<u32>,
    /// When it was delivered (Unix milliseconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    at_ms: Option<u64>,
    /// Why the last attempt failed (`gave_up`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    error: Option<String>,
}

/// Why a process refused a request.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Refusal {
    Invalid,
    NotFound,
    Conflict,
    FailedPrecondition,
}

/// A request and its result.
#[derive(Serialize, ToSchema)]
pub struct RequestView {
    #[schema(pattern = "^[0-9a-f]{32}$")]
    request_id: String,
    #[schema(required = true)]
    actor: Option<ActorRef>,
    status: RequestStatus,
    created_ms: u64,
    /// When it completed or failed (Unix milliseconds).
    #[schema(required = true)]
    settled_ms: Option<u64>,
    /// The reply (`completed`), as JSON; a reply without a JSON form is given as
    /// base64 MessagePack.
    #[serde(skip_serializing_if = "Option::is_none")]
    reply: Option<Value>,
    /// Why it failed (`failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    error: Option<String>,
    /// Set when the process refused the request (`failed`): the class of the refusal,
    /// which a synchronous caller saw as 422, 404, 409 or 412.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    refusal: Option<Refusal>,
    /// Present when the call had a `Callback-Url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    callback: Option<CallbackView>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActorStatus {
    Active,
    /// The process completed; it takes no more messages.
    Completed,
}

/// A pending timer of an actor.
#[derive(Serialize, ToSchema)]
pub struct TimerView {
    name: String,
    /// When it fires (Unix milliseconds).
    due_ms: u64,
}

/// An outbound HTTP call of an actor not yet answered.
#[derive(Serialize, ToSchema)]
pub struct OutboundCallView {
    call_id: String,
    method: String,
    url: String,
    attempts: u32,
    next_attempt_ms: u64,
    #[schema(required = true)]
    last_error: Option<String>,
}

/// A message that failed every attempt.
#[derive(Serialize, ToSchema)]
pub struct DeadLetterView {
    /// Its mailbox sequence number (for `…/dead-letters/{seq}/retry`).
    seq: u64,
    error: String,
    attempts: u32,
    at_ms: u64,
    /// The message, as JSON.
    body: Value,
}

/// An actor: status, version, state and what it waits for.
#[derive(Serialize, ToSchema)]
pub struct ActorView {
    module: String,
    key: String,
    status: ActorStatus,
    /// The module version the actor runs.
    version: u32,
    /// The step the process is in: the last one a turn named (`ctx.step`, else a
    /// message's `type` field); `null` before any.
    #[schema(required = true)]
    step: Option<String>,
    digest: String,
    /// The state snapshot as JSON (`null` before the first turn).
    #[schema(required = true)]
    state: Option<Value>,
    /// Messages not yet handled.
    mailbox_depth: u64,
    /// Turns run so far.
    turns: u64,
    timers: Vec<TimerView>,
    outbound_calls: Vec<OutboundCallView>,
    dead_letter_count: u64,
    dead_letters: Vec<DeadLetterView>,
    created_ms: u64,
    updated_ms: u64,
}

/// The quotas in force for a tenant.
#[derive(Serialize, ToSchema)]
pub struct Quotas {
    max_modules: u64,
    max_module_bytes: u64,
    max_actors: u64,
    max_state_bytes: u64,
    max_message_bytes: u64,
    /// CPU time per turn.
    turn_time_ms: u64,
    memory_mb: u64,
    timers_per_actor: u64,
    /// 0 = unlimited.
    requests_per_second: u64,
    burst: u64,
    /// Turns of the tenant executing at once.
    concurrent_turns: u64,
    /// Turn records kept per actor (0: no history).
    history_turns: u64,
    /// Turn records older than this many seconds are not shown.
    history_age_s: u64,
}

/// Per-tenant quota overrides; `null` (or absent) means the server default. Each is at
/// most 2^53 − 1, the largest integer a JSON number holds exactly.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaOverrides {
    #[schema(maximum = 9007199254740991_f64)]
    max_modules: Option<u64>,
    #[schema(maximum = 9007199254740991_f64)]
    max_module_bytes: Option<u64>,
    #[schema(maximum = 9007199254740991_f64)]
    max_actors: Option<u64>,
    #[schema(maximum = 9007199254740991_f64)]
    max_state_bytes: Option<u64>,
    #[schema(maximum = 9007199254740991_f64)]
    max_message_bytes: Option<u64>,
    #[schema(maximum = 9007199254740991_f64)]
    turn_time_ms: Option<u64>,
    #[schema(maximum = 9007199254740991_f64)]
    memory_mb: Option<u64>,
    #[schema(maximum = 9007199254740991_f64)]
    timers_per_actor: Option<u64>,
    #[schema(maximum = 9007199254740991_f64)]
    requests_per_second: Option<u64>,
    #[schema(maximum = 9007199254740991_f64)]
    burst: Option<u64>,
    #[schema(maximum = 9007199254740991_f64)]
    concurrent_turns: Option<u64>,
    /// At most 100000.
    #[schema(maximum = 9007199254740991_f64)]
    history_turns: Option<u64>,
    #[schema(maximum = 9007199254740991_f64)]
    history_age_s: Option<u64>,
}

/// A tenant.
#[derive(Serialize, ToSchema)]
pub struct Tenant {
    name: String,
    created_ms: u64,
    /// The quotas in force (server defaults with the overrides applied).
    quotas: Quotas,
    overrides: QuotaOverrides,
    /// Outbound destinations the tenant's guests may reach, besides the server's.
    allow_http: Vec<HostRule>,
    /// Ids of the tenant's API keys.
    keys: Vec<String>,
    /// How many actors the tenant has.
    actors: u64,
    /// The callback signing secret, shown only when created or rotated.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, example = "whsec_…")]
    webhook_secret: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TenantList {
    tenants: Vec<Tenant>,
}

/// A cluster node as the database sees it.
#[derive(Serialize, ToSchema)]
pub struct ClusterNode {
    node: String,
    /// Where other nodes reach it (`host:port`).
    advertise: String,
    /// Its lease has not run out.
    live: bool,
    /// Milliseconds left on its lease (negative: ran out that long ago).
    lease_left_ms: i64,
}

/// One partition's owner.
#[derive(Serialize, ToSchema)]
pub struct PartitionOwner {
    partition: u32,
    /// Goes up by one at each claim: commits of an earlier owner are refused.
    epoch: i64,
    /// The node that claimed it last (`""`: never claimed, or handed back).
    node: String,
    /// That node's lease has not run out.
    live: bool,
}

/// The cluster this node belongs to.
#[derive(Serialize, ToSchema)]
pub struct Cluster {
    /// `single` (one node, embedded or PostgreSQL store) or `cluster`.
    #[schema(example = "cluster")]
    mode: String,
    /// This node's id (`""` on a single node).
    node: String,
    /// The cluster's fixed partition count (1 on a single node).
    partitions: u32,
    /// Partitions this node holds.
    held: u32,
    /// This node takes new work (its lease is safely ahead).
    serving: bool,
    /// Commits this node's fence refused (it no longer held a partition they wrote).
    fenced_commits: u64,
    nodes: Vec<ClusterNode>,
    owners: Vec<PartitionOwner>,
}

/// A new tenant.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// 1 to 128 of `A-Z a-z 0-9 _ . : -`, not only dots.
    #[schema(
        pattern = r"^[A-Za-z0-9_.:-]*[A-Za-z0-9_:-][A-Za-z0-9_.:-]*$",
        min_length = 1,
        max_length = 128
    )]
    name: String,
}

/// Changes to a tenant; absent fields stay as they are.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantPatch {
    /// Overrides to set; the ones given replace the tenant's, the others stay.
    #[serde(skip_serializing_if = "Option::is_none")]
    quotas: Option<QuotaOverrides>,
    /// Replaces the allowlist of outbound destinations.
    #[serde(skip_serializing_if = "Option::is_none")]
    allow_http: Option<Vec<HostRule>>,
    /// Issue a new callback signing secret (answered once, in `webhook_secret`).
    #[serde(default)]
    rotate_webhook_secret: bool,
}

/// An outbound destination: `host` or `host:port` (an IPv6 address in brackets), 1 to 253
/// of `A-Z a-z 0-9 . _ : - [ ]`.
#[derive(Serialize, ToSchema)]
#[schema(
    pattern = r"^[A-Za-z0-9._:\[\]-]{1,253}$",
    example = "api.example.com:8443"
)]
pub struct HostRule(String);

/// A new API key, shown once.
#[derive(Serialize, ToSchema)]
pub struct IssuedKey {
    id: String,
    /// The bearer token; only its SHA-256 is stored.
    key: String,
}

// ---- visibility ----

/// `{module}/{key}/history/{seq}` of a turn.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TurnPath {
    /// The actor's module.
    #[param(
        pattern = r"^[A-Za-z0-9_.:-]*[A-Za-z0-9_:-][A-Za-z0-9_.:-]*$",
        min_length = 1,
        max_length = 128
    )]
    module: String,
    /// The actor's key.
    #[param(
        pattern = r"^[A-Za-z0-9_.:-]*[A-Za-z0-9_:-][A-Za-z0-9_.:-]*$",
        min_length = 1,
        max_length = 128
    )]
    key: String,
    /// The turn: the sequence number of the message it handled.
    #[param(minimum = 0)]
    seq: u64,
}

/// `?limit=` of a list.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page (default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
}

/// `?cursor=` of the turn history: the `next_cursor` of the page before.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Turns before this one (the `next_cursor` of the page before).
    #[param(pattern = "^[0-9]{1,15}$")]
    cursor: Option<String>,
}

/// Filters of the actor list.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ActorQuery {
    /// Only this module's actors.
    #[param(
        pattern = r"^[A-Za-z0-9_.:-]*[A-Za-z0-9_:-][A-Za-z0-9_.:-]*$",
        min_length = 1,
        max_length = 128
    )]
    module: Option<String>,
    /// Only active or only completed actors.
    #[param(inline)]
    status: Option<ActorStatusName>,
    /// Only actors running this module version.
    #[param(minimum = 0, maximum = 4294967295u64)]
    version: Option<u64>,
    /// Only actors in this step (exact label).
    step: Option<String>,
    /// Only actors updated after this time (Unix milliseconds).
    #[param(minimum = 0, maximum = 9007199254740991u64)]
    updated_after: Option<u64>,
    /// Where to go on from: the `next_cursor` of the page before (opaque; any value is
    /// a position in the list, an empty one its start).
    cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActorStatusName {
    Active,
    Completed,
}

/// Filter of the request list.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RequestQuery {
    /// Only requests in this status.
    #[param(inline)]
    status: Option<RequestStatusName>,
    /// Where to go on from: the `next_cursor` of the page before.
    #[param(pattern = "^[0-9a-f]{32}$")]
    cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatusName {
    Pending,
    Completed,
    Failed,
}

/// One actor in a list.
#[derive(Serialize, ToSchema)]
pub struct ActorSummary {
    module: String,
    key: String,
    #[schema(inline)]
    status: ActorStatusName,
    version: u32,
    /// The step the process is in (`null` before any).
    #[schema(required = true)]
    step: Option<String>,
    turns: u64,
    /// Pending timers.
    timers: u32,
    dead_letter_count: u64,
    created_ms: u64,
    updated_ms: u64,
}

/// A page of actors.
#[derive(Serialize, ToSchema)]
pub struct ActorList {
    items: Vec<ActorSummary>,
    /// The cursor of the next page; `null` on the last.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

/// A page of requests.
#[derive(Serialize, ToSchema)]
pub struct RequestList {
    items: Vec<RequestView>,
    /// The cursor of the next page; `null` on the last.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

/// The message a turn handled.
#[derive(Serialize, ToSchema)]
pub struct TurnMessage {
    /// `call`, `event`, `ask`, `timer`, `http_result` or `ask_reply`.
    kind: String,
    /// The body's `type` field, the timer's name, the call id or the correlation.
    #[schema(required = true)]
    label: Option<String>,
    /// The body as JSON; `null` when it was cut (see `body_truncated`).
    #[schema(required = true)]
    body: Option<Value>,
    body_bytes: u64,
    /// Only the first 1024 bytes of the body were kept.
    body_truncated: bool,
    /// The request or the asking actor.
    #[schema(required = true)]
    from: Option<String>,
}

/// An effect of a turn (bodies are not kept).
#[derive(Serialize, ToSchema)]
pub struct TurnEffect {
    /// `reply`, `send`, `ask`, `set_timer`, `cancel_timer`, `http_call` or `complete`.
    kind: String,
    /// Reply, send, ask: where to.
    to: Option<String>,
    /// Reply: whether it answered with a value (else an error).
    ok: Option<bool>,
    correlation: Option<String>,
    /// Timers: the name.
    name: Option<String>,
    due_ms: Option<u64>,
    call_id: Option<String>,
    method: Option<String>,
    url: Option<String>,
}

/// How a turn ended.
#[derive(Serialize, ToSchema)]
pub struct TurnOutcome {
    /// `ok`, `refused` or `dead_letter`.
    status: String,
    #[schema(required = true)]
    reason: Option<String>,
    /// Dead letter: attempts made.
    attempts: Option<u32>,
}

/// One committed turn.
#[derive(Serialize, ToSchema)]
pub struct Turn {
    /// The sequence number of the message it handled.
    seq: u64,
    /// When it committed (Unix milliseconds).
    at_ms: u64,
    /// How long the guest ran.
    duration_us: u64,
    message: TurnMessage,
    /// The step the process is in after it.
    #[schema(required = true)]
    step: Option<String>,
    effects: Vec<TurnEffect>,
    outcome: TurnOutcome,
    /// The state's size after it (`null`: not known).
    #[schema(required = true)]
    state_bytes: Option<u64>,
    /// Whether it wrote a state (refused and dead-lettered turns do not).
    state_changed: bool,
    /// The W3C trace the turn ran in (32 hex digits; `null` when its message carried no
    /// trace context).
    #[schema(required = true)]
    trace_id: Option<String>,
    /// The turn's span in that trace (16 hex digits), as exported with `--otlp-endpoint`.
    #[schema(required = true)]
    span_id: Option<String>,
}

/// A page of turns, newest first.
#[derive(Serialize, ToSchema)]
pub struct HistoryPage {
    items: Vec<Turn>,
    /// The cursor of the next (older) page; `null` on the last.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

/// One change between two states (JSON Pointer paths).
#[derive(Serialize, ToSchema)]
pub struct DiffOp {
    /// `add`, `remove` or `replace`.
    op: String,
    path: String,
    /// The new value (add, replace).
    value: Option<Value>,
    /// The old value (remove, replace).
    old: Option<Value>,
}

/// A turn with the state as of it and before it.
#[derive(Serialize, ToSchema)]
pub struct TurnDetail {
    #[serde(flatten)]
    turn: Turn,
    /// The state after this turn (`null` if the actor had none, or if not known).
    #[schema(required = true)]
    state: Option<Value>,
    /// Whether the history kept the state after this turn (only the most recent are).
    state_known: bool,
    #[schema(required = true)]
    previous_state: Option<Value>,
    previous_known: bool,
    /// From the previous state to this one; `null` unless both are known.
    #[schema(required = true)]
    diff: Option<Vec<DiffOp>>,
}

/// A step of the process map.
#[derive(Serialize, ToSchema)]
pub struct MapNode {
    id: String,
    label: String,
    /// Times an actor entered this step (in the history kept).
    count: u64,
    /// Live actors in this step now.
    waiting: u64,
}

/// Actors went from one step directly to another.
#[derive(Serialize, ToSchema)]
pub struct MapEdge {
    from: String,
    to: String,
    count: u64,
    /// Time between entering the two steps.
    p50_ms: u64,
    p95_ms: u64,
}

/// A directly-follows graph of a module's steps, mined from its actors' history.
#[derive(Serialize, ToSchema)]
pub struct ProcessMapView {
    module: String,
    nodes: Vec<MapNode>,
    edges: Vec<MapEdge>,
    /// Actors whose history was read.
    actors: u64,
    /// More actors exist than were read (at most 5000 are).
    truncated: bool,
}

// ---- live upgrades ----

/// `"all"`: every actor on the `from` version.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SelectAll {
    All,
}

/// Which actors on the `from` version a run takes.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum UpgradeSelect {
    All(SelectAll),
    /// These actors (by key), those of them on `from`.
    Keys {
        #[schema(max_items = 10000)]
        keys: Vec<String>,
    },
    /// A stable share of them, by a hash of the key.
    Percent {
        #[schema(minimum = 0, maximum = 100)]
        percent: u8,
    },
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UpgradeMode {
    DryRun,
    Apply,
    Canary,
}

/// When a canary rolls back (every field has a default).
#[derive(Serialize, ToSchema)]
pub struct CanaryPolicy {
    /// Share of the selected actors moved first (default 10).
    #[schema(minimum = 0, maximum = 100, nullable = false)]
    percent: Option<u8>,
    /// Turns watched per moved actor (default 3).
    #[schema(minimum = 0, maximum = 1000, nullable = false)]
    turns: Option<u32>,
    /// Failed turns over watched turns above this: roll back (default 0.2).
    #[schema(minimum = 0, maximum = 1, nullable = false)]
    max_failure_ratio: Option<f64>,
    /// Watch at most this many seconds, then decide (default 300; at most a week).
    #[schema(minimum = 0, maximum = 604800, nullable = false)]
    wait_s: Option<u64>,
}

/// `POST /v1/modules/{name}/upgrades`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"from": 1, "to": 2, "select": "all", "mode": "dry-run"}))]
pub struct UpgradePlan {
    /// The version the actors are on.
    #[schema(minimum = 0, maximum = 4294967295_u64)]
    from: u32,
    /// The version to move them to.
    #[schema(minimum = 0, maximum = 4294967295_u64)]
    to: u32,
    select: UpgradeSelect,
    mode: UpgradeMode,
    /// Apply although the dry run found problems (default false).
    #[schema(nullable = false)]
    force: Option<bool>,
    #[schema(nullable = false)]
    canary: Option<CanaryPolicy>,
    /// Recorded turns replayed per actor, most recent first (default 10).
    #[schema(minimum = 0, maximum = 1000, nullable = false)]
    replay_turns: Option<u32>,
}

/// One recorded turn replayed on the new version.
#[derive(Serialize, ToSchema)]
pub struct UpgradeTurn {
    seq: u64,
    /// The message, as the history names it (`call check_in`, `timer open`…).
    message: String,
    /// What the old version did: `ok`, `refused` or `dead_letter`.
    was: String,
    /// What the new one does: `ok`, `refused: …`, `trapped: …` or `not replayed: …`.
    now: String,
    /// The state after it equals the recorded one, migrated (when both are known).
    state_same: Option<bool>,
    /// Its effects match the recorded ones.
    effects_same: Option<bool>,
}

/// One actor in a dry run.
#[derive(Serialize, ToSchema)]
pub struct UpgradeActor {
    key: String,
    /// `migrated`, `unchanged` (the bytes move as they are) or `failed: …`.
    migrate: String,
    /// What would go wrong, in words.
    problem: Option<String>,
    turns: Vec<UpgradeTurn>,
}

/// A canary's watch.
#[derive(Serialize, ToSchema)]
pub struct CanaryReport {
    moved: u64,
    watched_turns: u64,
    failed_turns: u64,
    /// `passed`, `rolled back: …`, or empty while watching.
    verdict: String,
}

/// What the dry run found and what the run did.
#[derive(Serialize, ToSchema)]
pub struct UpgradeReport {
    /// Actors on `from` that the selection took.
    selected: u64,
    replayed_turns: u64,
    not_replayed_turns: u64,
    migrate_failed: u64,
    would_trap: u64,
    would_refuse: u64,
    state_differs: u64,
    effects_differ: u64,
    /// Actors with a problem: migrate failed, a turn would trap or newly refuse.
    problems: u64,
    /// Per actor, those with problems first (at most 200).
    actors: Vec<UpgradeActor>,
    moved: u64,
    skipped: u64,
    rolled_back: u64,
    /// Moved actors a rollback left on the new version (turns changed their state).
    kept: u64,
    canary: Option<CanaryReport>,
}

/// An upgrade run.
#[derive(Serialize, ToSchema)]
pub struct UpgradeRun {
    #[schema(example = "up_1f3a9c0d2b4e6f70")]
    id: String,
    module: String,
    plan: UpgradePlan,
    /// `planning` (the dry run of more than 1000 actors, in the background), `planned`
    /// (a dry run), `refused`, `applying`, `watching`, `rolling_back`, `completed` or
    /// `rolled_back`.
    status: String,
    /// Why it was refused or rolled back.
    reason: Option<String>,
    created_ms: u64,
    updated_ms: u64,
    watch_since_ms: Option<u64>,
    report: UpgradeReport,
}

/// `GET /v1/modules/{name}/upgrades`: every run, newest first, in one page.
#[derive(Serialize, ToSchema)]
pub struct UpgradeRunList {
    items: Vec<UpgradeRun>,
    /// Always null.
    next_cursor: Option<String>,
}

/// Run a dead letter on another version of its actor's module.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HotfixRequest {
    /// The version to run it on (the actor's state is migrated to it).
    #[schema(minimum = 0, maximum = 4294967295_u64)]
    version: u32,
    /// Only show what it would do (default false: move the actor and retry).
    #[schema(nullable = false)]
    dry_run: Option<bool>,
}

/// What a dead letter would do on another version; nothing was performed.
#[derive(Serialize, ToSchema)]
pub struct HotfixDryRun {
    dry_run: bool,
    version: u32,
    /// `migrated`, `unchanged`, `not needed` (already on it) or `failed: …`.
    migrate: String,
    /// `ok`, `refused: …` or `trapped: …`.
    outcome: String,
    /// The state after the turn, as JSON, when it went through.
    state: Option<Value>,
    /// Its effects, as the history shows them.
    effects: Vec<Value>,
}
