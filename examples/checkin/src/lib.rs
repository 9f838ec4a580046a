//! `checkin`: automatic flight check-in for one booking (actor key = booking reference).
//!
//! The story: a booking is `register`ed with the time online check-in opens and the URL of
//! the boarding-pass service. The actor sets a durable timer `open` for that time (it fires
//! at once if the time has passed). When it fires, the actor asks the boarding-pass service
//! for a pass (`POST {"booking","passenger"}` → `{"pass": "..."}`). If the service is down
//! or answers badly, the customer is not failed: the actor sets a `retry` timer (doubling
//! from `retry_ms`, 500 ms by default, up to 30 s) and tries again, for as long as it takes.
//!
//! Online check-in closes at `checkin_closes_at_ms` (optional): a `check_in` after that
//! without a pass is refused with a conflict (`409` to an HTTP caller), and callers still
//! waiting then are refused the same way; fetching stops.
//!
//! A `check_in` request is answered with `{"pass": "..."}` as soon as the pass exists —
//! at once if it already does. Until then its reply handle waits in the state, so an HTTP
//! caller gets `202` and a pollable request (or the pass at its `Callback-Url`) when the
//! pass is issued. A `boarding_pass_ready` event delivers a pass from outside (the first
//! cut of this example, still supported) and answers every waiting caller.
//!
//! Messages (JSON, `type` tag):
//! - `register` {booking, passenger, checkin_opens_at_ms, checkin_closes_at_ms?,
//!   boarding_pass_url, retry_ms?} — request (→ `{"registered": true}`) or event.
//!   Refused (conflict) once the pass is issued; invalid if it closes before it opens.
//! - `check_in` — request only (→ `{"pass": "..."}`, possibly much later; a conflict
//!   once check-in has closed without a pass).
//! - `boarding_pass_ready` {pass} — event (or request → `"ok"`).
//!
//! Outbound calls use call id `pass-<attempt>`, at most 2 HTTP attempts of 2 s each; a
//! result for any other call id (a stale attempt) is ignored.
//!
//! Versions, for the live-upgrade walkthrough and tests (one source, cargo features; the
//! crates `checkin-v2` and `checkin-v3` build it with them):
//! - 1 (no feature): the state keeps the pass as `pass`; check-ins are answered
//!   `{"pass": "..."}`.
//! - 2 (`v2`): the state keeps it as `boarding: {code, issued_at_ms}` and check-ins are
//!   answered `{"boarding_pass": {"code": "...", "issued_at_ms": ...}}`; `migrate` turns a
//!   version-1 state into this one (waiting callers included).
//! - 3 (`v3`): version 2 with a defect: it traps on every `check_in`.
use std::time::Duration;

use dwell_sdk::prelude::*;

/// Default first retry delay after a failed fetch; doubles up to [`MAX_RETRY_MS`].
const DEFAULT_RETRY_MS: u64 = 500;
const MIN_RETRY_MS: u64 = 10;
const MAX_RETRY_MS: u64 = 30_000;
const OPEN_TIMER: &str = "open";
const CLOSE_TIMER: &str = "close";
const RETRY_TIMER: &str = "retry";

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    /// Nothing registered: a pass can only arrive by a `boarding_pass_ready` event.
    #[default]
    New,
    /// Registered and online check-in is already open: the `open` timer fires at once.
    Registered,
    /// Registered; the `open` timer waits for online check-in to open.
    WaitingForCheckin,
    /// A request to the boarding-pass service is in flight.
    Fetching,
    /// The last fetch failed; the `retry` timer will try again.
    Retrying,
    /// The pass exists; every check-in is answered at once.
    Issued,
    /// Online check-in closed before a pass was issued; check-ins are refused.
    Closed,
}

