//! Overload protection: past a limit, calls get 503 at once and connections
//! are refused with a reason; counts never drift; limits change while
//! running.

mod common;

use common::*;
use drpc::{Code, Config, Endpoint, Limits, Rate, Router};
use tokio::io::AsyncReadExt;

fn config(limits: Limits) -> Config {
    Config {
        limits,
        ..Config::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_past_the_session_limit_get_503_at_once_and_counts_return_to_zero() {
    let (routes, mut gate) = gated_router();
    let limits = Limits {
        max_calls_per_session: 4,
        ..Limits::default()
    };
    let p = pair_with(routes, Router::new(), config(limits)).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(call_waiting(&p.session, &mut gate).await);
    }
    assert_eq!(p.accepted.calls_running(), 4);
    for _ in 0..10 {
        let err = within(
            "refusal",
            p.session.call::<_, i64>("/math/add", &Add { a: 1, b: 1 }),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), Code::OVERLOADED, "{err}");
        assert!(err.message().contains("max_calls_per_session"), "{err}");
    }
    gate.release.send(true).unwrap();
    for h in held {
        within("held call", h).await.unwrap().unwrap();
    }
    let sum: i64 = p
        .session
        .call("/math/add", &Add { a: 1, b: 1 })
        .await
        .unwrap();
    assert_eq!(sum, 2);
    assert_eq!(p.accepted.calls_running(), 0);
    assert_eq!(p.server.calls_running(), 0);
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_limit_counts_every_session() {
    let (routes, mut gate) = gated_router();
    let limits = Limits {
        max_calls: 2,
        ..Limits::default()
    };
    let p = pair_with(routes, Router::new(), config(limits)).await;
    let other = within("second dial", p.client.dial(&p.addr)).await.unwrap();
    let a = call_waiting(&p.session, &mut gate).await;
    let b = call_waiting(&other, &mut gate).await;
    let err = other
        .call::<_, i64>("/math/add", &Add { a: 1, b: 1 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OVERLOADED);
    assert!(err.message().contains("Limits::max_calls)"), "{err}");
    gate.release.send(true).unwrap();
    within("a", a).await.unwrap().unwrap();
    within("b", b).await.unwrap().unwrap();
    assert_eq!(p.server.calls_running(), 0);
    p.close().await;
}

#[tokio::test]
async fn a_rate_limit_takes_a_burst_then_refuses() {
    let limits = Limits {
        calls_per_second: Some(Rate {
            per_second: 1,
            burst: 5,
        }),
        ..Limits::default()
    };
    let p = pair_with(test_router(), Router::new(), config(limits)).await;
    let mut ok = 0;
    let mut refused = 0;
    for _ in 0..20 {
        match p
            .session
            .call::<_, i64>("/math/add", &Add { a: 1, b: 1 })
            .await
        {
            Ok(_) => ok += 1,
            Err(e) => {
                assert_eq!(e.code(), Code::OVERLOADED);
                assert!(e.message().contains("calls per second"), "{e}");
                refused += 1;
            }
        }
    }
    // The burst, plus at most one token refilled while the calls ran.
    assert!((5..=6).contains(&ok), "{ok} calls taken");
    assert_eq!(ok + refused, 20);

    // Lifted while running: every call is taken again.
    p.server.set_limits(Limits::default());
    assert_eq!(p.server.limits(), Limits::default());
    for _ in 0..20 {
        let sum: i64 = p
            .session
            .call("/math/add", &Add { a: 1, b: 1 })
            .await
            .unwrap();
        assert_eq!(sum, 2);
    }
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_session_limit_are_refused_with_a_reason() {
    let limits = Limits {
        max_sessions: 1,
        ..Limits::default()
    };
    let p = pair_with(test_router(), Router::new(), config(limits)).await;

    // A drpc dialer sees why: its dial fails with the notice, or its new
    // session closes with it.
    let other = Endpoint::builder().build().unwrap();
    let reason = match within("refused dial", other.dial(&p.addr)).await {
        Err(e) => e,
        Ok(s) => {
            within("refused session closes", s.closed()).await;
            s.close_reason().unwrap()
        }
    };
    assert_eq!(reason.code(), Code::OVERLOADED, "{reason}");
    assert!(reason.message().contains("max_sessions"), "{reason}");

    // On the wire it is a reply with seq 0 and status 503, then the end.
    let mut raw = tokio::net::TcpStream::connect(p.addr.target())
        .await
        .unwrap();
    let mut got = Vec::new();
    within("notice", raw.read_to_end(&mut got)).await.unwrap();
    assert_eq!(
        &got[4..8],
        &[1, 2, 1, 0],
        "version 1, a reply, msgpack, no flags"
    );
    assert_eq!(&got[8..12], &[0, 0, 0, 0], "seq 0");
    assert_eq!(&got[16..20], &503i32.to_be_bytes(), "status 503");

    // A flood of them leaves the one session served.
    let flood: Vec<_> = (0..50)
        .map(|_| {
            let addr = p.addr.target().to_string();
            tokio::spawn(async move {
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                let mut sink = Vec::new();
                let _ = s.read_to_end(&mut sink).await;
            })
        })
        .collect();
    let sum: i64 = p
        .session
        .call("/math/add", &Add { a: 2, b: 2 })
        .await
        .unwrap();
    assert_eq!(sum, 4);
    for f in flood {
        within("flooder refused", f).await.unwrap();
    }
    assert_eq!(p.server.session_count(), 1);
    other.close().await;
    p.close().await;
}

#[tokio::test]
async fn limits_hold_for_dialing_too() {
    let server = Endpoint::builder().router(test_router()).build().unwrap();
    let addr = server.listen("tcp://127.0.0.1:0").await.unwrap();
    let client = Endpoint::builder()
        .config(config(Limits {
            max_sessions: 1,
            ..Limits::default()
        }))
        .build()
        .unwrap();
    let _first = client.dial(&addr).await.unwrap();
    let err = client.dial(&addr).await.unwrap_err();
    assert_eq!(err.code(), Code::OVERLOADED, "{err}");
    client.close().await;
    server.close().await;
}
