//! `trip`: a trip-booking saga (actor key = trip id). Book a car, then a hotel, then a
//! flight; if a step fails, undo the steps already done, newest first, and fail the trip.
//!
//! The story: a `book` request names the three booking services. The actor POSTs
//! `{"trip","action":"book"}` to each in turn, waiting for one answer before the next call
//! (a `2xx` is booked, its JSON may carry `{"booking_id": "..."}`; any other status, a
//! connect error or a timeout is a failure — each step gets at most 2 HTTP attempts of
//! `timeout_ms`, 5 s by default, so a slow service cannot hold the trip). When all three
//! are booked the request is answered `{"status":"booked","car":..,"hotel":..,"flight":..}`
//! with the booking ids. When a step fails, the completed steps are cancelled in reverse
//! order — `POST {"trip","action":"cancel","booking_id"}` to the same URL, each awaited
//! before the next — and the request fails with
//! `trip failed at <step>: <reason>; cancelled <steps>`. Either way the process completes.
//!
//! A cancellation that still fails after up to 5 HTTP attempts is recorded in
//! `cancel_failed` (and named in the error) and the saga goes on with the next one: the
//! state then shows exactly which booking needs a human.
//!
//! Messages (JSON, `type` tag): `book` {trip, car_url, hotel_url, flight_url, timeout_ms?}
//! — request only; refused once a booking has started. Outbound call ids are
//! `book-<step>` and `cancel-<step>`; results for anything else are ignored.
use std::time::Duration;

use dwell_sdk::prelude::*;

const DEFAULT_TIMEOUT_MS: u64 = 5_000;
/// Cancellations matter more than bookings (a leftover booking costs money): more tries.
const CANCEL_ATTEMPTS: u32 = 5;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    #[default]
    New,
    /// Booking the step in `current`.
    Booking,
    /// A step failed; cancelling the step in `current`.
    Cancelling,
    /// Every step booked (process complete).
    Booked,
    /// A step failed and the earlier ones were cancelled (process complete).
    Failed,
}

/// One booking service, in booking order.
#[derive(Serialize, Deserialize)]
struct Step {
    step: String,
    url: String,
}

/// A step that was booked.
#[derive(Serialize, Deserialize)]
struct Booked {
    step: String,
    booking_id: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct CancelFailure {
    step: String,
    error: String,
}

/// The actor's state, as `GET /v1/actors/trip/{id}` shows it.
#[derive(Default, Serialize, Deserialize)]
struct Trip {
    trip: Option<String>,
    status: Status,
    /// The services, in booking order (car, hotel, flight).
    steps: Vec<Step>,
    /// The step whose booking or cancellation is in flight.
    current: Option<String>,
    /// Steps booked so far, in order.
    booked: Vec<Booked>,
    failed_step: Option<String>,
    failure: Option<String>,
    /// Steps cancelled, in the order they were cancelled.
    cancelled: Vec<String>,
    cancel_failed: Vec<CancelFailure>,
    timeout_ms: u64,
    /// The waiting `book` request.
    reply: Option<ReplyHandle>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Input {
    Book {
        trip: String,
        car_url: String,
        hotel_url: String,
        flight_url: String,
        timeout_ms: Option<u64>,
    },
}

/// What a booking service is sent.
#[derive(Serialize)]
struct ServiceCall<'a> {
    trip: &'a str,
    action: &'static str,
    /// Only on `cancel` (where it is `null` if the service gave no id).
    #[serde(skip_serializing_if = "Option::is_none")]
    booking_id: Option<Option<&'a str>>,
}

/// What a booking service may answer.
#[derive(Deserialize)]
struct ServiceAnswer {
    booking_id: Option<String>,
}

#[derive(Serialize)]
struct TripBooked<'a> {
    status: &'static str,
    car: Option<&'a str>,
    hotel: Option<&'a str>,
    flight: Option<&'a str>,
}

impl Trip {
    fn book(&mut self, ctx: &mut Context, reply: ReplyHandle, input: Input) -> Result<(), Error> {
        let Input::Book {
            trip,
            car_url,
            hotel_url,
            flight_url,
            timeout_ms,
        } = input;
        if self.status != Status::New {
            return Err(Error::conflict(format!(
                "trip {} is already being booked",
                self.trip.as_deref().unwrap_or_default()
            )));
        }
        self.trip = Some(trip);
        self.timeout_ms = timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        self.steps = [
            ("car", car_url),
            ("hotel", hotel_url),
            ("flight", flight_url),
        ]
        .into_iter()
        .map(|(step, url)| Step {
            step: step.to_owned(),
            url,
        })
        .collect();
        // A refused first call (URL not allowed) fails this turn: nothing was booked.
        self.call(ctx, 0, "book", None, 2)?;
        self.status = Status::Booking;
        self.reply = Some(reply);
        Ok(())
    }

    /// Record an outbound call to step `index`.
    fn call(
        &mut self,
        ctx: &mut Context,
        index: usize,
        action: &'static str,
        booking_id: Option<Option<&str>>,
        attempts: u32,
    ) -> Result<(), Error> {
        let step = &self.steps[index];
        let req = HttpRequest::post(step.url.as_str())
            .json(&ServiceCall {
                trip: self.trip.as_deref().unwrap_or_default(),
                action,
                booking_id,
            })?
            .max_attempts(attempts)
            .timeout(Duration::from_millis(self.timeout_ms));
        ctx.http_call(&format!("{action}-{}", step.step), req)?;
        self.current = Some(step.step.clone());
        Ok(())
    }

