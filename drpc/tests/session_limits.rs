//! A session's maximum age and idle timeout (`Config::max_session_age`,
//! `Config::idle_timeout`, and their per-session overrides), on tokio's
//! paused clock over in-memory pipes: expiry renews the connection with
//! the going-away notice, a dialed session redials, and no call fails.

mod common;

use common::*;
use drpc::memory::MemoryNet;
use drpc::{Code, Config, Endpoint, Session, SessionState, Status};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

const SERVER: &str = "mem://server";
const S: Duration = Duration::from_secs(1);
/// The longest a test waits for an event, on the paused clock.
const LONG: Duration = Duration::from_secs(600);

/// A server and a client on one in-memory network; the client dialed. The
/// server's accepted sessions arrive on `accepts`.
struct Net {
    server: Endpoint,
    client: Endpoint,
    session: Session,
    accepts: mpsc::UnboundedReceiver<Session>,
    _net: MemoryNet,
}

async fn net(server: Config, client: Config) -> Net {
    let net = MemoryNet::new();
    let (tx, accepts) = mpsc::unbounded_channel();
    let server = Endpoint::builder()
        .config(server)
        .router(test_router())
        .plugin(AcceptNotify(tx))
        .build()
        .unwrap();
    net.serve(SERVER, &server);
    let client = Endpoint::builder()
        .config(client)
        .dialer(net.dialer())
        .build()
        .unwrap();
    let session = client.dial(SERVER).await.unwrap();
    Net {
        server,
        client,
        session,
        accepts,
        _net: net,
    }
}

impl Net {
    /// The next accepted session; the paused clock makes a long wait cost
    /// nothing.
    async fn accepted(&mut self) -> Session {
        tokio::time::timeout(LONG, self.accepts.recv())
            .await
            .expect("an accepted session within the time")
            .unwrap()
    }

    async fn close(self) {
        self.client.close().await;
        self.server.close().await;
    }
}

fn with(f: impl FnOnce(&mut Config)) -> Config {
    let mut c = Config::default();
    f(&mut c);
    c
}

fn is_closed(session: &Session) -> bool {
    session.state() == SessionState::Closed
}

async fn closed_reason(session: &Session) -> Status {
    tokio::time::timeout(LONG, session.closed())
        .await
        .expect("the session's close within the time");
    session.close_reason().unwrap()
}