/// The actor's state, as `GET /v1/actors/checkin/{booking}` shows it.
#[derive(Default, Serialize, Deserialize)]
struct Checkin {
    booking: Option<String>,
    passenger: Option<String>,
    status: Status,
    checkin_opens_at_ms: Option<u64>,
    checkin_closes_at_ms: Option<u64>,
    boarding_pass_url: Option<String>,
    /// Fetches started so far (the current call id is `pass-<attempts>`).
    attempts: u32,
    /// Delay before the next retry, doubling after every failure.
    next_retry_ms: u64,
    /// Why the last fetch failed.
    last_error: Option<String>,
    #[cfg(not(feature = "v2"))]
    pass: Option<String>,
    /// The pass and when it was issued (unknown for a pass migrated from version 1).
    #[cfg(feature = "v2")]
    #[serde(default)]
    boarding: Option<BoardingPass>,
    /// Check-in callers waiting for the pass.
    waiting: Vec<ReplyHandle>,
    /// The version this state was migrated from, if it was.
    #[cfg(feature = "v2")]
    #[serde(default)]
    migrated_from: Option<u32>,
}

#[cfg(feature = "v2")]
#[derive(Clone, Serialize, Deserialize)]
struct BoardingPass {
    code: String,
    issued_at_ms: Option<u64>,
}

/// Where the pass is kept and how a check-in is answered: version 1.
#[cfg(not(feature = "v2"))]
impl Checkin {
    fn has_pass(&self) -> bool {
        self.pass.is_some()
    }

    fn keep_pass(&mut self, _ctx: &Context, pass: String) {
        self.pass = Some(pass);
    }

    fn answer(&self, ctx: &mut Context, to: &ReplyHandle) -> Result<(), Error> {
        let pass = self.pass.as_deref().unwrap_or_default();
        ctx.reply(to, &Pass { pass })
    }
}

/// Where the pass is kept and how a check-in is answered: version 2.
#[cfg(feature = "v2")]
impl Checkin {
    fn has_pass(&self) -> bool {
        self.boarding.is_some()
    }

    fn keep_pass(&mut self, ctx: &Context, code: String) {
        self.boarding = Some(BoardingPass {
            code,
            issued_at_ms: Some(ctx.now_ms()),
        });
    }

    fn answer(&self, ctx: &mut Context, to: &ReplyHandle) -> Result<(), Error> {
        #[derive(Serialize)]
        struct Answer<'a> {
            boarding_pass: &'a Option<BoardingPass>,
        }
        ctx.reply(
            to,
            &Answer {
                boarding_pass: &self.boarding,
            },
        )
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Input {
    Register(Register),
    CheckIn,
    BoardingPassReady { pass: String },
}

#[derive(Deserialize)]
struct Register {
    booking: String,
    passenger: String,
    checkin_opens_at_ms: u64,
    checkin_closes_at_ms: Option<u64>,
    boarding_pass_url: String,
    retry_ms: Option<u64>,
}

#[cfg(not(feature = "v2"))]
#[derive(Serialize)]
struct Pass<'a> {
    pass: &'a str,
}

#[derive(Serialize)]
struct Registered {
    registered: bool,
}

/// What the boarding-pass service is sent.
#[derive(Serialize)]
struct PassRequest<'a> {
    booking: &'a str,
    passenger: &'a str,
}

/// What the boarding-pass service answers on success.
#[derive(Deserialize)]
struct PassResponse {
    pass: String,
}