    fn answered(&mut self, ctx: &mut Context, result: HttpResult) -> Result<(), Error> {
        let current = self.current.as_deref().unwrap_or_default();
        let expected = match self.status {
            Status::Booking => format!("book-{current}"),
            Status::Cancelling => format!("cancel-{current}"),
            _ => String::new(),
        };
        if expected.is_empty() || result.call_id != expected {
            ctx.log(&format!("ignoring unexpected result of {}", result.call_id));
            return Ok(());
        }
        let step = current.to_owned();
        let outcome = match result.outcome {
            Ok(resp) if resp.is_success() => {
                Ok(resp.json::<ServiceAnswer>().ok().and_then(|a| a.booking_id))
            }
            Ok(resp) => Err(format!("HTTP {}: {}", resp.status, snippet(&resp.text()))),
            Err(e) => Err(e),
        };
        match (self.status, outcome) {
            (Status::Booking, Ok(booking_id)) => {
                ctx.log(&format!("booked {step}"));
                self.booked.push(Booked { step, booking_id });
                self.book_next(ctx)
            }
            (Status::Booking, Err(reason)) => self.fail(ctx, step, reason),
            (_, Ok(_)) => {
                ctx.log(&format!("cancelled {step}"));
                self.cancelled.push(step);
                self.cancel_next(ctx)
            }
            (_, Err(error)) => {
                ctx.warn(&format!("could not cancel {step}: {error}"));
                self.cancel_failed.push(CancelFailure { step, error });
                self.cancel_next(ctx)
            }
        }
    }

    fn book_next(&mut self, ctx: &mut Context) -> Result<(), Error> {
        let index = self.booked.len();
        if index == self.steps.len() {
            return self.succeed(ctx);
        }
        match self.call(ctx, index, "book", None, 2) {
            Ok(()) => Ok(()),
            Err(e) => {
                let step = self.steps[index].step.clone();
                self.fail(ctx, step, format!("call refused: {e}"))
            }
        }
    }

    fn fail(&mut self, ctx: &mut Context, step: String, reason: String) -> Result<(), Error> {
        ctx.warn(&format!("{step} failed: {reason}; compensating"));
        self.failed_step = Some(step);
        self.failure = Some(reason);
        self.status = Status::Cancelling;
        self.cancel_next(ctx)
    }

    /// Cancel the newest booked step not yet handled, or finish the saga.
    fn cancel_next(&mut self, ctx: &mut Context) -> Result<(), Error> {
        loop {
            let handled = self.cancelled.len() + self.cancel_failed.len();
            let Some(index) = self.booked.len().checked_sub(handled + 1) else {
                return self.give_up(ctx);
            };
            let booking_id = self.booked[index].booking_id.clone();
            // Booked steps are a prefix of `steps`, so the index is the same.
            match self.call(
                ctx,
                index,
                "cancel",
                Some(booking_id.as_deref()),
                CANCEL_ATTEMPTS,
            ) {
                Ok(()) => return Ok(()),
                Err(e) => self.cancel_failed.push(CancelFailure {
                    step: self.booked[index].step.clone(),
                    error: format!("call refused: {e}"),
                }),
            }
        }
    }

    fn succeed(&mut self, ctx: &mut Context) -> Result<(), Error> {
        let id = |step: &str| {
            self.booked
                .iter()
                .find(|b| b.step == step)
                .and_then(|b| b.booking_id.as_deref())
        };
        if let Some(r) = &self.reply {
            ctx.reply(
                r,
                &TripBooked {
                    status: "booked",
                    car: id("car"),
                    hotel: id("hotel"),
                    flight: id("flight"),
                },
            )?;
        }
        self.reply = None;
        self.current = None;
        self.status = Status::Booked;
        ctx.complete();
        Ok(())
    }

    fn give_up(&mut self, ctx: &mut Context) -> Result<(), Error> {
        let mut error = format!(
            "trip failed at {}: {}; cancelled {}",
            self.failed_step.as_deref().unwrap_or("?"),
            self.failure.as_deref().unwrap_or("?"),
            if self.cancelled.is_empty() {
                "nothing".to_owned()
            } else {
                self.cancelled.join(", ")
            }
        );
        for f in &self.cancel_failed {
            error.push_str(&format!("; could not cancel {} ({})", f.step, f.error));
        }
        if let Some(r) = self.reply.take() {
            ctx.reject(&r, &error)?;
        }
        self.current = None;
        self.status = Status::Failed;
        ctx.complete();
        Ok(())
    }
}

/// At most 200 characters of a response body, for error messages.
fn snippet(text: &str) -> String {
    text.chars().take(200).collect()
}

impl Actor for Trip {
    type Input = Input;

    fn handle(&mut self, ctx: &mut Context, msg: Message<Input>) -> Result<(), Error> {
        match msg {
            Message::Request { reply, body } => self.book(ctx, reply, body)?,
            Message::Event(_) => return Err(Error::invalid("book must be a request")),
            Message::HttpResult(result) => self.answered(ctx, result)?,
            // This process sets no timers and asks no other actors.
            Message::Timer(_) | Message::AskReply(_) => {}
        }
        // The step the saga is in (`booking hotel`, `cancelling flight`…), for its
        // history and the module's process map.
        let current = self.current.as_deref().unwrap_or_default();
        let step = match self.status {
            Status::New => "new".to_owned(),
            Status::Booking => format!("booking {current}"),
            Status::Cancelling => format!("cancelling {current}"),
            Status::Booked => "booked".to_owned(),
            Status::Failed => "failed".to_owned(),
        };
        ctx.step(&step);
        Ok(())
    }
}

export_actor!(Trip);
