//! The etcd registry against a real etcd, started by each test on its own
//! ports: register, list, lease expiry, watch, and resuming after etcd
//! itself restarts.

#[path = "support/etcd.rs"]
mod support;

use drpc_cluster::{EtcdRegistry, Instance, Registry, RegistryError};
use std::time::Duration;
use support::Etcd;

/// How long a test waits for what should happen within a lease's TTL or a
/// reconnection: generous, for a loaded machine.
const PATIENCE: Duration = Duration::from_secs(20);

fn math(id: &str, port: u16) -> Instance {
    Instance::new("math", id, [format!("tcp://127.0.0.1:{port}")])
}

fn ids(v: &[Instance]) -> Vec<&str> {
    v.iter().map(|i| i.id.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_register_list_and_deregister() {
    let etcd = Etcd::start("list").await;
    let registry = EtcdRegistry::connect([etcd.endpoint()]).await.unwrap();
    let ttl = Duration::from_secs(10);
    let a = registry
        .register(math("a", 1).version("1.2.0").zone("eu-1").weight(7), ttl)
        .await
        .unwrap();
    let _b = registry.register(math("b", 2), ttl).await.unwrap();
    // Another service's instances, and a service whose name extends this one.
    let _other = registry
        .register(
            Instance::new("mathematics", "x", ["tcp://127.0.0.1:3"]),
            ttl,
        )
        .await
        .unwrap();

    let listed = registry.list("math").await.unwrap();
    assert_eq!(ids(&listed), ["a", "b"]);
    assert_eq!(
        listed[0],
        math("a", 1).version("1.2.0").zone("eu-1").weight(7)
    );

    a.deregister().await.unwrap();
    assert_eq!(ids(&registry.list("math").await.unwrap()), ["b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_registrations_are_refused_with_a_reason() {
    let etcd = Etcd::start("refuse").await;
    let registry = EtcdRegistry::connect([etcd.endpoint()]).await.unwrap();
    let ttl = Duration::from_secs(10);
    let cases = [
        (Instance::new("", "a", ["tcp://h:1"]), ttl, "non-empty"),
        (Instance::new("math", "a/b", ["tcp://h:1"]), ttl, "no `/`"),
        (
            Instance::new("math", "a", Vec::<String>::new()),
            ttl,
            "no address",
        ),
        (math("a", 1), Duration::from_millis(500), "at least 1 s"),
    ];
    for (instance, ttl, why) in cases {
        match registry.register(instance, ttl).await {
            Err(RegistryError::Invalid(msg)) => assert!(msg.contains(why), "{msg}"),
            other => panic!("expected a refusal ({why}), got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_no_longer_kept_alive_expires_with_its_lease() {
    let etcd = Etcd::start("expire").await;
    let registry = EtcdRegistry::connect([etcd.endpoint()]).await.unwrap();
    let mut watch = registry.watch("math").await.unwrap();
    let kept = registry
        .register(math("kept", 1), Duration::from_secs(2))
        .await
        .unwrap();
    let dropped = registry
        .register(math("dropped", 2), Duration::from_secs(2))
        .await
        .unwrap();
    watch
        .wait_for(PATIENCE, |v| v.len() == 2)
        .await
        .expect("both listed");
    // As if its process died: no keep-alive, no revoke.
    drop(dropped);
    let left = watch
        .wait_for(PATIENCE, |v| v.len() == 1)
        .await
        .expect("the dropped one expires");
    assert_eq!(ids(&left), ["kept"]);
    // The kept one outlives several TTLs.
    assert_eq!(ids(&registry.list("math").await.unwrap()), ["kept"]);
    kept.deregister().await.unwrap();
    assert!(watch.wait_for(PATIENCE, |v| v.is_empty()).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_sees_every_change_including_values_written_elsewhere() {
    let etcd = Etcd::start("watch").await;
    let registry = EtcdRegistry::connect([etcd.endpoint()]).await.unwrap();
    let mut watch = registry.watch("math").await.unwrap();
    assert!(watch.current().is_empty());

    let a = registry
        .register(math("a", 1), Duration::from_secs(10))
        .await
        .unwrap();
    let now = watch.wait_for(PATIENCE, |v| !v.is_empty()).await.unwrap();
    assert_eq!(ids(&now), ["a"]);

    // A Go or Python service writes the documented layout by hand.
    let mut raw = etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .unwrap();
    let value = r#"{"id": "py-1", "addrs": ["tcp://127.0.0.1:7000"], "zone": "eu-2"}"#;
    raw.put("/drpc/services/math/py-1", value, None)
        .await
        .unwrap();
    // And something that is not an instance shares the prefix: skipped.
    raw.put("/drpc/services/math/junk", "not json", None)
        .await
        .unwrap();
    let now = watch
        .wait_for(PATIENCE, |v| v.iter().any(|i| i.id == "py-1"))
        .await
        .expect("the hand-written instance");
    assert_eq!(ids(&now), ["a", "py-1"]);
    assert_eq!(now[1].zone.as_deref(), Some("eu-2"));

    a.deregister().await.unwrap();
    raw.delete("/drpc/services/math/py-1", None).await.unwrap();
    assert!(watch.wait_for(PATIENCE, |v| v.is_empty()).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_and_registrations_resume_after_etcd_restarts() {
    let mut etcd = Etcd::start("restart").await;
    let registry = EtcdRegistry::connect([etcd.endpoint()]).await.unwrap();
    let mut watch = registry.watch("math").await.unwrap();
    let _a = registry
        .register(math("a", 1), Duration::from_secs(5))
        .await
        .unwrap();
    watch
        .wait_for(PATIENCE, |v| v.len() == 1)
        .await
        .expect("a is listed");

    etcd.restart().await;
    // A change made after the restart reaches the watch...
    let _b = registry
        .register(math("b", 2), Duration::from_secs(5))
        .await
        .unwrap();
    let now = watch
        .wait_for(PATIENCE, |v| v.len() == 2)
        .await
        .expect("the watch resumed");
    assert_eq!(ids(&now), ["a", "b"]);
    // ...and `a`, whose keep-alive resumed, is still there past its TTL.
    let mut later = registry.watch("math").await.unwrap();
    let gone = later
        .wait_for(Duration::from_secs(8), |v| v.len() < 2)
        .await;
    assert!(gone.is_none(), "an instance was lost: {gone:?}");
}

/// Not a test on its own: run as a child process by
/// `a_killed_process_expires_and_its_clients_move_on`, it registers an
/// instance with a 2 s lease and serves until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn child_that_registers_and_waits() {
    let Ok(endpoint) = std::env::var("DRPC_TEST_CHILD_ETCD") else {
        return; // run normally: nothing to do
    };
    let registry = EtcdRegistry::connect([endpoint]).await.unwrap();
    let server = drpc::Endpoint::builder().build().unwrap();
    let addr = server.listen("tcp://127.0.0.1:0").await.unwrap();
    let me = Instance::new("math", "child", [addr.to_string()]);
    let _kept = registry.register(me, Duration::from_secs(2)).await.unwrap();
    println!("registered");
    // Until killed; bounded all the same.
    tokio::time::sleep(Duration::from_secs(120)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_expires_and_its_clients_move_on() {
    use std::io::BufRead;
    let etcd = Etcd::start("kill").await;
    let registry = EtcdRegistry::connect([etcd.endpoint()]).await.unwrap();
    let client = drpc::Endpoint::builder().build().unwrap();
    let cluster = drpc_cluster::Cluster::new(client.clone(), &registry, "math")
        .await
        .unwrap();

    // This test binary again, as the child above.
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_that_registers_and_waits", "--nocapture"])
        .env("DRPC_TEST_CHILD_ETCD", etcd.endpoint())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    let registered = out
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains("registered"));
    assert!(registered, "the child registered");
    let seen = cluster.wait_for(PATIENCE, |v| v.len() == 1).await;
    assert_eq!(ids(&seen.expect("the client sees the child")), ["child"]);

    // SIGKILL: no deregistration, no keep-alive. The lease (2 s) expires,
    // etcd drops the key, and the client drops the instance.
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = std::time::Instant::now();
    let gone = cluster.wait_for(PATIENCE, |v| v.is_empty()).await;
    assert!(gone.is_some(), "the client dropped the killed instance");
    assert!(
        killed.elapsed() >= Duration::from_secs(1),
        "not before its lease ran out"
    );
    assert!(registry.list("math").await.unwrap().is_empty());
    client.close().await;
}
