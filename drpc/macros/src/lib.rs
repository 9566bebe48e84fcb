//! The `#[drpc::service]` attribute. Use it through the `drpc` crate,
//! which re-exports it and holds what the generated code refers to.

mod expand;
mod model;

use proc_macro::TokenStream;

/// Turns a trait of async methods into a typed service: the trait itself
/// (its futures `Send`), a `{Trait}Server` that registers every method as a
/// route, and a `{Trait}Client` with one method per trait method. Either
/// peer can serve a service, and either can hold its client.
///
/// ```
/// use drpc::{CallCtx, PushCtx, Status};
///
/// /// Arithmetic, served under `/math`.
/// #[drpc::service]
/// pub trait Math {
///     /// `/math/add`: several arguments travel as a map, `{"a": 1, "b": 2}`.
///     async fn add(&self, a: i64, b: i64) -> Result<i64, Status>;
///     /// `/math/neg`: one argument travels as itself; the context comes first.
///     async fn neg(&self, ctx: &CallCtx, x: i64) -> Result<i64, Status>;
///     /// `/math/log`: a push, one-way.
///     #[drpc(push)]
///     async fn log(&self, ctx: &PushCtx, line: String);
/// }
///
/// struct Calculator;
///
/// impl Math for Calculator {
///     async fn add(&self, a: i64, b: i64) -> Result<i64, Status> {
///         a.checked_add(b).ok_or_else(|| Status::bad_message("overflow"))
///     }
///     async fn neg(&self, ctx: &CallCtx, x: i64) -> Result<i64, Status> {
///         ctx.set_reply_meta("negated", "yes");
///         Ok(-x)
///     }
///     async fn log(&self, _: &PushCtx, line: String) {
///         println!("{line}");
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut router = drpc::Router::new();
/// router.serve(MathServer::new(Calculator))?;
/// let server = drpc::Endpoint::builder().router(router).build()?;
/// let addr = server.listen("tcp://127.0.0.1:0").await?;
///
/// let client = drpc::Endpoint::builder().build()?;
/// let math = MathClient::new(client.dial(&addr).await?);
/// assert_eq!(math.add(2, 3).await?, 5);
/// let slow = math.with_timeout(std::time::Duration::from_secs(1));
/// assert_eq!(slow.neg(7).await?, -7);
/// math.log("done".to_string()).await?;
/// # client.close().await;
/// # server.close().await;
/// # Ok(()) }
/// ```
///
/// **Routes.** A method's route is the trait's prefix and the method's
/// name: `/math/add` for `Math::add` (the prefix is the trait's name in
/// snake case, `ChatRoom` -> `/chat_room`). To match routes that exist,
/// such as a Go peer's, set the prefix with `#[drpc::service(prefix =
/// "/Arith")]` (empty for the root) and a method's name with
/// `#[drpc(name = "Add")]`.
///
/// **Methods.** Each is an `async fn` taking `&self`; then, optionally, the
/// context (`&CallCtx` or `CallCtx` for a call, `&PushCtx` or `PushCtx` for
/// a push); then any number of arguments of owned serde types. A call
/// returns `Result<T, drpc::Status>`; a method marked `#[drpc(push)]`
/// returns nothing, and its client method returns once the push is queued.
///
/// **Streams.** A method whose last parameter is `ItemSink<T>` is a server
/// stream (it returns `Result<(), Status>`; its client method returns
/// `Items<T>`); one whose last is `Items<T>` a client stream (its client
/// method returns the `ItemSink<T>` and a `StreamReply` of its result);
/// one that takes `Items<T>` then `ItemSink<U>` a bidirectional stream
/// (its client method returns the `ItemSink<T>` and `Items<U>`). The
/// streams come after every argument; docs/SERVICES.md shows one.
///
/// **The body on the wire.** No argument is the codec's empty value (`()`);
/// one argument is that value itself, so `async fn add(&self, x: Add)`
/// serves the same bytes as `router.call("/math/add", |_, x: Add| ...)`;
/// several are a map keyed by the argument names.
///
/// **Names.** The server and client are `{Trait}Server` and
/// `{Trait}Client`; name them otherwise with `#[drpc::service(server =
/// "MathService", client = "MathRemote")]` (an implementation called
/// `MathServer` needs that). A method cannot be called `new`, `caller`,
/// `clone` or `with_*`, the client's own methods: name it otherwise and
/// keep its route with `#[drpc(name = "new")]`. `#[cfg]` on a method
/// applies to its route and its client method too.
///
/// **Client options.** `with_timeout`, `with_meta`, `with_codec` and
/// `with_call_options` return a copy of the client for the calls made
/// through it. To pass a handler's deadline on to the calls it makes:
/// `client.with_timeout(ctx.remaining())`. A client returns the reply's
/// value; for its meta, call through
/// [`ServiceClient::call`](../drpc/service/struct.ServiceClient.html#method.call)
/// or the session's `call_with`.
///
/// **Mistakes reported at compile time**, each with what to write instead:
/// a method that is not `async`, generics, `self` by value or `&mut self`,
/// an argument or result that is not serde, borrowed arguments, two methods
/// on one route, a push that returns a value, a call whose error is not
/// `drpc::Status`, a method named like one of the client's own.
#[proc_macro_attribute]
pub fn service(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = syn::parse_macro_input!(item as syn::ItemTrait);
    match model::parse(attr.into(), item.clone()) {
        Ok(def) => expand::expand(&def).into(),
        Err(e) => {
            // The trait stays, as written, beside the error: its `impl`s and
            // imports then raise no errors of their own that hide this one.
            let mut error = e.to_compile_error();
            error.extend(quote::ToTokens::into_token_stream(model::as_written(item)));
            error.into()
        }
    }
}
