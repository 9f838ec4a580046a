//! `payment`: retrieve one payment (actor key = payment id), using the customer's stored
//! credit first and charging the rest to a card — and waiting for the customer to update
//! a declined card instead of failing at once.
//!
//! The story: `open` sets the customer's credit (it lives in this actor's state). `pay`
//! deducts `min(credit, amount)` from the credit. If that covers the amount the request is
//! answered at once. Otherwise the rest is charged to the card at the payment provider
//! (`POST {"amount","card"}`) and the reply handle waits in the state:
//! - `200 {"status":"approved"}` → the request is answered `payment received`;
//! - `402`, `{"status":"declined"}`, or a provider failure (a connect error or timeout,
//!   a `5xx` after the host's retries, any other answer) → the card counts as declined: the
//!   actor sets the timer `card_update_timeout` and waits for `update_card`, which charges
//!   the new card (and can be declined again, with a fresh timeout);
//! - the timer fires first → compensation: the deducted credit is given back
//!   (`compensated: true`) and the `pay` request fails with "payment failed: card declined
//!   and not updated in time".
//!
//! A payment that ends (paid or failed) completes the process: later messages get `409`.
//!
//! Messages (JSON, `type` tag; amounts are whole units, e.g. cents):
//! - `open` {customer, credit} — request (→ `{"credit": n}`) or event; refused while a
//!   payment is in progress.
//! - `pay` {amount, card, provider_url, update_timeout_ms?} — request only (→
//!   `{"status":"payment received","charged_card":n,"used_credit":m}`); the timeout
//!   defaults to one hour.
//! - `update_card` {card} — event, or request (→ `{"status":"charging","charge_attempt":n}`
//!   at once; the outcome goes to the `pay` request). Refused unless a card update is
//!   awaited.
//!
//! Only the last four digits of a card are kept in the state. Outbound calls use call id
//! `charge-<n>` (at most 3 HTTP attempts of 5 s each); results of other call ids and
//! timeouts of earlier declines are ignored.
use std::time::Duration;

use dwell_sdk::prelude::*;

const UPDATE_TIMER: &str = "card_update_timeout";
const DEFAULT_UPDATE_TIMEOUT_MS: u64 = 60 * 60 * 1000;
const DECLINED: &str = "payment failed: card declined and not updated in time";

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    /// No payment yet (`open` may set the credit).
    #[default]
    New,
    /// A charge is in flight at the provider.
    Charging,
    /// The card was declined; waiting for `update_card` or the timeout.
    AwaitingCardUpdate,
    /// Paid (process complete).
    Paid,
    /// Failed and compensated (process complete).
    Failed,
}

/// The actor's state, as `GET /v1/actors/payment/{id}` shows it.
#[derive(Default, Serialize, Deserialize)]
struct Payment {
    customer: Option<String>,
    /// The customer's credit now (deducted while a payment is in progress).
    credit: u64,
    status: Status,
    /// The amount of the `pay` request.
    amount: u64,
    /// Taken from the credit for this payment.
    used_credit: u64,
    /// Left to charge to the card (`amount - used_credit`).
    card_amount: u64,
    /// Charged to the card, once approved.
    charged_card: u64,
    /// Last four digits of the card being charged.
    card_last4: Option<String>,
    provider_url: Option<String>,
    update_timeout_ms: u64,
    /// Charges sent to the provider so far (the current call id is `charge-<n>`).
    charge_attempts: u32,
    /// Why the last charge did not go through.
    last_decline: Option<String>,
    /// The credit was given back after the payment failed.
    compensated: bool,
    /// The waiting `pay` request.
    reply: Option<ReplyHandle>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Input {
    Open {
        customer: String,
        credit: u64,
    },
    Pay {
        amount: u64,
        card: String,
        provider_url: String,
        update_timeout_ms: Option<u64>,
    },
    UpdateCard {
        card: String,
    },
}

#[derive(Serialize)]
struct Credit {
    credit: u64,
}

#[derive(Serialize)]
struct Received {
    status: &'static str,
    charged_card: u64,
    used_credit: u64,
}

#[derive(Serialize)]
struct Charging {
    status: &'static str,
    charge_attempt: u32,
}

/// What the provider is sent.
#[derive(Serialize)]
struct Charge<'a> {
    amount: u64,
    card: &'a str,
}

