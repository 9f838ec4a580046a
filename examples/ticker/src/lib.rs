//! `ticker`: a timer benchmark and test process (used by `dwell-bench`). The event (or
//! request) `{"timers": [{"name": "t1", "at_ms": <unix ms>}, ...]}` sets those timers with
//! `ctx.set_timer_at`, each carrying its due time as payload. Names are `t<n>` with
//! `n < 100000`, so that the state can track every timer in one byte.
//!
//! When a timer fires the actor records its lateness — the turn's `now_ms` minus the due
//! time, so timer-to-turn delay (negative if it fired early) — and checks that it fires
//! exactly once: a second fire of a name (not set again meanwhile) counts in `duplicates`,
//! a fire of a name never set in `unknown`. A request is answered with the summary.
//!
//! State (kept small, since every turn decodes and encodes it): `{"set": n, "fired": n,
//! "pending": n, "duplicates": n, "unknown": n, "lateness_ms": [...], "slots": [...]}`.
use dwell_sdk::prelude::*;

/// Largest timer index + 1.
const MAX_TIMERS: usize = 100_000;
/// `slots[n]` for timer `t<n>`: never set, set and pending, fired.
const NEVER: u8 = 0;
const PENDING: u8 = 1;
const FIRED: u8 = 2;

#[derive(Default, Serialize, Deserialize)]
struct Ticker {
    /// Timers set so far (a name set again replaces its timer and counts again).
    set: u64,
    /// Timer turns handled.
    fired: u64,
    /// Timers set and not fired yet.
    pending: u64,
    duplicates: u64,
    unknown: u64,
    /// `now_ms - due` of every fire, in firing order.
    lateness_ms: Vec<i64>,
    /// One byte per timer index: NEVER, PENDING or FIRED.
    slots: Vec<u8>,
}

#[derive(Deserialize)]
struct SetTimer {
    name: String,
    at_ms: u64,
}

#[derive(Deserialize)]
struct Cmd {
    #[serde(default)]
    timers: Vec<SetTimer>,
}

#[derive(Serialize)]
struct Summary {
    set: u64,
    fired: u64,
    pending: u64,
    duplicates: u64,
    unknown: u64,
}

fn index(name: &str) -> Option<usize> {
    let n: usize = name.strip_prefix('t')?.parse().ok()?;
    (n < MAX_TIMERS).then_some(n)
}

impl Ticker {
    fn set_all(&mut self, ctx: &mut Context, cmd: Cmd) -> Result<(), Error> {
        for t in cmd.timers {
            let i = index(&t.name)
                .ok_or_else(|| Error::new(format!("timer name {:?} is not t<n>", t.name)))?;
            ctx.set_timer_at(&t.name, t.at_ms, &t.at_ms)?;
            if self.slots.len() <= i {
                self.slots.resize(i + 1, NEVER);
            }
            if self.slots[i] != PENDING {
                self.slots[i] = PENDING;
                self.pending += 1;
            }
            self.set += 1;
        }
        Ok(())
    }

    fn fired(&mut self, ctx: &Context, timer: Timer) -> Result<(), Error> {
        let due: u64 = timer.payload()?;
        self.fired += 1;
        self.lateness_ms.push(ctx.now_ms() as i64 - due as i64);
        match index(&timer.name).and_then(|i| self.slots.get_mut(i)) {
            Some(slot) if *slot == PENDING => {
                *slot = FIRED;
                self.pending -= 1;
            }
            Some(slot) if *slot == FIRED => self.duplicates += 1,
            _ => self.unknown += 1,
        }
        Ok(())
    }

    fn summary(&self) -> Summary {
        Summary {
            set: self.set,
            fired: self.fired,
            pending: self.pending,
            duplicates: self.duplicates,
            unknown: self.unknown,
        }
    }
}

impl Actor for Ticker {
    type Input = Cmd;

    fn handle(&mut self, ctx: &mut Context, msg: Message<Cmd>) -> Result<(), Error> {
        match msg {
            Message::Request { reply, body } => {
                self.set_all(ctx, body)?;
                ctx.reply(&reply, &self.summary())
            }
            Message::Event(body) => self.set_all(ctx, body),
            Message::Timer(timer) => self.fired(ctx, timer),
            _ => Ok(()),
        }
    }
}

export_actor!(Ticker);
