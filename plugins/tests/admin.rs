//! The control channel: stats, sessions, limits, health and stop, on a
//! Unix socket only its user may open, or on TCP behind a token.

use drpc::{CallCtx, Code, Endpoint, Health, Router, Status};
use drpc_plugins::{
    Admin, Auth, LimitsChange, LimitsView, RouteFigures, RouteStats, SessionInfo, Stats,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("did not happen in time")
}

fn socket_path(tag: &str) -> String {
    std::env::temp_dir()
        .join(format!("drpc-admin-{tag}-{}.sock", std::process::id()))
        .display()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_sessions_limits_health_and_stop_over_a_unix_socket() {
    let mut routes = Router::new();
    routes
        .call("/ping", |_: CallCtx, _: ()| async move {
            Ok::<_, Status>("pong")
        })
        .unwrap();
    routes
        .call("/fail", |_: CallCtx, _: ()| async move {
            Err::<(), _>(Status::new(Code(1001), "no"))
        })
        .unwrap();
    let route_stats = Arc::new(RouteStats::default());
    let target = Endpoint::builder()
        .router(routes)
        .plugin_arc(route_stats.clone())
        .build()
        .unwrap();
    let addr = target.listen("tcp://127.0.0.1:0").await.unwrap();
    let user = Endpoint::builder().build().unwrap();
    let session = within(user.dial(&addr)).await.unwrap();

    let path = socket_path("unix");
    let (admin, at) = Admin::new(&target)
        .route_stats(route_stats)
        .listen(format!("unix://{path}"))
        .await
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "only this user may open the control socket");

    let ctl = Endpoint::builder().build().unwrap();
    let c = within(ctl.dial(&at)).await.unwrap();
    let stats: Stats = c.call("/_drpc/admin/stats", &()).await.unwrap();
    assert_eq!((stats.sessions, stats.health), (1, Health::Serving));
    let sessions: Vec<SessionInfo> = c.call("/_drpc/admin/sessions", &()).await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].peer, session.local_addr().to_string());
    assert!(!sessions[0].dialed);

    for _ in 0..2 {
        let _: String = session.call("/ping", &()).await.unwrap();
    }
    session.call::<_, ()>("/fail", &()).await.unwrap_err();
    let routes: BTreeMap<String, RouteFigures> = c.call("/_drpc/admin/routes", &()).await.unwrap();
    assert_eq!((routes["/ping"].calls, routes["/ping"].errors), (2, 0));
    assert_eq!((routes["/fail"].calls, routes["/fail"].errors), (1, 1));
    assert!(routes["/ping"].max_us >= routes["/ping"].mean_us);

    let change = LimitsChange {
        max_calls: Some(7),
        ..LimitsChange::default()
    };
    let limits: LimitsView = c.call("/_drpc/admin/limits", &change).await.unwrap();
    assert_eq!(limits.max_calls, 7);
    assert_eq!(target.limits().max_calls, 7);

    let now: Health = c
        .call("/_drpc/admin/health", &Health::NotServing)
        .await
        .unwrap();
    assert_eq!(
        (now, target.health()),
        (Health::NotServing, Health::NotServing)
    );

    let said: String = c.call("/_drpc/admin/stop", &Some(1000u64)).await.unwrap();
    assert_eq!(said, "stopping");
    within(session.closed()).await;
    within(target.closed()).await;
    within(c.closed()).await;
    within(admin.closed()).await;
    ctl.close().await;
    user.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_unix_the_channel_needs_a_token_and_checks_it() {
    let target = Endpoint::builder().build().unwrap();
    let err = Admin::new(&target)
        .listen("tcp://127.0.0.1:0")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::UNAUTHORIZED, "{err}");

    let (admin, at) = Admin::new(&target)
        .token("s3cret")
        .listen("tcp://127.0.0.1:0")
        .await
        .unwrap();
    let wrong = Endpoint::builder()
        .plugin(Auth::new().credential("guess"))
        .build()
        .unwrap();
    let refused = within(wrong.dial(&at)).await.unwrap_err();
    assert_eq!(refused.code(), Code::UNAUTHORIZED, "{refused}");
    let right = Endpoint::builder()
        .plugin(Auth::new().credential("s3cret"))
        .build()
        .unwrap();
    let c = within(right.dial(&at)).await.unwrap();
    let stats: Stats = c.call("/_drpc/admin/stats", &()).await.unwrap();
    assert_eq!(stats.sessions, 0);
    right.close().await;
    wrong.close().await;
    admin.close().await;
    target.close().await;
}
