//! `hostile`: a guest that misbehaves on demand, for testing the sandbox.
//!
//! `{"do": "loop"}` spins forever, `{"do": "bomb"}` grows memory without bound,
//! `{"do": "trap"}` panics (a Wasm trap), `{"do": "recurse"}` overflows the stack,
//! `{"do": "huge", "bytes": n}` returns a state with n (default 64 Mi) bytes of ballast,
//! `{"do": "refuse"}` returns a guest error, `{"do": "shout"}` writes 3 KiB to stderr and
//! answers like `ok`, `{"do": "forge"}` logs a line with a newline and a fake server log
//! line after it, `{"do": "flood", "bytes": n}` logs 1,000 lines of n (default 1 Ki)
//! bytes, `{"do": "touch", "bytes": n}` grows its memory by touching n bytes once,
//! `{"do": "forge_reply", "handle": h}` answers a reply handle it made up, and
//! `{"do": "ok"}` counts and answers `{"ok": n}`.
use dwell_sdk::prelude::*;

#[derive(Default, Serialize, Deserialize)]
struct Hostile {
    handled: u64,
    #[serde(default)]
    /// A string, so that (de)serializing a large state is a copy, not a loop per byte.
    ballast: String,
}

#[derive(Deserialize)]
struct Cmd {
    #[serde(rename = "do")]
    action: String,
    /// For `huge`: how many bytes of ballast to keep in the state.
    #[serde(default)]
    bytes: Option<usize>,
    /// For `forge_reply`: a reply handle made up by the guest.
    #[serde(default)]
    handle: Option<String>,
}

#[derive(Serialize)]
struct Ok_ {
    ok: u64,
}

#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(n: u64, buf: &mut [u8; 256]) -> u64 {
    buf[(n % 256) as usize] = n as u8;
    let mut inner = [0u8; 256];
    recurse(n + 1, &mut inner) + buf[0] as u64
}

impl Actor for Hostile {
    type Input = Cmd;

    fn handle(&mut self, ctx: &mut Context, msg: Message<Cmd>) -> Result<(), Error> {
        let (reply, cmd) = match msg {
            Message::Request { reply, body } => (Some(reply), body),
            Message::Event(body) => (None, body),
            _ => return Ok(()),
        };
        match cmd.action.as_str() {
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    let mut chunk = vec![0u8; 1 << 20];
                    chunk[0] = 1;
                    hoard.push(std::hint::black_box(chunk));
                }
            }
            "trap" => panic!("hostile guest trapped on purpose"),
            "recurse" => {
                let mut buf = [0u8; 256];
                let n = recurse(0, &mut buf);
                self.handled += n;
            }
            "huge" => {
                self.ballast = "7".repeat(cmd.bytes.unwrap_or(64 << 20));
            }
            "refuse" => return Err(Error::new("refused on purpose")),
            "shout" => eprintln!("{}", "a".repeat(3 << 10)),
            "forge" => ctx.log(
                "innocent\n2026-01-01T00:00:00.000000Z  INFO dwell: FORGED admin key is dw_admin",
            ),
            "touch" => {
                // Grow linear memory by touching `bytes`, then let go: the memory stays.
                let mut v = vec![0u8; cmd.bytes.unwrap_or(1 << 20)];
                for i in (0..v.len()).step_by(4096) {
                    v[i] = 1;
                }
                std::hint::black_box(&v);
            }
            "forge_reply" => {
                let handle = ReplyHandle(cmd.handle.clone().unwrap_or_default());
                ctx.reply(&handle, &"forged")?;
            }
            "flood" => {
                let line = "f".repeat(cmd.bytes.unwrap_or(1 << 10));
                for _ in 0..1000 {
                    ctx.log(&line);
                }
            }
            _ => {}
        }
        self.handled += 1;
        if let Some(reply) = reply {
            ctx.reply(&reply, &Ok_ { ok: self.handled })?;
        }
        Ok(())
    }
}

export_actor!(Hostile);
