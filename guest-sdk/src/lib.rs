//! `dwell-sdk`: write a Dwell process module in plain Rust.
//!
//! A guest author implements [`Actor`] for a serde-serialisable state type and exports it
//! with [`export_actor!`]. The SDK owns everything below that line: the WIT bindings, the
//! MessagePack encoding of state and messages (rmp-serde), and the effect calls on
//! [`Context`]. Guest code never sees raw bytes or WIT types.
//!
//! ```ignore
//! use dwell_sdk::prelude::*;
//!
//! #[derive(Default, Serialize, Deserialize)]
//! struct Counter { total: i64 }
//!
//! #[derive(Deserialize)]
//! struct Add { add: i64 }
//!
//! impl Actor for Counter {
//!     type Input = Add;
//!     fn handle(&mut self, ctx: &mut Context, msg: Message<Add>) -> Result<(), Error> {
//!         match msg {
//!             Message::Request { reply, body } => {
//!                 self.total += body.add;
//!                 ctx.reply(&reply, &Total { total: self.total })
//!             }
//!             Message::Event(body) => { self.total += body.add; Ok(()) }
//!             _ => Ok(()),
//!         }
//!     }
//! }
//! export_actor!(Counter);
//! ```
//!
//! Layout: `lib.rs` holds the public API; `bindings` is the generated WIT glue (public
//! only so that [`export_actor!`] can reach it).

use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "migrating-actor",
        path: "../wit",
        pub_export_macro: true,
        default_bindings_module: "dwell_sdk::bindings",
    });
}

use bindings::dwell::actor::host;
use bindings::dwell::actor::types as wit;

/// Everything a guest usually needs.
pub mod prelude {
    pub use crate::{
        Actor, ActorRef, AskReply, Context, Error, HttpRequest, HttpResponse, HttpResult, Message,
        Refusal, ReplyHandle, Timer, decode_state, export_actor,
    };
    pub use serde::{Deserialize, Serialize};
}

/// Why a process refuses a request, as its caller sees it: over HTTP `Invalid` is 422,
/// `NotFound` 404, `Conflict` 409 and `FailedPrecondition` 412.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The message is not one the process can accept (bad fields, cannot decode).
    Invalid,
    /// What the message is about does not exist.
    NotFound,
    /// The process is in a state that contradicts the message (e.g. already paid).
    Conflict,
    /// A condition the message depends on does not hold (e.g. check-in closed).
    FailedPrecondition,
}

impl Refusal {
    fn wit(self) -> wit::RefusalCode {
        match self {
            Refusal::Invalid => wit::RefusalCode::Invalid,
            Refusal::NotFound => wit::RefusalCode::NotFound,
            Refusal::Conflict => wit::RefusalCode::Conflict,
            Refusal::FailedPrecondition => wit::RefusalCode::FailedPrecondition,
        }
    }
}

/// An error a turn returns: the turn is rolled back (state and effects discarded) and
/// not retried. A *refusal* ([`Error::conflict`], [`Error::invalid`], …) answers a
/// request: its caller gets the refusal's status and message (an event refused this way
/// has nobody to tell and is dead-lettered). A plain error ([`Error::new`]) is a
/// failure: the message is dead-lettered and its caller gets 500.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
    refusal: Option<Refusal>,
}

impl Error {
    /// A failure: the message is dead-lettered (retryable by an operator).
    pub fn new(msg: impl Into<String>) -> Self {
        Error {
            message: msg.into(),
            refusal: None,
        }
    }

    /// A refusal of the given kind.
    pub fn refused(refusal: Refusal, msg: impl Into<String>) -> Self {
        Error {
            message: msg.into(),
            refusal: Some(refusal),
        }
    }

