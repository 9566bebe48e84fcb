//! Auth over real sockets: credentials checked before any handler runs,
//! refusals answered with 401, identities reaching handlers, and the
//! credential presented again on every redial.

use drpc::{CallCtx, Code, Config, Endpoint, PushCtx, Router, Session, Status};
use drpc_plugins::{Auth, Authenticated};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen in time"))
}

#[derive(Clone, Debug, PartialEq)]
struct User(String);

/// What the server's handlers saw.
#[derive(Default)]
struct Seen {
    calls: AtomicUsize,
    pushes: AtomicUsize,
}

/// A server whose checker knows two tokens; `/record` (a call and a push)
/// records that a handler ran, `/whoami` answers with the identity.
async fn server(
    timeout: Duration,
) -> (Endpoint, drpc::Addr, Arc<Seen>, mpsc::UnboundedReceiver<()>) {
    let seen = Arc::new(Seen::default());
    let (pushed_tx, pushed) = mpsc::unbounded_channel();
    let mut r = Router::new();
    let s = seen.clone();
    r.call("/record", move |_: CallCtx, _: ()| {
        s.calls.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Status>(()) }
    })
    .unwrap();
    let s = seen.clone();
    r.push("/record", move |_: PushCtx, _: ()| {
        s.pushes.fetch_add(1, Ordering::SeqCst);
        let _ = pushed_tx.send(());
        async {}
    })
    .unwrap();
    r.call("/whoami", |ctx: CallCtx, _: ()| async move {
        let user = ctx
            .session()
            .value::<Authenticated<User>>()
            .ok_or_else(|| Status::internal("no identity on an accepted session"))?;
        Ok::<_, Status>(user.0 .0)
    })
    .unwrap();
    let auth = Auth::new()
        .timeout(timeout)
        .checker(|_: Session, token: String| async move {
            match token.as_str() {
                "alice-1" | "alice-2" => Ok(User("alice".into())),
                "bob" => Ok(User("bob".into())),
                _ => Err(format!("unknown token {token:?}")),
            }
        });
    let ep = Endpoint::builder().router(r).plugin(auth).build().unwrap();
    let addr = ep.listen("tcp://127.0.0.1:0").await.unwrap();
    (ep, addr, seen, pushed)
}

/// Alice, who is authenticated, pushes and calls `/record`: the handlers
/// do run for her, and hers are the only messages they ever recorded. So a
/// zero before her is the handlers never running for the refused peer, not
/// them being unreachable.
async fn only_alices_messages_are_recorded(
    addr: &drpc::Addr,
    seen: &Seen,
    pushed: &mut mpsc::UnboundedReceiver<()>,
) {
    let alice = Endpoint::builder()
        .plugin(Auth::new().credential("alice-1"))
        .build()
        .unwrap();
    let a = alice.dial(addr).await.unwrap();
    a.push("/record", &()).await.unwrap();
    a.call::<_, ()>("/record", &()).await.unwrap();
    within("alice's push", pushed.recv()).await.unwrap();
    assert_eq!(seen.calls.load(Ordering::SeqCst), 1);
    assert_eq!(seen.pushes.load(Ordering::SeqCst), 1);
    alice.close().await;
}

