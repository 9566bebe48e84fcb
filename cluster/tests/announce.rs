//! Endpoints that register themselves: under the addresses they listen on,
//! and out of the registry before their peers hear they are going away.

#[path = "support/etcd.rs"]
#[allow(dead_code)] // restarting etcd is for other tests
mod support;

use drpc::{CallCtx, Endpoint, Router, Status};
use drpc_cluster::{Announce, EtcdRegistry, Instance, MemoryRegistry, Registry};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(20);

fn unnamed(id: &str) -> Instance {
    Instance::new("math", id, Vec::<String>::new())
}

fn router() -> Router {
    let mut r = Router::new();
    r.call("/math/one", |_: CallCtx, _: ()| async {
        Ok::<_, Status>(1)
    })
    .unwrap();
    r
}

/// Serves `router()` with `announce` on it, registered.
async fn server(announce: &Announce) -> (Endpoint, drpc::Addr) {
    let endpoint = Endpoint::builder()
        .plugin(announce.clone())
        .router(router())
        .build()
        .unwrap();
    let addr = endpoint.listen("tcp://127.0.0.1:0").await.unwrap();
    announce.register().await.unwrap();
    (endpoint, addr)
}

/// Shuts `endpoint` down while a client is connected, and checks that the
/// client hears the going-away notice only once `registry` no longer lists
/// the instance.
async fn deregistered_before_going_away(
    registry: &dyn Registry,
    endpoint: Endpoint,
    addr: &drpc::Addr,
) {
    let mut watch = registry.watch("math").await.unwrap();
    assert_eq!(watch.current().len(), 1);
    let client = Endpoint::builder().build().unwrap();
    let session = client.dial(addr).await.unwrap();
    let one: i32 = session.call("/math/one", &()).await.unwrap();
    assert_eq!(one, 1);

    let closing = tokio::spawn(async move { endpoint.shutdown(Duration::from_secs(5)).await });
    tokio::time::timeout(PATIENCE, session.going_away())
        .await
        .expect("the going-away notice");
    // The registry let go of it before the notice was sent: a watch may
    // still be delivering the change, but the store has it already.
    assert!(registry.list("math").await.unwrap().is_empty());
    assert!(watch.wait_for(PATIENCE, |v| v.is_empty()).await.is_some());
    closing.await.unwrap();
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_registers_its_listening_address_and_leaves_first_on_shutdown() {
    let registry = MemoryRegistry::new();
    let announce = Announce::new(registry.clone(), unnamed("m1").version("7"));
    let (endpoint, addr) = server(&announce).await;
    let listed = registry.list("math").await.unwrap();
    assert_eq!(
        listed,
        [unnamed("m1").version("7")].map(|mut i| {
            i.addrs = vec![addr.to_string()];
            i
        })
    );
    assert_eq!(
        announce.registered().await.unwrap().addrs,
        [addr.to_string()]
    );
    deregistered_before_going_away(&registry, endpoint, &addr).await;
    assert!(announce.registered().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_before_listening_without_addresses_is_refused() {
    let registry = MemoryRegistry::new();
    let announce = Announce::new(registry.clone(), unnamed("m1"));
    let err = announce.register().await.unwrap_err();
    assert!(err.to_string().contains("no address"), "{err}");
    // Given addresses, it needs no listener.
    let given = Announce::new(
        registry.clone(),
        Instance::new("math", "m2", ["tcp://10.1.1.1:9"]),
    );
    given.register().await.unwrap();
    assert_eq!(
        registry.list("math").await.unwrap()[0].addrs,
        ["tcp://10.1.1.1:9"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_etcd_too_the_shutdown_deregisters_before_peers_hear() {
    let etcd = support::Etcd::start("announce").await;
    let registry = EtcdRegistry::connect([etcd.endpoint()]).await.unwrap();
    let announce = Announce::new(registry.clone(), unnamed("e1"));
    let (endpoint, addr) = server(&announce).await;
    assert_eq!(
        registry.list("math").await.unwrap()[0].addrs,
        [addr.to_string()]
    );
    deregistered_before_going_away(&registry, endpoint, &addr).await;
}
