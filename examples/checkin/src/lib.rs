//! `checkin` (first cut): a `check_in` request is not answered in its own turn. The actor
//! keeps the reply handle in its state and answers every waiting caller with the boarding
//! pass when a `boarding_pass_ready` event arrives; later check-ins get the pass at once.
use dwell_sdk::prelude::*;

#[derive(Default, Serialize, Deserialize)]
struct Checkin {
    pass: Option<String>,
    waiting: Vec<ReplyHandle>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Input {
    CheckIn,
    BoardingPassReady { pass: String },
}

#[derive(Serialize)]
struct Pass<'a> {
    pass: &'a str,
}

impl Checkin {
    fn pass_ready(&mut self, ctx: &mut Context, pass: String) -> Result<(), Error> {
        for waiter in self.waiting.drain(..) {
            ctx.reply(&waiter, &Pass { pass: &pass })?;
        }
        self.pass = Some(pass);
        Ok(())
    }
}

impl Actor for Checkin {
    type Input = Input;

    fn handle(&mut self, ctx: &mut Context, msg: Message<Input>) -> Result<(), Error> {
        match msg {
            Message::Request {
                reply,
                body: Input::CheckIn,
            } => match &self.pass {
                Some(pass) => ctx.reply(&reply, &Pass { pass }),
                None => {
                    self.waiting.push(reply);
                    Ok(())
                }
            },
            Message::Event(Input::BoardingPassReady { pass }) => self.pass_ready(ctx, pass),
            Message::Request {
                reply,
                body: Input::BoardingPassReady { pass },
            } => {
                self.pass_ready(ctx, pass)?;
                ctx.reply(&reply, &"ok")
            }
            Message::Event(Input::CheckIn) => Err(Error::new("check_in must be a request")),
            _ => Ok(()),
        }
    }
}

export_actor!(Checkin);
