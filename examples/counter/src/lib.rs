//! `counter`: the smallest Dwell process. `{"add": n}` as a request or an event adds n to
//! the actor's total; a request is answered with `{"total": t}`.
use dwell_sdk::prelude::*;

#[derive(Default, Serialize, Deserialize)]
struct Counter {
    total: i64,
}

#[derive(Deserialize)]
struct Add {
    add: i64,
}

#[derive(Serialize)]
struct Total {
    total: i64,
}

impl Actor for Counter {
    type Input = Add;

    fn handle(&mut self, ctx: &mut Context, msg: Message<Add>) -> Result<(), Error> {
        match msg {
            Message::Request { reply, body } => {
                self.total += body.add;
                ctx.reply(&reply, &Total { total: self.total })
            }
            Message::Event(body) => {
                self.total += body.add;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

export_actor!(Counter);
