//! A chat room: members push what they say to the room, and the room pushes
//! every line to every member, each side through a typed service. Three
//! members talk in one process, then everyone leaves. Run it with:
//!
//! ```text
//! cargo run --example chat
//! ```

use drpc::{CallCtx, Endpoint, PushCtx, Router, Session, Status};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Served by the room (the listening side).
#[drpc::service]
trait Room {
    /// Joins under `name`; returns who was there already.
    async fn join(&self, ctx: &CallCtx, name: String) -> Result<Vec<String>, Status>;
    /// Says `text` to everyone in the room.
    #[drpc(push)]
    async fn say(&self, ctx: &PushCtx, text: String);
}

/// Served by each member (the dialing side).
#[drpc::service]
trait Member {
    /// A line someone said.
    #[drpc(push)]
    async fn heard(&self, from: String, text: String);
}

/// The members by session id: their names and a client of each.
#[derive(Default)]
struct Chat {
    members: Mutex<BTreeMap<Arc<str>, (String, MemberClient)>>,
}

impl Room for Chat {
    async fn join(&self, ctx: &CallCtx, name: String) -> Result<Vec<String>, Status> {
        let session: &Session = ctx.session();
        let mut members = self.members.lock();
        let here = members.values().map(|(n, _)| n.clone()).collect();
        members.insert(session.id(), (name, MemberClient::new(session.clone())));
        Ok(here)
    }

    async fn say(&self, ctx: &PushCtx, text: String) {
        let (from, everyone) = {
            let members = self.members.lock();
            let Some((from, _)) = members.get(&ctx.session().id()) else {
                return; // not joined: ignored
            };
            let all: Vec<MemberClient> = members.values().map(|(_, c)| c.clone()).collect();
            (from.clone(), all)
        };
        for member in everyone {
            // A member that left meanwhile fails with 102; the rest still hear it.
            let _ = member.heard(from.clone(), text.clone()).await;
        }
    }
}

/// A member that forwards what it hears to `lines`.
struct Ears {
    me: &'static str,
    lines: mpsc::UnboundedSender<String>,
}

impl Member for Ears {
    async fn heard(&self, from: String, text: String) {
        let _ = self.lines.send(format!("[{}] {from}: {text}", self.me));
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut routes = Router::new();
    routes.serve(RoomServer::new(Chat::default()))?;
    let room = Endpoint::builder().router(routes).build()?;
    let addr = room.listen("tcp://127.0.0.1:0").await?;

    let (lines, mut heard) = mpsc::unbounded_channel();
    let mut members = Vec::new();
    for me in ["ada", "bob", "cy"] {
        let mut routes = Router::new();
        let ears = Ears {
            me,
            lines: lines.clone(),
        };
        routes.serve(MemberServer::new(ears))?;
        let endpoint = Endpoint::builder().router(routes).build()?;
        let room = RoomClient::new(endpoint.dial(&addr).await?);
        let here = room.join(me.to_string()).await?;
        println!("{me} joins; already here: {here:?}");
        members.push((endpoint, room));
    }

    let script = [(0, "hello all"), (1, "hi ada"), (2, "hey, bye")];
    for (who, text) in script {
        members[who].1.say(text.to_string()).await?;
    }
    // Every line reaches all three members (pushes from different members
    // are handled concurrently, so their lines may interleave).
    for _ in 0..script.len() * members.len() {
        let line = tokio::time::timeout(std::time::Duration::from_secs(5), heard.recv())
            .await?
            .ok_or("the members stopped")?;
        println!("{line}");
    }

    for (endpoint, _) in members {
        endpoint.close().await;
    }
    room.close().await;
    Ok(())
}