fn no_redial() -> Config {
    let mut config = Config::default();
    config.redial.enabled = false;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_session_gets_the_identity_its_credential_proves() {
    let (server, addr, _, _) = server(Duration::from_secs(10)).await;
    let alice = Endpoint::builder()
        .plugin(Auth::new().credential("alice-1"))
        .build()
        .unwrap();
    let bob = Endpoint::builder()
        .plugin(Auth::new().credential("bob"))
        .build()
        .unwrap();
    let a = alice.dial(&addr).await.unwrap();
    let b = bob.dial(&addr).await.unwrap();
    assert_eq!(a.call::<_, String>("/whoami", &()).await.unwrap(), "alice");
    assert_eq!(b.call::<_, String>("/whoami", &()).await.unwrap(), "bob");
    alice.close().await;
    bob.close().await;
    server.close().await;
}

/// Sends a push and a call to `/record` from its dial hook, before the
/// credential (which the `Auth` added after it presents).
struct Eager(mpsc::UnboundedSender<Result<(), Status>>);

impl drpc::Plugin for Eager {
    fn after_dial<'a>(
        &'a self,
        s: &'a Session,
        _: bool,
    ) -> drpc::plugin::BoxFuture<'a, Result<(), Status>> {
        Box::pin(async move {
            s.push("/record", &()).await?;
            // The call is sent from the hook (polled once here), but its
            // reply can only come after the credential is judged, so it
            // is waited for on a task of its own.
            let s = s.clone();
            let mut call = Box::pin(async move { s.call::<_, ()>("/record", &()).await });
            let sent = poll_once(call.as_mut()).await;
            assert!(sent.is_none(), "answered before the credential");
            let tx = self.0.clone();
            tokio::spawn(async move {
                let _ = tx.send(call.await);
            });
            Ok(())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_credential_fails_the_dial_with_401_and_runs_nothing() {
    let (server, addr, seen, mut pushed) = server(Duration::from_secs(10)).await;
    let (tx, mut eager) = mpsc::unbounded_channel();
    let mallory = Endpoint::builder()
        .plugin(Eager(tx))
        .plugin(Auth::new().credential("guess"))
        .build()
        .unwrap();
    let refused = within("the dial", mallory.dial(&addr)).await.unwrap_err();
    assert_eq!(refused.code(), Code::UNAUTHORIZED, "{refused}");
    assert!(
        refused.message().contains("unknown token \"guess\""),
        "{refused}"
    );
    assert_eq!(mallory.session_count(), 0);
    // The call sent before the credential is answered with the refusal, or
    // ends with the session it was on, which closed for it.
    let early = within("the early call", eager.recv()).await.unwrap();
    let err = early.unwrap_err();
    assert!(
        [Code::UNAUTHORIZED, Code::CONNECTION_CLOSED].contains(&err.code()),
        "{err}"
    );

    only_alices_messages_are_recorded(&addr, &seen, &mut pushed).await;
    mallory.close().await;
    server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_handler_of_an_unauthenticated_session_runs() {
    let (server, addr, seen, mut pushed) = server(Duration::from_millis(300)).await;
    // A peer with no credential at all: its dial completes (it has no hook
    // to wait for), and it pushes and calls at once.
    let rogue = Endpoint::builder().config(no_redial()).build().unwrap();
    let s = rogue.dial(&addr).await.unwrap();
    s.push("/record", &()).await.unwrap();
    let err = within("the call", s.call::<_, ()>("/record", &()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::UNAUTHORIZED, "{err}");
    assert!(err.message().contains("no credential"), "{err}");
    within("the refused session to close", s.closed()).await;

    only_alices_messages_are_recorded(&addr, &seen, &mut pushed).await;
    rogue.close().await;
    server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credential_is_presented_again_on_every_redial() {
    let (server, addr, _, _) = server(Duration::from_secs(10)).await;
    let (presented_tx, mut presented) = mpsc::unbounded_channel();
    let dials = Arc::new(AtomicUsize::new(0));
    let auth = Auth::new().credential_with(move |_| {
        // A fresh token for each connection, as a short-lived one would be.
        let n = dials.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = presented_tx.send(n);
        async move { Ok(format!("alice-{n}")) }
    });
    let client = Endpoint::builder().plugin(auth).build().unwrap();
    let s = client.dial(&addr).await.unwrap();
    assert_eq!(within("first", presented.recv()).await, Some(1));
    assert_eq!(s.call::<_, String>("/whoami", &()).await.unwrap(), "alice");

    // Drop the connection as if it broke: the session redials and presents
    // its next token on the new connection.
    s.disconnect(Status::connection_closed("test: drop the connection"));
    assert_eq!(within("the redial's", presented.recv()).await, Some(2));
    assert_eq!(
        within(
            "a call after the redial",
            s.call::<_, String>("/whoami", &())
        )
        .await
        .unwrap(),
        "alice"
    );
    client.close().await;
    server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dialer_whose_peer_does_not_check_carries_on() {
    let mut r = Router::new();
    r.call("/ping", |_: CallCtx, _: ()| async {
        Ok::<_, Status>("pong")
    })
    .unwrap();
    let server = Endpoint::builder().router(r).build().unwrap();
    let addr = server.listen("tcp://127.0.0.1:0").await.unwrap();
    let client = Endpoint::builder()
        .plugin(Auth::new().credential("anything"))
        .build()
        .unwrap();
    let s = client.dial(&addr).await.unwrap();
    assert_eq!(s.call::<_, String>("/ping", &()).await.unwrap(), "pong");
    client.close().await;
    server.close().await;
}

/// docs/PROTOCOL.md section 3.2's hello, as a drpc dialer sends it first.
const HELLO: &str = "00 00 00 41 01 01 03 00 00 00 00 01 00 00 27 10 00 00 00 00 \
                     00 0c 2f 5f 64 72 70 63 2f 68 65 6c 6c 6f 00 00 00 \
                     00 01 00 0d 64 72 70 63 2d 66 65 61 74 75 72 65 73 \
                     00 0d 63 61 6e 63 65 6c 2c 73 74 72 65 61 6d";
/// Its answer from a drpc acceptor.
const HELLO_ANSWER: &str = "00 00 00 35 01 02 03 00 00 00 00 01 00 00 00 00 00 00 00 00 \
                            00 00 00 00 00 \
                            00 01 00 0d 64 72 70 63 2d 66 65 61 74 75 72 65 73 \
                            00 0d 63 61 6e 63 65 6c 2c 73 74 72 65 61 6d";

/// The exchange in docs/PROTOCOL.md section 10.1, byte for byte, against an
/// acceptor written from the spec alone (a bare TCP socket).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credential_goes_over_the_wire_as_the_spec_shows() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Section 3.2's hello and its answer, then 10.1's exchange.
    const CALL: &str = "00 00 00 28 01 01 04 00 00 00 00 02 00 00 27 10 00 00 00 00 \
                        00 0b 2f 5f 64 72 70 63 2f 61 75 74 68 00 00 00 00 00 \
                        73 33 63 72 65 74";
    const ACCEPTED: &str = "00 00 00 17 01 02 04 00 00 00 00 02 00 00 00 00 00 00 00 00 \
                            00 00 00 00 00 00 00";
    const REFUSED: &str = "00 00 00 19 01 02 04 00 00 00 00 02 00 00 00 00 00 00 01 91 \
                           00 00 00 02 6e 6f 00 00 00";
    let unhex = |s: &str| -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("tcp://{}", listener.local_addr().unwrap());
    let client = Endpoint::builder()
        .config(no_redial())
        .plugin(
            Auth::new()
                .credential("s3cret")
                .timeout(Duration::from_secs(10)),
        )
        .build()
        .unwrap();
    for (answer, accepted) in [(ACCEPTED, true), (REFUSED, false)] {
        let dial = tokio::spawn({
            let (client, addr) = (client.clone(), addr.clone());
            async move { client.dial(addr.as_str()).await }
        });
        let (mut sock, _) = within("accept", listener.accept()).await.unwrap();
        let mut hello = vec![0u8; unhex(HELLO).len()];
        within("the hello", sock.read_exact(&mut hello))
            .await
            .unwrap();
        assert_eq!(hello, unhex(HELLO));
        sock.write_all(&unhex(HELLO_ANSWER)).await.unwrap();
        let mut call = vec![0u8; unhex(CALL).len()];
        within("the credential", sock.read_exact(&mut call))
            .await
            .unwrap();
        assert_eq!(call, unhex(CALL));
        sock.write_all(&unhex(answer)).await.unwrap();
        let dialed = within("the dial", dial).await.unwrap();
        match dialed {
            Ok(session) => {
                assert!(accepted);
                session.close().await;
            }
            Err(status) => {
                assert!(!accepted, "{status}");
                assert_eq!(status.code(), Code::UNAUTHORIZED);
                assert_eq!(status.message(), "no");
            }
        }
    }
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_made_during_a_redial_wait_for_the_credential_to_pass() {
    let (server, addr, seen, _) = server(Duration::from_secs(10)).await;
    let (presenting_tx, mut presenting) = mpsc::unbounded_channel();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let dials = Arc::new(AtomicUsize::new(0));
    let auth = Auth::new().credential_with({
        let gate = gate.clone();
        move |_| {
            let n = dials.fetch_add(1, Ordering::SeqCst) + 1;
            let _ = presenting_tx.send(n);
            let gate = gate.clone();
            async move {
                // The redial's credential waits for the test, so calls can
                // be made while the new connection is up but not yet
                // authenticated.
                if n == 2 {
                    let _ = gate.acquire().await;
                }
                Ok("alice-1".to_string())
            }
        }
    });
    let client = Endpoint::builder().plugin(auth).build().unwrap();
    let s = client.dial(&addr).await.unwrap();
    assert_eq!(within("first", presenting.recv()).await, Some(1));
    s.disconnect(Status::connection_closed("test: drop the connection"));
    assert_eq!(within("the redial's", presenting.recv()).await, Some(2));

    // More calls than the acceptor holds before a credential: were they
    // sent ahead of it, the credential could not be read.
    let (polled_tx, mut polled) = mpsc::unbounded_channel();
    let calls: Vec<_> = (0..200)
        .map(|_| {
            let (s, polled_tx) = (s.clone(), polled_tx.clone());
            tokio::spawn(async move {
                let call = s.call::<_, ()>("/record", &());
                tokio::pin!(call);
                let first = poll_once(call.as_mut()).await;
                let _ = polled_tx.send(());
                match first {
                    Some(result) => result,
                    None => call.await,
                }
            })
        })
        .collect();
    for _ in 0..200 {
        within("a call to start", polled.recv()).await.unwrap();
    }
    gate.add_permits(1);
    for call in calls {
        within("a call", call).await.unwrap().unwrap();
    }
    assert_eq!(seen.calls.load(Ordering::SeqCst), 200);
    client.close().await;
    server.close().await;
}

/// Polls `fut` once: its output if it is ready at once.
async fn poll_once<F: std::future::Future + Unpin>(mut fut: F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut fut).poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_before_the_credential_is_held_in_bounds_and_every_call_ends() {
    let (server, addr, seen, _) = server(Duration::from_millis(300)).await;
    let rogue = Endpoint::builder().config(no_redial()).build().unwrap();
    let s = rogue.dial(&addr).await.unwrap();
    let calls: Vec<_> = (0..1000)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.call::<_, ()>("/record", &()).await })
        })
        .collect();
    let mut refused = 0;
    for call in calls {
        let err = within("a call", call).await.unwrap().unwrap_err();
        match err.code() {
            Code::UNAUTHORIZED => refused += 1,
            Code::CONNECTION_CLOSED => {}
            _ => panic!("{err}"),
        }
    }
    // The acceptor held a bounded number (64, plus the one it had read when
    // the hold was full) and read no further; those were answered with the
    // refusal, the rest ended with the session. (Closing with unread bytes
    // may reset the connection, and a reset can discard answers not yet
    // read, so even none may arrive.)
    assert!(refused <= 65, "{refused} answered 401");
    assert_eq!(seen.calls.load(Ordering::SeqCst), 0);
    within("the session closes", s.closed()).await;
    rogue.close().await;
    server.close().await;
}

#[cfg(feature = "zstd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_credential_is_compressed_and_still_checked() {
    use drpc_plugins::{Compression, Filter};
    // A token over the compression threshold, as a signed JWT can be.
    let token = "a".repeat(4096);
    let expected = token.clone();
    let server = Endpoint::builder()
        .router({
            let mut r = Router::new();
            r.call("/whoami", |ctx: CallCtx, _: ()| async move {
                let user = ctx.session().value::<Authenticated<User>>();
                Ok::<_, Status>(user.map(|u| u.0 .0).unwrap_or_default())
            })
            .unwrap();
            r
        })
        .plugin(Compression::new(Filter::Zstd))
        .plugin(Auth::new().checker(move |_: Session, t: String| {
            let ok = t == expected;
            async move {
                if ok {
                    Ok(User("jwt-holder".into()))
                } else {
                    Err(format!("a token of {} bytes that is not the one", t.len()))
                }
            }
        }))
        .build()
        .unwrap();
    let addr = server.listen("tcp://127.0.0.1:0").await.unwrap();
    let client = Endpoint::builder()
        .plugin(Compression::new(Filter::Zstd))
        .plugin(Auth::new().credential(token))
        .build()
        .unwrap();
    let s = client.dial(&addr).await.unwrap();
    assert_eq!(
        s.call::<_, String>("/whoami", &()).await.unwrap(),
        "jwt-holder"
    );
    client.close().await;
    server.close().await;
}

/// The hello (docs/PROTOCOL.md section 3.2) is answered at once, before
/// any credential: an acceptor does not hold it with the other calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hello_is_answered_before_the_credential() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let unhex = |s: &str| -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    };
    let (server, addr, _, _) = server(Duration::from_secs(10)).await;
    let mut sock = tokio::net::TcpStream::connect(addr.target()).await.unwrap();
    sock.write_all(&unhex(HELLO)).await.unwrap();
    let mut answer = vec![0u8; unhex(HELLO_ANSWER).len()];
    within("the answer", sock.read_exact(&mut answer))
        .await
        .unwrap();
    assert_eq!(answer, unhex(HELLO_ANSWER));
    server.close().await;
}