    /// Refuse a message that is not acceptable (422).
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::refused(Refusal::Invalid, msg)
    }

    /// Refuse a message about something that does not exist (404).
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::refused(Refusal::NotFound, msg)
    }

    /// Refuse a message that contradicts the process's state (409).
    pub fn conflict(msg: impl Into<String>) -> Self {
        Self::refused(Refusal::Conflict, msg)
    }

    /// Refuse a message whose precondition does not hold (412).
    pub fn failed_precondition(msg: impl Into<String>) -> Self {
        Self::refused(Refusal::FailedPrecondition, msg)
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn refusal(&self) -> Option<Refusal> {
        self.refusal
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(s: String) -> Self {
        Error::new(s)
    }
}

impl From<&str> for Error {
    fn from(s: &str) -> Self {
        Error::new(s)
    }
}

/// Encode a value as MessagePack the way the host expects (maps with field names).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    rmp_serde::to_vec_named(value).map_err(|e| Error::new(format!("cannot encode: {e}")))
}

/// Decode MessagePack bytes into a typed value; a body that does not fit `T` is an
/// [`Refusal::Invalid`] refusal (422 to an HTTP caller).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    rmp_serde::from_slice(bytes).map_err(|e| Error::invalid(format!("invalid message body: {e}")))
}

/// Where a request's answer goes. Serialisable, so it can be kept in state and used in a
/// later turn: that is how a process answers "asynchronously".
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ReplyHandle(pub String);

/// Another actor of the same tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ActorRef {
    pub module: String,
    pub key: String,
}

impl ActorRef {
    pub fn new(module: impl Into<String>, key: impl Into<String>) -> Self {
        ActorRef {
            module: module.into(),
            key: key.into(),
        }
    }
}

/// A fired timer.
#[derive(Debug, Clone)]
pub struct Timer {
    pub name: String,
    payload: Vec<u8>,
}

impl Timer {
    /// The payload given to [`Context::set_timer_after`] / [`Context::set_timer_at`].
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T, Error> {
        decode(&self.payload)
    }
}

/// An outbound HTTP call, performed by the host after the turn commits.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Per attempt; `None` = host default.
    pub timeout: Option<Duration>,
    /// Total attempts; `None` = host default.
    pub max_attempts: Option<u32>,
}

impl HttpRequest {
    pub fn new(method: &str, url: impl Into<String>) -> Self {
        HttpRequest {
            method: method.to_owned(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
            max_attempts: None,
        }
    }

    pub fn get(url: impl Into<String>) -> Self {
        Self::new("GET", url)
    }

    pub fn post(url: impl Into<String>) -> Self {
        Self::new("POST", url)
    }

    /// A JSON body (sets `content-type`).
    pub fn json<T: Serialize>(mut self, body: &T) -> Result<Self, Error> {
        self.body = to_json(body)?;
        self.headers
            .push(("content-type".into(), "application/json".into()));
        Ok(self)
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n);
        self
    }
}

/// A final HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Parse the body as JSON into `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        from_json(&self.body)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The final outcome of [`Context::http_call`].
#[derive(Debug, Clone)]
pub struct HttpResult {
    pub call_id: String,
    /// `Err` when every attempt failed to get a final answer (connect error, timeout,
    /// retries exhausted) or the destination was refused.
    pub outcome: Result<HttpResponse, String>,
}

/// The answer to [`Context::ask`].
#[derive(Debug, Clone)]
pub struct AskReply {
    pub correlation: String,
    outcome: Result<Vec<u8>, String>,
}

impl AskReply {
    /// The typed reply, or the error the other actor answered with.
    pub fn result<T: DeserializeOwned>(&self) -> Result<T, Error> {
        match &self.outcome {
            Ok(b) => decode(b),
            Err(e) => Err(Error::new(e.clone())),
        }
    }
}

/// One message to an actor, with requests and events already decoded into `T`.
#[derive(Debug)]
pub enum Message<T> {
    /// A call that expects a reply via `reply`.
    Request {
        reply: ReplyHandle,
        body: T,
    },
    /// A one-way message (HTTP event or another actor's `send`).
    Event(T),
    Timer(Timer),
    HttpResult(HttpResult),
    AskReply(AskReply),
}

/// The effects a turn may record. Each is performed by the host only after the turn has
/// committed; if the turn fails, none of them happen.
pub struct Context {
    _private: (),
}

fn to_json<T: Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(v).map_err(|e| Error::new(format!("cannot encode JSON: {e}")))
}

fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| Error::new(format!("invalid JSON: {e}")))
}

impl Context {
    /// Answer a request.
    pub fn reply<T: Serialize + ?Sized>(
        &mut self,
        to: &ReplyHandle,
        body: &T,
    ) -> Result<(), Error> {
        host::reply(&to.0, &encode(body)?).map_err(Error::new)
    }

    /// Fail a request with a message the caller will see (500 over HTTP).
    pub fn reject(&mut self, to: &ReplyHandle, error: &str) -> Result<(), Error> {
        host::reject(&to.0, error).map_err(Error::new)
    }

    /// Answer a request with `error`: a refusal's status and message (e.g. 409 for
    /// [`Error::conflict`]), or a plain failure (500).
    pub fn refuse(&mut self, to: &ReplyHandle, error: &Error) -> Result<(), Error> {
        match error.refusal {
            Some(r) => host::reject_as(&to.0, r.wit(), &error.message).map_err(Error::new),
            None => host::reject(&to.0, &error.message).map_err(Error::new),
        }
    }

    /// One-way message to another actor of this tenant.
    pub fn send<T: Serialize + ?Sized>(&mut self, to: &ActorRef, body: &T) -> Result<(), Error> {
        host::send(&wit_ref(to), &encode(body)?).map_err(Error::new)
    }

    /// Request to another actor; the answer arrives later as [`Message::AskReply`].
    pub fn ask<T: Serialize + ?Sized>(
        &mut self,
        to: &ActorRef,
        body: &T,
        correlation: &str,
    ) -> Result<(), Error> {
        host::ask(&wit_ref(to), &encode(body)?, correlation).map_err(Error::new)
    }

    /// Set (or replace) a named timer to fire after `delay`.
    pub fn set_timer_after<T: Serialize + ?Sized>(
        &mut self,
        name: &str,
        delay: Duration,
        payload: &T,
    ) -> Result<(), Error> {
        let due = self.now_ms().saturating_add(delay.as_millis() as u64);
        self.set_timer_at(name, due, payload)
    }

    /// Set (or replace) a named timer to fire at `due_ms` (unix milliseconds).
    pub fn set_timer_at<T: Serialize + ?Sized>(
        &mut self,
        name: &str,
        due_ms: u64,
        payload: &T,
    ) -> Result<(), Error> {
        host::set_timer(name, due_ms, &encode(payload)?).map_err(Error::new)
    }

    /// Cancel a named timer (no error if it does not exist).
    pub fn cancel_timer(&mut self, name: &str) {
        host::cancel_timer(name)
    }

    /// Call out over HTTP after this turn commits; the result arrives as
    /// [`Message::HttpResult`] carrying `call_id`.
    pub fn http_call(&mut self, call_id: &str, req: HttpRequest) -> Result<(), Error> {
        let wreq = wit::HttpRequest {
            method: req.method,
            url: req.url,
            headers: req.headers,
            body: req.body,
            timeout_ms: req
                .timeout
                .map(|t| t.as_millis().min(u32::MAX as u128) as u32)
                .unwrap_or(0),
            max_attempts: req.max_attempts.unwrap_or(0),
        };
        host::http_call(call_id, &wreq).map_err(Error::new)
    }

    /// Mark the process complete; later messages to this actor are refused.
    pub fn complete(&mut self) {
        host::complete()
    }

    /// Name the step the process is in after this turn, e.g. `ctx.step("awaiting
    /// boarding pass")`: it shows in the actor's history, filters the actor lists
    /// (`?step=`) and is a node of the module's process map. Without it, a message's
    /// `type` field names the step. The last call of a turn counts.
    pub fn step(&mut self, label: &str) {
        host::step(label)
    }

    pub fn log(&mut self, message: &str) {
        host::log(wit::LogLevel::Info, message)
    }

    pub fn warn(&mut self, message: &str) {
        host::log(wit::LogLevel::Warn, message)
    }

    /// The turn's wall-clock time, unix milliseconds.
    pub fn now_ms(&self) -> u64 {
        host::now()
    }

    /// This actor's own address.
    pub fn me(&self) -> ActorRef {
        let r = host::self_ref();
        ActorRef {
            module: r.module,
            key: r.key,
        }
    }
}