impl Checkin {
    fn register(&mut self, ctx: &mut Context, r: Register) -> Result<(), Error> {
        if self.status == Status::Issued {
            return Err(Error::conflict("the boarding pass is already issued"));
        }
        if r.checkin_closes_at_ms
            .is_some_and(|close| close <= r.checkin_opens_at_ms)
        {
            return Err(Error::invalid(
                "checkin_closes_at_ms must be after checkin_opens_at_ms",
            ));
        }
        let now = ctx.now_ms();
        // A re-registration replaces the details and restarts from the `open` timer; a
        // fetch still in flight is ignored when it answers (its call id is stale).
        ctx.cancel_timer(RETRY_TIMER);
        if r.checkin_closes_at_ms.is_some_and(|close| close <= now) {
            // Registered after check-in closed: nothing to fetch, check-ins are refused.
            ctx.cancel_timer(OPEN_TIMER);
            ctx.cancel_timer(CLOSE_TIMER);
            self.status = Status::Closed;
        } else {
            match r.checkin_closes_at_ms {
                Some(close) => ctx.set_timer_at(CLOSE_TIMER, close, &())?,
                None => ctx.cancel_timer(CLOSE_TIMER),
            }
            ctx.set_timer_at(OPEN_TIMER, r.checkin_opens_at_ms, &())?;
            self.status = if r.checkin_opens_at_ms <= now {
                Status::Registered
            } else {
                Status::WaitingForCheckin
            };
        }
        self.next_retry_ms = r
            .retry_ms
            .unwrap_or(DEFAULT_RETRY_MS)
            .clamp(MIN_RETRY_MS, MAX_RETRY_MS);
        self.booking = Some(r.booking);
        self.passenger = Some(r.passenger);
        self.checkin_opens_at_ms = Some(r.checkin_opens_at_ms);
        self.checkin_closes_at_ms = r.checkin_closes_at_ms;
        self.boarding_pass_url = Some(r.boarding_pass_url);
        self.last_error = None;
        Ok(())
    }

    /// Ask the boarding-pass service for the pass (the `open` or `retry` timer fired).
    fn fetch(&mut self, ctx: &mut Context) -> Result<(), Error> {
        let (Some(url), Some(booking), Some(passenger)) =
            (&self.boarding_pass_url, &self.booking, &self.passenger)
        else {
            return Ok(()); // nothing registered: a stray timer
        };
        self.attempts += 1;
        let call_id = format!("pass-{}", self.attempts);
        let req = HttpRequest::post(url.as_str())
            .json(&PassRequest { booking, passenger })?
            .max_attempts(2)
            .timeout(Duration::from_secs(2));
        match ctx.http_call(&call_id, req) {
            Ok(()) => {
                ctx.log(&format!(
                    "fetching the boarding pass, attempt {}",
                    self.attempts
                ));
                self.status = Status::Fetching;
                Ok(())
            }
            // The host refused the call (e.g. the URL is not allowed): not the customer's
            // problem either; retry, so fixing the server's allowlist lets it go through.
            Err(e) => self.retry_later(ctx, format!("call refused: {e}")),
        }
    }

    fn fetched(&mut self, ctx: &mut Context, result: HttpResult) -> Result<(), Error> {
        let current = format!("pass-{}", self.attempts);
        if self.status != Status::Fetching || result.call_id != current {
            ctx.log(&format!("ignoring stale result of {}", result.call_id));
            return Ok(());
        }
        let failure = match result.outcome {
            Ok(resp) if resp.is_success() => match resp.json::<PassResponse>() {
                Ok(p) => return self.issue(ctx, p.pass),
                Err(e) => format!("HTTP {} without a pass: {e}", resp.status),
            },
            Ok(resp) => format!("HTTP {}: {}", resp.status, snippet(&resp.text())),
            Err(e) => e,
        };
        self.retry_later(ctx, failure)
    }

    fn retry_later(&mut self, ctx: &mut Context, why: String) -> Result<(), Error> {
        let delay = self.next_retry_ms.max(MIN_RETRY_MS);
        ctx.warn(&format!(
            "boarding pass attempt {} failed ({why}); retrying in {delay} ms",
            self.attempts
        ));
        ctx.set_timer_after(RETRY_TIMER, Duration::from_millis(delay), &())?;
        self.next_retry_ms = (delay * 2).min(MAX_RETRY_MS);
        self.last_error = Some(why);
        self.status = Status::Retrying;
        Ok(())
    }

    /// Check-in closed: refuse everyone waiting and stop fetching.
    fn close(&mut self, ctx: &mut Context) -> Result<(), Error> {
        let closed = self.closed_error();
        for waiter in self.waiting.drain(..) {
            ctx.refuse(&waiter, &closed)?;
        }
        ctx.cancel_timer(OPEN_TIMER);
        ctx.cancel_timer(RETRY_TIMER);
        self.status = Status::Closed;
        Ok(())
    }