/// Calls `/slow` (`ms` each) from `callers` tasks until `until` on the
/// paused clock; returns how many calls succeeded, and the failures.
async fn steady_load(
    session: &Session,
    callers: usize,
    ms: u64,
    until: Instant,
) -> (usize, Vec<Status>) {
    let tasks: Vec<_> = (0..callers)
        .map(|i| {
            let s = session.clone();
            tokio::spawn(async move {
                // Callers out of step, so some calls start at every moment.
                tokio::time::sleep(Duration::from_millis(ms * i as u64 / callers as u64)).await;
                let (mut ok, mut failed) = (0, Vec::new());
                // Bounded by count as well as by time.
                for _ in 0..100_000 {
                    if Instant::now() >= until {
                        break;
                    }
                    match s.call::<_, u64>("/slow", &ms).await {
                        Ok(_) => ok += 1,
                        Err(e) => failed.push(e),
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    let (mut ok, mut failed) = (0, Vec::new());
    for t in tasks {
        let (o, f) = t.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    (ok, failed)
}

#[tokio::test(start_paused = true)]
async fn a_session_past_its_maximum_age_is_renewed_and_no_call_fails() {
    let mut n = net(
        with(|c| c.max_session_age = Some(60 * S)),
        Config::default(),
    )
    .await;
    let first = n.accepted().await;
    let started = Instant::now();
    let (ok, failed) = steady_load(&n.session, 8, 300, started + 150 * S).await;
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(ok > 3000, "{ok} calls");
    // Renewed at 54 to 60 s of each connection's age: twice in 150 s.
    let reason = closed_reason(&first).await;
    assert_eq!(reason.code(), Code::CONNECTION_CLOSED);
    assert!(reason.message().contains("maximum age (60s)"), "{reason}");
    let second = n.accepted().await;
    let third = n.accepted().await;
    assert!(is_closed(&second));
    assert!(!is_closed(&third));
    // The client's session is the same one throughout, on its third
    // connection, although `Redial::after_shutdown` is off.
    assert_eq!(n.session.state(), SessionState::Active);
    assert_eq!(n.client.session_count(), 1);
    n.close().await;
}

#[tokio::test(start_paused = true)]
async fn the_dialing_side_renews_its_own_connection_at_once() {
    let mut n = net(
        Config::default(),
        with(|c| c.max_session_age = Some(30 * S)),
    )
    .await;
    let first = n.accepted().await;
    let started = Instant::now();
    let second = n.accepted().await;
    // The accepting side saw the notice and closed; the dialer dialed at
    // once (no backoff: the peer asked for nothing, it is there) and did
    // not wait out the notice's linger: the peer ended its stream at once.
    let reason = closed_reason(&first).await;
    assert!(
        reason.message().contains("renewing the connection"),
        "{reason}"
    );
    let renewed_after = started.elapsed();
    assert!(
        (27 * S..=30 * S + Duration::from_millis(20)).contains(&renewed_after),
        "{renewed_after:?}"
    );
    assert_eq!(n.session.call::<_, i64>("/echo", &7).await.unwrap(), 7);
    assert!(!is_closed(&second));
    n.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_dialer_s_own_renewal_lets_its_calls_in_flight_finish() {
    let mut n = net(
        Config::default(),
        with(|c| c.max_session_age = Some(30 * S)),
    )
    .await;
    let first = n.accepted().await;
    tokio::time::sleep(25 * S).await;
    // Runs across the renewal at 27 to 30 s: answered on the old
    // connection, which drains before it ends.
    let opts = drpc::CallOptions::new().timeout(60 * S);
    let reply = n
        .session
        .call_with::<_, u64>("/slow", &10_000u64, opts)
        .await;
    assert_eq!(reply.unwrap().value, 10_000);
    closed_reason(&first).await;
    let second = n.accepted().await;
    assert!(!is_closed(&second));
    n.close().await;
}

#[tokio::test(start_paused = true)]
async fn an_idle_session_closes_and_redials_only_when_needed() {
    let mut n = net(with(|c| c.idle_timeout = Some(10 * S)), Config::default()).await;
    let first = n.accepted().await;
    n.session.call::<_, i64>("/echo", &1).await.unwrap();
    let last_call = Instant::now();
    let reason = closed_reason(&first).await;
    let idle_for = last_call.elapsed();
    assert!(reason.message().contains("idle"), "{reason}");
    assert!(
        (10 * S..=12_500 * Duration::from_millis(1)).contains(&idle_for),
        "{idle_for:?}"
    );
    // Nothing needs the connection: the session waits to redial.
    tokio::time::sleep(300 * S).await;
    assert_eq!(n.session.state(), SessionState::Redialing);
    assert!(n.accepts.try_recv().is_err(), "redialed with nothing to do");
    // A call needs it: the session dials, and the call goes through.
    assert_eq!(n.session.call::<_, i64>("/echo", &2).await.unwrap(), 2);
    let second = n.accepted().await;
    assert!(!is_closed(&second));
    n.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_call_running_past_the_idle_timeout_keeps_the_session() {
    let mut n = net(with(|c| c.idle_timeout = Some(10 * S)), Config::default()).await;
    let first = n.accepted().await;
    let ms = 60_000u64;
    let opts = drpc::CallOptions::new().timeout(Duration::from_millis(2 * ms));
    let reply = n.session.call_with::<_, u64>("/slow", &ms, opts).await;
    assert_eq!(reply.unwrap().value, ms);
    assert!(!is_closed(&first), "closed while a call ran");
    let done = Instant::now();
    closed_reason(&first).await;
    assert!((10 * S..=12_500 * Duration::from_millis(1)).contains(&done.elapsed()));
    n.close().await;
}

#[tokio::test(start_paused = true)]
async fn drpc_s_own_calls_do_not_keep_a_session_busy() {
    let mut n = net(with(|c| c.idle_timeout = Some(10 * S)), Config::default()).await;
    let first = n.accepted().await;
    let started = Instant::now();
    // Health checks every 2 s, as a load balancer (or a heartbeat) would.
    let s = n.session.clone();
    let watcher = first.clone();
    let checks = tokio::spawn(async move {
        for _ in 0..100 {
            if is_closed(&watcher) {
                break;
            }
            let _ = s.call::<_, String>(drpc::HEALTH_METHOD, &()).await;
            tokio::time::sleep(2 * S).await;
        }
    });
    let reason = closed_reason(&first).await;
    assert!(reason.message().contains("idle"), "{reason}");
    assert!(started.elapsed() <= 12_500 * Duration::from_millis(1));
    checks.await.unwrap();
    n.close().await;
}

#[tokio::test(start_paused = true)]
async fn limits_set_on_one_session_override_the_endpoint_s() {
    let mut n = net(Config::default(), Config::default()).await;
    let first = n.accepted().await;
    assert_eq!((first.max_age(), first.idle_timeout()), (None, None));
    let started = Instant::now();
    first.set_idle_timeout(Some(5 * S));
    assert_eq!(first.idle_timeout(), Some(5 * S));
    let reason = closed_reason(&first).await;
    assert!(reason.message().contains("idle timeout (5s)"), "{reason}");
    assert!((5 * S..=6_250 * Duration::from_millis(1)).contains(&started.elapsed()));
    // The next connection starts from the endpoint's limits (none); a
    // maximum age set on it counts from that connection's start.
    n.session.call::<_, i64>("/echo", &1).await.unwrap();
    let second = n.accepted().await;
    assert_eq!(second.idle_timeout(), None);
    let connected = Instant::now();
    tokio::time::sleep(100 * S).await;
    assert!(!is_closed(&second));
    second.set_max_age(Some(20 * S));
    // Already older: renewed at once.
    closed_reason(&second).await;
    assert!(connected.elapsed() < 101 * S);
    n.close().await;
}

#[tokio::test(start_paused = true)]
async fn without_redial_an_expired_session_closes_and_says_why() {
    let n = net(with(|c| c.max_session_age = Some(10 * S)), no_redial()).await;
    let reason = closed_reason(&n.session).await;
    assert_eq!(reason.code(), Code::CONNECTION_CLOSED);
    assert!(reason.message().contains("maximum age"), "{reason}");
    let err = n.session.call::<_, i64>("/echo", &1).await.unwrap_err();
    assert!(err.never_ran(), "{err}");
    n.close().await;
}