fn wit_ref(r: &ActorRef) -> wit::ActorRef {
    wit::ActorRef {
        module: r.module.clone(),
        key: r.key.clone(),
    }
}

/// A process: its state type implements this trait and is exported with [`export_actor!`].
pub trait Actor: Default + Serialize + DeserializeOwned {
    /// What requests and events carry (decoded from the caller's JSON or MessagePack).
    type Input: DeserializeOwned;

    /// Handle one message. Mutate `self`; record effects on `ctx`. Returning `Err`
    /// refuses the message: state and effects of this turn are discarded.
    fn handle(&mut self, ctx: &mut Context, msg: Message<Self::Input>) -> Result<(), Error>;

    /// Take over the state an actor had on an older version of this module
    /// (`from_version`; `state` as that version encoded it — see [`decode_state`]) when an
    /// upgrade moves it here. `Ok(None)`, the default, keeps the bytes as they are;
    /// `Err` refuses the move and the actor stays on its version. Runs in a sandbox:
    /// effects are not allowed here.
    fn migrate(from_version: u32, state: &[u8]) -> Result<Option<Self>, Error> {
        let _ = (from_version, state);
        Ok(None)
    }
}

/// Decode a state as the SDK encodes it (MessagePack), e.g. an older version's state
/// type in [`Actor::migrate`].
pub fn decode_state<T: DeserializeOwned>(state: &[u8]) -> Result<T, Error> {
    rmp_serde::from_slice(state).map_err(|e| Error::new(format!("cannot decode the state: {e}")))
}

#[doc(hidden)]
pub struct Adapter<A>(PhantomData<A>);

impl<A: Actor> bindings::Guest for Adapter<A> {
    fn migrate(from_version: u32, state: Vec<u8>) -> Result<Vec<u8>, String> {
        Adapter::<A>::migrate(from_version, state)
    }

    fn handle(state: Option<Vec<u8>>, msg: wit::Message) -> Result<Vec<u8>, String> {
        run_turn::<A>(state, msg).map_err(|e| {
            if let Some(r) = e.refusal {
                host::refuse_as(r.wit());
            }
            e.message
        })
    }
}

impl<A: Actor> Adapter<A> {
    fn migrate(from_version: u32, state: Vec<u8>) -> Result<Vec<u8>, String> {
        match A::migrate(from_version, &state).map_err(|e| e.message)? {
            Some(new) => encode(&new).map_err(|e| e.message),
            None => Ok(state),
        }
    }
}

fn run_turn<A: Actor>(state: Option<Vec<u8>>, msg: wit::Message) -> Result<Vec<u8>, Error> {
    let mut actor: A = match state {
        Some(bytes) => rmp_serde::from_slice(&bytes)
            .map_err(|e| Error::new(format!("cannot decode actor state: {e}")))?,
        None => A::default(),
    };
    let msg = match msg {
        wit::Message::Request(r) => Message::Request {
            reply: ReplyHandle(r.reply_to),
            body: decode(&r.body)?,
        },
        wit::Message::Event(b) => Message::Event(decode(&b)?),
        wit::Message::Timer(t) => Message::Timer(Timer {
            name: t.name,
            payload: t.payload,
        }),
        wit::Message::HttpResult(h) => Message::HttpResult(HttpResult {
            call_id: h.call_id,
            outcome: h.outcome.map(|r| HttpResponse {
                status: r.status,
                headers: r.headers,
                body: r.body,
            }),
        }),
        wit::Message::AskReply(a) => Message::AskReply(AskReply {
            correlation: a.correlation,
            outcome: a.outcome,
        }),
    };
    let mut ctx = Context { _private: () };
    actor.handle(&mut ctx, msg)?;
    encode(&actor)
}

/// Export a type implementing [`Actor`] as this component's process.
#[macro_export]
macro_rules! export_actor {
    ($ty:ty) => {
        type __DwellActorExport = $crate::Adapter<$ty>;
        $crate::bindings::export!(__DwellActorExport with_types_in $crate::bindings);
    };
}