/// What the provider answers.
#[derive(Deserialize)]
struct ChargeResponse {
    status: Option<String>,
}

impl Payment {
    fn in_progress(&self) -> bool {
        matches!(self.status, Status::Charging | Status::AwaitingCardUpdate)
    }

    fn open(&mut self, customer: String, credit: u64) -> Result<(), Error> {
        if self.in_progress() {
            return Err(Error::conflict("a payment is in progress"));
        }
        self.customer = Some(customer);
        self.credit = credit;
        Ok(())
    }

    fn pay(
        &mut self,
        ctx: &mut Context,
        reply: ReplyHandle,
        amount: u64,
        card: String,
        provider_url: String,
        update_timeout_ms: Option<u64>,
    ) -> Result<(), Error> {
        if self.status != Status::New {
            return Err(Error::conflict(format!(
                "this payment is already {}",
                status_text(self.status)
            )));
        }
        if amount == 0 {
            return Err(Error::invalid("amount must be positive"));
        }
        let used = self.credit.min(amount);
        self.credit -= used;
        self.amount = amount;
        self.used_credit = used;
        self.card_amount = amount - used;
        self.provider_url = Some(provider_url);
        self.update_timeout_ms = update_timeout_ms.unwrap_or(DEFAULT_UPDATE_TIMEOUT_MS);
        if self.card_amount == 0 {
            return self.paid(ctx, Some(reply));
        }
        // A refused call (URL not allowed) fails this turn: nothing was deducted, and the
        // caller sees why.
        self.charge(ctx, &card)?;
        self.reply = Some(reply);
        Ok(())
    }

    /// Send the charge for `card_amount` to the provider.
    fn charge(&mut self, ctx: &mut Context, card: &str) -> Result<(), Error> {
        let url = self
            .provider_url
            .clone()
            .ok_or_else(|| Error::new("no provider URL"))?;
        self.charge_attempts += 1;
        let req = HttpRequest::post(url)
            .json(&Charge {
                amount: self.card_amount,
                card,
            })?
            .max_attempts(3)
            .timeout(Duration::from_secs(5));
        ctx.http_call(&format!("charge-{}", self.charge_attempts), req)?;
        self.card_last4 = Some(last4(card));
        self.status = Status::Charging;
        Ok(())
    }

    fn charged(&mut self, ctx: &mut Context, result: HttpResult) -> Result<(), Error> {
        if self.status != Status::Charging
            || result.call_id != format!("charge-{}", self.charge_attempts)
        {
            ctx.log(&format!("ignoring stale result of {}", result.call_id));
            return Ok(());
        }
        let decline = match result.outcome {
            Ok(resp) if resp.status == 402 => "declined (HTTP 402)".to_owned(),
            Ok(resp) if resp.is_success() => match resp.json::<ChargeResponse>() {
                Ok(ChargeResponse { status: Some(s) }) if s == "approved" => {
                    self.charged_card = self.card_amount;
                    let reply = self.reply.take();
                    return self.paid(ctx, reply);
                }
                Ok(ChargeResponse { status: Some(s) }) if s == "declined" => "declined".to_owned(),
                _ => format!(
                    "provider error: unexpected answer {}",
                    snippet(&resp.text())
                ),
            },
            Ok(resp) => format!(
                "provider error: HTTP {}: {}",
                resp.status,
                snippet(&resp.text())
            ),
            Err(e) => format!("provider error: {e}"),
        };
        ctx.warn(&format!(
            "charge {} not approved: {decline}; waiting {} ms for a card update",
            self.charge_attempts, self.update_timeout_ms
        ));
        // The payload names the decline it belongs to, so a timeout that fired just as a
        // new card arrived is recognised as stale.
        ctx.set_timer_after(
            UPDATE_TIMER,
            Duration::from_millis(self.update_timeout_ms),
            &self.charge_attempts,
        )?;
        self.last_decline = Some(decline);
        self.status = Status::AwaitingCardUpdate;
        Ok(())
    }

