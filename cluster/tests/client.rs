//! Calling a service by name: instances found in a registry, picked per
//! call, left out when they die, and typed clients on top, unchanged.

use drpc::service::Caller;
use drpc::{CallCtx, CallOptions, Endpoint, Status};
use drpc_cluster::selector::{ConsistentHash, RoundRobin};
use drpc_cluster::{Announce, Cluster, Instance, MemoryRegistry, Registry};
use std::collections::BTreeMap;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(20);

#[drpc::service(prefix = "/who")]
trait Who {
    async fn am_i(&self, ctx: &CallCtx) -> Result<String, Status>;
}

/// Answers with its instance id.
struct Named(String);

impl Who for Named {
    async fn am_i(&self, _: &CallCtx) -> Result<String, Status> {
        Ok(self.0.clone())
    }
}

/// An instance of `who`, registered through its own plugin.
async fn instance(registry: &MemoryRegistry, id: &str) -> Endpoint {
    let announce = Announce::new(
        registry.clone(),
        Instance::new("who", id, Vec::<String>::new()),
    );
    let mut router = drpc::Router::new();
    router.serve(WhoServer::new(Named(id.to_string()))).unwrap();
    let endpoint = Endpoint::builder()
        .plugin(announce.clone())
        .router(router)
        .build()
        .unwrap();
    endpoint.listen("tcp://127.0.0.1:0").await.unwrap();
    announce.register().await.unwrap();
    endpoint
}

