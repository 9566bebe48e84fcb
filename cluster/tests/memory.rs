//! The in-memory registry on tokio's paused clock: leases last their TTL
//! to the tick, keep-alives hold them, and watches see each change.

use drpc_cluster::{Instance, MemoryRegistry, Registry};
use std::time::Duration;
use tokio::time::Instant;

fn math(id: &str) -> Instance {
    Instance::new("math", id, ["tcp://127.0.0.1:9090"])
}

#[tokio::test(start_paused = true)]
async fn a_dropped_registration_expires_after_its_ttl_and_a_kept_one_stays() {
    let registry = MemoryRegistry::new();
    let mut watch = registry.watch("math").await.unwrap();
    let ttl = Duration::from_secs(10);
    let kept = registry.register(math("kept"), ttl).await.unwrap();
    let dropped = registry.register(math("dropped"), ttl).await.unwrap();
    assert_eq!(watch.changed().await.unwrap().len(), 2);

    let died = Instant::now();
    drop(dropped);
    let left = watch.changed().await.unwrap();
    assert_eq!(
        died.elapsed(),
        ttl,
        "expired exactly one TTL after the last keep-alive"
    );
    assert_eq!(left, [math("kept")]);

    // Many TTLs later the kept one is still there.
    tokio::time::sleep(ttl * 5).await;
    assert_eq!(registry.list("math").await.unwrap(), [math("kept")]);
    kept.deregister().await.unwrap();
    assert!(watch.changed().await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn services_are_apart_and_a_watch_starts_with_what_is_there() {
    let registry = MemoryRegistry::new();
    let ttl = Duration::from_secs(10);
    let _a = registry.register(math("a"), ttl).await.unwrap();
    let other = Instance::new("mathematics", "x", ["tcp://h:1"]);
    let _x = registry.register(other, ttl).await.unwrap();
    let watch = registry.watch("math").await.unwrap();
    assert_eq!(watch.current(), [math("a")]);
    assert_eq!(registry.list("mathematics").await.unwrap().len(), 1);
    assert!(registry.list("nothing").await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn registering_an_id_again_replaces_it() {
    let registry = MemoryRegistry::new();
    let ttl = Duration::from_secs(10);
    let old = registry.register(math("a"), ttl).await.unwrap();
    let new = registry
        .register(math("a").version("2"), ttl)
        .await
        .unwrap();
    // The old registration's keep-alive does not put it back, and its end
    // does not remove the new one.
    tokio::time::sleep(ttl * 3).await;
    assert_eq!(
        registry.list("math").await.unwrap(),
        [math("a").version("2")]
    );
    old.deregister().await.unwrap();
    let listed = registry.list("math").await.unwrap();
    assert_eq!(listed, [math("a").version("2")]);
    new.deregister().await.unwrap();
    assert!(registry.list("math").await.unwrap().is_empty());
}
