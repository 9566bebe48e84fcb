//! Typed services (`#[drpc::service]`): routes, arguments on the wire,
//! contexts, pushes, per-call options, and services on both peers.

mod common;

use common::*;
use drpc::{CallCtx, Code, CodecId, Config, PushCtx, Router, Status};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    x: i64,
    y: i64,
}

/// Arithmetic, under `/math` by default.
#[drpc::service]
pub trait Math {
    /// Two arguments: a map on the wire.
    async fn add(&self, a: i64, b: i64) -> Result<i64, Status>;
    /// One argument: the value itself on the wire.
    async fn norm1(&self, p: Point) -> Result<i64, Status>;
    /// No argument.
    async fn calls(&self) -> Result<u64, Status>;
    /// The context by reference.
    async fn whoami(&self, ctx: &CallCtx) -> Result<String, Status>;
    /// The context by value, and a handler that fails.
    async fn fail(&self, ctx: CallCtx, code: i32) -> Result<(), Status>;
    /// Waits until the caller gives up.
    async fn stall(&self) -> Result<(), Status>;
    /// A one-way method.
    #[drpc(push)]
    async fn note(&self, ctx: &PushCtx, text: String, n: u32);
}

struct Calculator {
    calls: AtomicU64,
    notes: mpsc::UnboundedSender<(String, u32, String)>,
}

impl Math for Calculator {
    async fn add(&self, a: i64, b: i64) -> Result<i64, Status> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        a.checked_add(b)
            .ok_or_else(|| Status::bad_message("the sum overflows"))
    }

    async fn norm1(&self, p: Point) -> Result<i64, Status> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Ok(p.x.abs() + p.y.abs())
    }

    async fn calls(&self) -> Result<u64, Status> {
        Ok(self.calls.load(Ordering::Relaxed))
    }

    async fn whoami(&self, ctx: &CallCtx) -> Result<String, Status> {
        ctx.set_reply_meta("route", ctx.service_method());
        let user = ctx.meta().get("user").unwrap_or("nobody");
        let codec = format!("{:?}", ctx.codec());
        let soon = ctx.remaining() <= Duration::from_secs(5);
        Ok(format!("{user} {codec} deadline-within-5s={soon}"))
    }

    async fn fail(&self, ctx: CallCtx, code: i32) -> Result<(), Status> {
        Err(Status::new(
            Code(code),
            format!("failed {}", ctx.service_method()),
        ))
    }

    async fn stall(&self) -> Result<(), Status> {
        std::future::pending().await
    }

    async fn note(&self, ctx: &PushCtx, text: String, n: u32) {
        let _ = self.notes.send((text, n, ctx.service_method().to_string()));
    }
}

fn calculator() -> (Calculator, mpsc::UnboundedReceiver<(String, u32, String)>) {
    let (notes, rx) = mpsc::unbounded_channel();
    let calc = Calculator {
        calls: AtomicU64::new(0),
        notes,
    };
    (calc, rx)
}