async fn tally(who: &WhoClient<Cluster>, calls: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..calls {
        let id = tokio::time::timeout(PATIENCE, who.am_i())
            .await
            .unwrap()
            .unwrap();
        *seen.entry(id).or_default() += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_go_to_every_instance_and_follow_the_registry() {
    let registry = MemoryRegistry::new();
    let mut servers = Vec::new();
    for id in ["a", "b", "c"] {
        servers.push(instance(&registry, id).await);
    }
    let client = Endpoint::builder().build().unwrap();
    let cluster = Cluster::with_selector(client.clone(), &registry, "who", RoundRobin::default())
        .await
        .unwrap();
    assert_eq!(cluster.instances().len(), 3);
    // A typed client over the cluster, unchanged.
    let who = WhoClient::new(cluster.clone());
    let seen = tally(&who, 30).await;
    assert_eq!(
        seen,
        BTreeMap::from([("a".into(), 10), ("b".into(), 10), ("c".into(), 10)])
    );

    // A fourth instance takes calls once it registers.
    servers.push(instance(&registry, "d").await);
    cluster
        .wait_for(PATIENCE, |v| v.len() == 4)
        .await
        .expect("the cluster sees d");
    assert_eq!(tally(&who, 40).await.get("d"), Some(&10));

    // One leaves gracefully: it deregisters first and takes no more calls.
    let a = servers.remove(0);
    a.close().await;
    cluster
        .wait_for(PATIENCE, |v| v.len() == 3)
        .await
        .expect("the cluster drops a");
    assert!(!tally(&who, 30).await.contains_key("a"));

    client.close().await;
    for s in servers {
        s.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_stops_answering_is_left_out_without_the_registry() {
    let registry = MemoryRegistry::new();
    let a = instance(&registry, "a").await;
    let b = instance(&registry, "b").await;
    // A third is registered by hand, so that its registration outlives it,
    // as a killed process's does until its lease expires.
    let c = Endpoint::builder()
        .router({
            let mut r = drpc::Router::new();
            r.serve(WhoServer::new(Named("c".into()))).unwrap();
            r
        })
        .build()
        .unwrap();
    let c_addr = c.listen("tcp://127.0.0.1:0").await.unwrap();
    let _c_registration = registry
        .register(
            Instance::new("who", "c", [c_addr.to_string()]),
            Duration::from_secs(3600),
        )
        .await
        .unwrap();

    let client = Endpoint::builder().build().unwrap();
    let cluster = Cluster::with_selector(client.clone(), &registry, "who", RoundRobin::default())
        .await
        .unwrap();
    let who = WhoClient::new(cluster.clone());
    assert_eq!(tally(&who, 30).await.get("c"), Some(&10));

    // c goes away without telling the registry.
    c.shutdown(Duration::ZERO).await;
    assert_eq!(cluster.instances().len(), 3, "still registered");
    // Every call now succeeds, on a or b: c's connection is gone, and a
    // dial to it fails and goes elsewhere.
    let seen = tally(&who, 40).await;
    assert!(!seen.contains_key("c"), "{seen:?}");
    assert_eq!(seen.values().sum::<usize>(), 40);

    client.close().await;
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_keeps_its_calls_on_one_instance() {
    let registry = MemoryRegistry::new();
    let mut servers = Vec::new();
    for id in ["a", "b", "c", "d"] {
        servers.push(instance(&registry, id).await);
    }
    let client = Endpoint::builder().build().unwrap();
    let cluster =
        Cluster::with_selector(client.clone(), &registry, "who", ConsistentHash::default())
            .await
            .unwrap();
    let mut homes = BTreeMap::new();
    for user in 0..20 {
        let who = WhoClient::new(cluster.keyed(format!("user-{user}")));
        let seen = tally(&who, 5).await;
        assert_eq!(seen.len(), 1, "user-{user} went to {seen:?}");
        homes.insert(user, seen.into_keys().next().unwrap());
    }
    let distinct: std::collections::BTreeSet<_> = homes.values().collect();
    assert!(distinct.len() >= 3, "20 keys over 4 instances: {homes:?}");

    // Raw calls through the Caller trait take the key too.
    let keyed = cluster.keyed("user-0");
    let raw: drpc::Reply<String> = keyed
        .call_with("/who/am_i", &(), CallOptions::new())
        .await
        .unwrap();
    assert_eq!(&raw.value, &homes[&0]);

    client.close().await;
    for s in servers {
        s.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_instance_a_call_fails_at_once_with_503() {
    let registry = MemoryRegistry::new();
    let client = Endpoint::builder().build().unwrap();
    let cluster = Cluster::new(client.clone(), &registry, "who")
        .await
        .unwrap();
    let err = WhoClient::new(cluster).am_i().await.unwrap_err();
    assert_eq!(err.code(), drpc::Code::OVERLOADED);
    assert!(err.message().contains("no instance of who"), "{err}");
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_stopped_gracefully_under_load_fails_no_call() {
    let registry = MemoryRegistry::new();
    let mut servers = Vec::new();
    for id in ["a", "b", "c"] {
        servers.push(instance(&registry, id).await);
    }
    let client = Endpoint::builder().build().unwrap();
    let cluster = Cluster::new(client.clone(), &registry, "who")
        .await
        .unwrap();
    let stop = tokio_util_stop();
    // Calls made so far, for the test to wait on.
    let (made_tx, mut made) = tokio::sync::watch::channel(0u64);
    let made_tx = std::sync::Arc::new(made_tx);
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (who, stop) = (WhoClient::new(cluster.clone()), stop.clone());
            let made_tx = made_tx.clone();
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0u32, Vec::new());
                // Bounded: at most 100,000 calls, and stops when told.
                for _ in 0..100_000 {
                    if *stop.borrow() {
                        break;
                    }
                    match who.am_i().await {
                        Ok(_) => ok += 1,
                        Err(status) => failed.push(status),
                    }
                    made_tx.send_modify(|n| *n += 1);
                }
                (ok, failed)
            })
        })
        .collect();
    at_least(&mut made, 500).await;
    // Stop b under load; the calls go on, then stop.
    let b = servers.remove(1);
    let before = cluster.instances().len();
    b.close().await;
    cluster
        .wait_for(PATIENCE, |v| v.len() == before - 1)
        .await
        .expect("b deregistered");
    let so_far = *made.borrow();
    at_least(&mut made, so_far + 500).await;
    stop.send_replace(true);
    let (mut ok, mut failed) = (0, Vec::new());
    for w in workers {
        let (o, f) = w.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    assert!(ok > 0);
    let unrun: Vec<bool> = failed.iter().map(|s| s.never_ran()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} calls failed: {:?} (never ran: {unrun:?})",
        failed.len(),
        ok as usize + failed.len(),
        &failed[..failed.len().min(5)]
    );
    client.close().await;
    for s in servers {
        s.close().await;
    }
}

/// Waits (bounded) until `made` counts `n` calls.
async fn at_least(made: &mut tokio::sync::watch::Receiver<u64>, n: u64) {
    let reached = made.wait_for(|m| *m >= n);
    tokio::time::timeout(PATIENCE, reached)
        .await
        .expect("the calls go on")
        .unwrap();
}

/// A flag the workers read between calls.
fn tokio_util_stop() -> std::sync::Arc<tokio::sync::watch::Sender<bool>> {
    std::sync::Arc::new(tokio::sync::watch::channel(false).0)
}

/// Fails every call with one status, counting the calls.
struct Refusing {
    reached: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    with: Status,
}

impl Who for Refusing {
    async fn am_i(&self, _: &CallCtx) -> Result<String, Status> {
        self.reached
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err(self.with.clone())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_instance_is_cut_off_by_its_breaker() {
    let registry = MemoryRegistry::new();
    let good = instance(&registry, "good").await;
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut router = drpc::Router::new();
    let broken = Refusing {
        reached: served.clone(),
        with: Status::internal("broken"),
    };
    router.serve(WhoServer::new(broken)).unwrap();
    let bad = Endpoint::builder().router(router).build().unwrap();
    let bad_addr = bad.listen("tcp://127.0.0.1:0").await.unwrap();
    let _bad = registry
        .register(
            Instance::new("who", "bad", [bad_addr.to_string()]),
            Duration::from_secs(3600),
        )
        .await
        .unwrap();

    let client = Endpoint::builder().build().unwrap();
    let options = drpc_cluster::ClusterOptions {
        selector: std::sync::Arc::new(RoundRobin::default()),
        ..Default::default()
    };
    let cluster = Cluster::with_options(client.clone(), &registry, "who", options)
        .await
        .unwrap();
    let who = WhoClient::new(cluster);
    let mut failed = 0;
    for _ in 0..40 {
        match tokio::time::timeout(PATIENCE, who.am_i()).await.unwrap() {
            Ok(id) => assert_eq!(id, "good"),
            // A 500 may have run: not retried.
            Err(status) => {
                assert_eq!(status.code(), drpc::Code::INTERNAL);
                failed += 1;
            }
        }
    }
    // Five failures in a row open its breaker; the cool-down (5 s) is
    // longer than the test, so it gets nothing more.
    assert_eq!(failed, 5);
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 5);

    client.close().await;
    good.close().await;
    bad.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_full_outage_retries_stay_within_the_budget() {
    let registry = MemoryRegistry::new();
    let reached = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut servers = Vec::new();
    let mut registrations = Vec::new();
    for id in ["a", "b", "c"] {
        let mut router = drpc::Router::new();
        // Overloaded: a refusal that is safe to retry.
        let busy = Refusing {
            reached: reached.clone(),
            with: Status::overloaded("busy"),
        };
        router.serve(WhoServer::new(busy)).unwrap();
        let endpoint = Endpoint::builder().router(router).build().unwrap();
        let addr = endpoint.listen("tcp://127.0.0.1:0").await.unwrap();
        let me = Instance::new("who", id, [addr.to_string()]);
        registrations.push(
            registry
                .register(me, Duration::from_secs(60))
                .await
                .unwrap(),
        );
        servers.push(endpoint);
    }
    let client = Endpoint::builder().build().unwrap();
    let options = drpc_cluster::ClusterOptions {
        // 10% of calls, no floor; breakers that never open, to see the
        // budget alone.
        retry_budget: drpc_cluster::RetryBudget::new(0.1, 0.0, Duration::from_secs(60)),
        breaker: drpc_cluster::breaker::BreakerConfig {
            consecutive_failures: u32::MAX,
            min_calls: u32::MAX,
            ..Default::default()
        },
        ..Default::default()
    };
    let cluster = Cluster::with_options(client.clone(), &registry, "who", options)
        .await
        .unwrap();
    let who = WhoClient::new(cluster);
    for _ in 0..200 {
        let err = tokio::time::timeout(PATIENCE, who.am_i())
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(err.code(), drpc::Code::OVERLOADED);
    }
    let reached = reached.load(std::sync::atomic::Ordering::SeqCst);
    // 200 calls, and at most 10% more from retries.
    assert!(
        (200..=220).contains(&reached),
        "{reached} calls reached a handler"
    );
    assert!(reached > 200, "some calls were retried");
    client.close().await;
    for s in servers {
        s.close().await;
    }
}