    fn update_card(&mut self, ctx: &mut Context, card: &str) -> Result<(), Error> {
        if self.status != Status::AwaitingCardUpdate {
            return Err(Error::failed_precondition(format!(
                "no card update expected: the payment is {}",
                status_text(self.status)
            )));
        }
        ctx.cancel_timer(UPDATE_TIMER);
        self.charge(ctx, card)
    }

    fn timed_out(&mut self, ctx: &mut Context, t: Timer) -> Result<(), Error> {
        let for_attempt: u32 = t.payload()?;
        if self.status != Status::AwaitingCardUpdate || for_attempt != self.charge_attempts {
            return Ok(());
        }
        // Compensate: the credit taken for this payment goes back.
        self.credit += self.used_credit;
        self.compensated = true;
        self.status = Status::Failed;
        if let Some(r) = self.reply.take() {
            ctx.reject(&r, DECLINED)?;
        }
        ctx.complete();
        Ok(())
    }

    fn paid(&mut self, ctx: &mut Context, reply: Option<ReplyHandle>) -> Result<(), Error> {
        self.status = Status::Paid;
        if let Some(r) = reply {
            ctx.reply(
                &r,
                &Received {
                    status: "payment received",
                    charged_card: self.charged_card,
                    used_credit: self.used_credit,
                },
            )?;
        }
        ctx.complete();
        Ok(())
    }
}

fn status_text(s: Status) -> &'static str {
    match s {
        Status::New => "new",
        Status::Charging => "charging",
        Status::AwaitingCardUpdate => "awaiting a card update",
        Status::Paid => "paid",
        Status::Failed => "failed",
    }
}

fn last4(card: &str) -> String {
    let digits: Vec<char> = card.chars().filter(char::is_ascii_digit).collect();
    digits[digits.len().saturating_sub(4)..].iter().collect()
}

/// At most 200 characters of a response body, for messages.
fn snippet(text: &str) -> String {
    text.chars().take(200).collect()
}

impl Actor for Payment {
    type Input = Input;

    fn handle(&mut self, ctx: &mut Context, msg: Message<Input>) -> Result<(), Error> {
        self.handle_message(ctx, msg)?;
        // The step the payment is in, for its history and the module's process map.
        ctx.step(status_text(self.status));
        Ok(())
    }
}

impl Payment {
    fn handle_message(&mut self, ctx: &mut Context, msg: Message<Input>) -> Result<(), Error> {
        match msg {
            Message::Request {
                reply,
                body: Input::Open { customer, credit },
            } => {
                self.open(customer, credit)?;
                ctx.reply(&reply, &Credit { credit })
            }
            Message::Event(Input::Open { customer, credit }) => self.open(customer, credit),
            Message::Request {
                reply,
                body:
                    Input::Pay {
                        amount,
                        card,
                        provider_url,
                        update_timeout_ms,
                    },
            } => self.pay(ctx, reply, amount, card, provider_url, update_timeout_ms),
            Message::Event(Input::Pay { .. }) => Err(Error::invalid("pay must be a request")),
            Message::Request {
                reply,
                body: Input::UpdateCard { card },
            } => {
                self.update_card(ctx, &card)?;
                ctx.reply(
                    &reply,
                    &Charging {
                        status: "charging",
                        charge_attempt: self.charge_attempts,
                    },
                )
            }
            Message::Event(Input::UpdateCard { card }) => self.update_card(ctx, &card),
            Message::HttpResult(result) => self.charged(ctx, result),
            Message::Timer(t) if t.name == UPDATE_TIMER => self.timed_out(ctx, t),
            // This process sets no other timers and asks no other actors.
            Message::Timer(_) | Message::AskReply(_) => Ok(()),
        }
    }
}

export_actor!(Payment);