    fn closed_error(&self) -> Error {
        Error::conflict(format!(
            "online check-in for booking {} is closed",
            self.booking.as_deref().unwrap_or("?")
        ))
    }

    /// The pass exists: remember it and answer everyone waiting.
    fn issue(&mut self, ctx: &mut Context, pass: String) -> Result<(), Error> {
        self.keep_pass(ctx, pass);
        for waiter in std::mem::take(&mut self.waiting) {
            self.answer(ctx, &waiter)?;
        }
        ctx.cancel_timer(OPEN_TIMER);
        ctx.cancel_timer(RETRY_TIMER);
        self.status = Status::Issued;
        self.last_error = None;
        Ok(())
    }
}

/// At most 200 characters of a response body, for error messages.
fn snippet(text: &str) -> String {
    text.chars().take(200).collect()
}

impl Actor for Checkin {
    type Input = Input;

    fn handle(&mut self, ctx: &mut Context, msg: Message<Input>) -> Result<(), Error> {
        self.handle_message(ctx, msg)?;
        // The step the booking is in, for its history and the module's process map.
        ctx.step(self.status.step());
        Ok(())
    }

    /// From version 1: the same fields, but the pass was a bare string under `pass`.
    #[cfg(feature = "v2")]
    fn migrate(from_version: u32, state: &[u8]) -> Result<Option<Self>, Error> {
        #[derive(Deserialize)]
        struct Version1 {
            pass: Option<String>,
        }
        if from_version >= 2 {
            return Ok(None);
        }
        let mut new: Checkin = decode_state(state)?;
        let old: Version1 = decode_state(state)?;
        new.boarding = old.pass.map(|code| BoardingPass {
            code,
            issued_at_ms: None,
        });
        new.migrated_from = Some(from_version);
        Ok(Some(new))
    }
}

impl Status {
    /// How the process map names this status.
    fn step(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Registered => "registered",
            Status::WaitingForCheckin => "waiting for check-in to open",
            Status::Fetching => "awaiting boarding pass",
            Status::Retrying => "boarding pass service retry",
            Status::Issued => "boarding pass issued",
            Status::Closed => "check-in closed",
        }
    }
}

impl Checkin {
    fn handle_message(&mut self, ctx: &mut Context, msg: Message<Input>) -> Result<(), Error> {
        match msg {
            Message::Request {
                reply,
                body: Input::CheckIn,
            } => {
                if cfg!(feature = "v3") {
                    panic!("version 3 cannot check in");
                }
                if self.has_pass() {
                    self.answer(ctx, &reply)
                } else if self.status == Status::Closed
                    || self
                        .checkin_closes_at_ms
                        .is_some_and(|close| ctx.now_ms() >= close)
                {
                    Err(self.closed_error())
                } else {
                    self.waiting.push(reply);
                    Ok(())
                }
            }
            Message::Event(Input::CheckIn) => Err(Error::invalid("check_in must be a request")),
            Message::Request {
                reply,
                body: Input::Register(r),
            } => {
                self.register(ctx, r)?;
                ctx.reply(&reply, &Registered { registered: true })
            }
            Message::Event(Input::Register(r)) => self.register(ctx, r),
            Message::Event(Input::BoardingPassReady { pass }) => self.issue(ctx, pass),
            Message::Request {
                reply,
                body: Input::BoardingPassReady { pass },
            } => {
                self.issue(ctx, pass)?;
                ctx.reply(&reply, &"ok")
            }
            Message::Timer(t) if t.name == CLOSE_TIMER => match self.status {
                Status::Issued | Status::Closed => Ok(()),
                _ => self.close(ctx),
            },
            Message::Timer(t) if t.name == OPEN_TIMER || t.name == RETRY_TIMER => {
                if matches!(self.status, Status::Issued | Status::Closed) {
                    Ok(())
                } else {
                    self.fetch(ctx)
                }
            }
            Message::HttpResult(result) => self.fetched(ctx, result),
            // Unknown timers and ask replies: this process sets and asks nothing else.
            Message::Timer(_) | Message::AskReply(_) => Ok(()),
        }
    }
}

export_actor!(Checkin);