fn math_router(calc: Calculator) -> Router {
    let mut router = Router::new();
    router.serve(MathServer::new(calc)).unwrap();
    router
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_is_a_route_under_the_traits_name() {
    let (calc, _notes) = calculator();
    let routes: Vec<String> = math_router(calc)
        .routes()
        .map(|(path, _)| path.to_string())
        .collect();
    for want in [
        "/math/add",
        "/math/norm1",
        "/math/calls",
        "/math/whoami",
        "/math/fail",
        "/math/stall",
        "/math/note",
    ] {
        assert!(routes.iter().any(|r| r == want), "{want} in {routes:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_client_calls_with_none_one_and_several_arguments() {
    let (calc, _notes) = calculator();
    let p = pair_with(math_router(calc), Router::new(), Config::default()).await;
    let math = MathClient::new(p.session.clone());

    assert_eq!(within("add", math.add(40, 2)).await.unwrap(), 42);
    let norm = within("norm1", math.norm1(Point { x: -3, y: 4 })).await;
    assert_eq!(norm.unwrap(), 7);
    assert_eq!(within("calls", math.calls()).await.unwrap(), 2);

    let overflow = within("overflow", math.add(i64::MAX, 1)).await.unwrap_err();
    assert_eq!(overflow.code(), Code::BAD_MESSAGE);
    assert_eq!(overflow.message(), "the sum overflows");
    let failed = within("fail", math.fail(503)).await.unwrap_err();
    assert_eq!(
        (failed.code(), failed.message()),
        (Code(503), "failed /math/fail")
    );
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_routes_speak_the_same_bytes_as_the_string_api() {
    let (calc, _notes) = calculator();
    let p = pair_with(math_router(calc), Router::new(), Config::default()).await;
    // Several arguments are a map keyed by name; one is the value itself.
    let args = serde_json::json!({"a": 1, "b": 2});
    let sum: i64 = within("dynamic add", p.session.call("/math/add", &args))
        .await
        .unwrap();
    assert_eq!(sum, 3);
    let norm: i64 = within(
        "dynamic norm1",
        p.session.call("/math/norm1", &Point { x: 1, y: -1 }),
    )
    .await
    .unwrap();
    assert_eq!(norm, 2);
    let calls: u64 = within("dynamic calls", p.session.call("/math/calls", &()))
        .await
        .unwrap();
    assert_eq!(calls, 2);

    // And a typed client reaches a route served by the string API.
    let math = MathClient::new(p.accepted.clone());
    let mut client_routes = Router::new();
    client_routes
        .call("/math/add", |_: CallCtx, x: Add| async move {
            Ok::<_, Status>(x.a * 100 + x.b)
        })
        .unwrap();
    let q = pair_with(client_routes, Router::new(), Config::default()).await;
    let remote = MathClient::new(q.session.clone());
    assert_eq!(
        within("typed to string route", remote.add(4, 2))
            .await
            .unwrap(),
        402
    );
    let missing = within("missing route", math.add(1, 1)).await.unwrap_err();
    assert_eq!(
        missing.code(),
        Code::NOT_FOUND,
        "the client has no /math routes"
    );
    q.close().await;
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_reach_the_handlers_context() {
    let (calc, _notes) = calculator();
    let p = pair_with(math_router(calc), Router::new(), Config::default()).await;
    let math = MathClient::new(p.session.clone());
    let plain = within("whoami", math.whoami()).await.unwrap();
    assert_eq!(plain, "nobody msgpack deadline-within-5s=false");

    let tuned = math
        .with_meta("user", "ada")
        .with_codec(CodecId::JSON)
        .with_timeout(Duration::from_secs(2));
    let who = within("whoami with options", tuned.whoami()).await.unwrap();
    assert_eq!(who, "ada json deadline-within-5s=true");
    // The options belong to the copy; the original keeps the defaults.
    let again = within("whoami again", math.whoami()).await.unwrap();
    assert_eq!(again, plain);
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_call_past_its_timeout_is_408() {
    let (calc, _notes) = calculator();
    let p = pair_with(math_router(calc), Router::new(), Config::default()).await;
    let math = MathClient::new(p.session.clone()).with_timeout(Duration::from_millis(100));
    let err = within("stall", math.stall()).await.unwrap_err();
    assert_eq!(err.code(), Code::DEADLINE_EXCEEDED);
    p.close().await;
}

/// A typed call that its caller drops is cancelled at the peer, like any
/// call (docs/PROTOCOL.md section 3.3): the handler stops running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_typed_call_stops_its_handler() {
    let (calc, _notes) = calculator();
    let p = pair_with(math_router(calc), Router::new(), Config::default()).await;
    let math = MathClient::new(p.session.clone()).with_timeout(Duration::from_secs(60));
    let call = tokio::spawn(async move { math.stall().await });
    let running = |n: usize| {
        let server = p.server.clone();
        async move {
            while server.calls_running() != n {
                tokio::task::yield_now().await;
            }
        }
    };
    within("the handler to run", running(1)).await;
    call.abort();
    within("the handler to stop", running(0)).await;
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_push_reaches_its_handler_with_every_argument() {
    let (calc, mut notes) = calculator();
    let p = pair_with(math_router(calc), Router::new(), Config::default()).await;
    let math = MathClient::new(p.session.clone());
    within("push", math.note("hello".to_string(), 7))
        .await
        .unwrap();
    let got = within("note", notes.recv()).await.unwrap();
    assert_eq!(got, ("hello".to_string(), 7, "/math/note".to_string()));
    p.close().await;
}

/// Routes that already exist elsewhere, as a Go peer names them.
#[drpc::service(prefix = "/Arith")]
trait GoArith {
    #[drpc(name = "Mul")]
    async fn mul(&self, a: i64, b: i64) -> Result<i64, Status>;
}

struct Multiplier;

impl GoArith for Multiplier {
    async fn mul(&self, a: i64, b: i64) -> Result<i64, Status> {
        Ok(a * b)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_and_name_overrides_set_the_route() {
    let mut router = Router::new();
    router
        .group("/v2")
        .serve(GoArithServer::new(Multiplier))
        .unwrap();
    let routes: Vec<_> = router.routes().map(|(p, _)| p.to_string()).collect();
    assert_eq!(routes, ["/v2/Arith/Mul"]);

    let mut router = Router::new();
    router.serve(GoArithServer::new(Multiplier)).unwrap();
    let p = pair_with(router, Router::new(), Config::default()).await;
    let args = serde_json::json!({"a": 6, "b": 7});
    let product: i64 = within("Go-style route", p.session.call("/Arith/Mul", &args))
        .await
        .unwrap();
    assert_eq!(product, 42);
    let typed = GoArithClient::new(p.session.clone());
    assert_eq!(within("typed", typed.mul(3, 5)).await.unwrap(), 15);
    p.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_a_service_twice_is_a_route_error() {
    let (a, _n1) = calculator();
    let (b, _n2) = calculator();
    let mut router = Router::new();
    router.serve(MathServer::new(a)).unwrap();
    let err = router.serve(MathServer::new(b)).unwrap_err();
    assert!(err.to_string().contains("/math/"), "{err}");
}

/// A service the dialing side implements, for its server to call back.
#[drpc::service]
trait Desktop {
    async fn screen_size(&self) -> Result<(u32, u32), Status>;
}

struct Screen;

impl Desktop for Screen {
    async fn screen_size(&self) -> Result<(u32, u32), Status> {
        Ok((1920, 1080))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_calls_a_service_its_client_serves() {
    let (calc, _notes) = calculator();
    let mut client_routes = Router::new();
    client_routes.serve(DesktopServer::new(Screen)).unwrap();
    let p = pair_with(math_router(calc), client_routes, Config::default()).await;
    // The accepted session's client reaches the dialer's service.
    let desktop = DesktopClient::new(p.accepted.clone());
    let size = within("reverse typed call", desktop.screen_size()).await;
    assert_eq!(size.unwrap(), (1920, 1080));
    // And the dialer still calls the server's.
    let math = MathClient::new(p.session.clone());
    assert_eq!(within("forward", math.add(1, 2)).await.unwrap(), 3);
    p.close().await;
}

/// User names that the generated code must not capture: types called
/// `Args`, `S` and `C`, and arguments named like the handler's own locals.
mod hygiene {
    use drpc::{CallCtx, Status};
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    pub struct Args(pub u8);
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    pub struct S(pub u8);
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    pub struct C(pub u8);

    #[drpc::service]
    pub trait Tricky {
        async fn sum(
            &self,
            ctx: &CallCtx,
            service: Args,
            args: S,
            routes: C,
            inner: u8,
        ) -> Result<u32, Status>;
        async fn one(&self, ctx: u8) -> Result<u8, Status>;
        /// Compiled out: neither routed nor on the client.
        #[cfg(any())]
        async fn gone(&self, x: NotSerde) -> Result<(), Status>;
    }

    /// Named as tarpc users name an implementation, so the generated
    /// server takes another name.
    #[drpc::service(server = "ChatService", client = "ChatRemote")]
    pub trait Chat {
        async fn echo(&self, _: &CallCtx, text: String) -> Result<String, Status>;
    }

    pub struct ChatServer;

    impl Chat for ChatServer {
        async fn echo(&self, _: &CallCtx, text: String) -> Result<String, Status> {
            Ok(text)
        }
    }

    pub struct Impl;

    impl Tricky for Impl {
        async fn sum(
            &self,
            _ctx: &CallCtx,
            service: Args,
            args: S,
            routes: C,
            inner: u8,
        ) -> Result<u32, Status> {
            Ok([service.0, args.0, routes.0, inner]
                .iter()
                .map(|&b| u32::from(b))
                .sum())
        }

        async fn one(&self, ctx: u8) -> Result<u8, Status> {
            Ok(ctx + 1)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argument_and_type_names_do_not_clash_with_the_generated_code() {
    use hygiene::*;
    let mut router = Router::new();
    router.serve(TrickyServer::new(Impl)).unwrap();
    let p = pair_with(router, Router::new(), Config::default()).await;
    let tricky = TrickyClient::new(p.session.clone());
    let sum = within("sum", tricky.sum(Args(1), S(2), C(3), 4)).await;
    assert_eq!(sum.unwrap(), 10);
    assert_eq!(within("one", tricky.one(41)).await.unwrap(), 42);
    p.close().await;

    let mut router = Router::new();
    router.serve(ChatService::new(ChatServer)).unwrap();
    let routes: Vec<_> = router.routes().map(|(p, _)| p.to_string()).collect();
    assert_eq!(routes, ["/chat/echo"]);
    let p = pair_with(router, Router::new(), Config::default()).await;
    let chat = ChatRemote::new(p.session.clone());
    assert_eq!(within("echo", chat.echo("hi".into())).await.unwrap(), "hi");
    p.close().await;
}
