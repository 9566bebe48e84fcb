//! What a cluster client reports through the `metrics` facade, read back
//! through a debugging recorder installed for this test binary.

use drpc::{CallCtx, Endpoint, Status};
use drpc_cluster::selector::RoundRobin;
use drpc_cluster::{Cluster, ClusterOptions, Instance, MemoryRegistry, Registry};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use std::sync::Arc;
use std::time::Duration;

#[drpc::service(prefix = "/svc")]
trait Svc {
    async fn go(&self, ctx: &CallCtx) -> Result<(), Status>;
}

struct Fine;
impl Svc for Fine {
    async fn go(&self, _: &CallCtx) -> Result<(), Status> {
        Ok(())
    }
}

struct Failing;
impl Svc for Failing {
    async fn go(&self, _: &CallCtx) -> Result<(), Status> {
        Err(Status::internal("down"))
    }
}

async fn serve(
    registry: &MemoryRegistry,
    id: &str,
    svc: impl Svc,
) -> (Endpoint, drpc_cluster::Registration) {
    let mut router = drpc::Router::new();
    router.serve(SvcServer::new(svc)).unwrap();
    let endpoint = Endpoint::builder().router(router).build().unwrap();
    let addr = endpoint.listen("tcp://127.0.0.1:0").await.unwrap();
    let me = Instance::new("svc", id, [addr.to_string()]);
    let registration = registry
        .register(me, Duration::from_secs(60))
        .await
        .unwrap();
    (endpoint, registration)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn picks_breaker_changes_and_retries_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test binary");

    let registry = MemoryRegistry::new();
    let (fine, _r1) = serve(&registry, "fine", Fine).await;
    let (failing, _r2) = serve(&registry, "failing", Failing).await;
    // A third, registered but not listening: its dial fails and the call
    // is retried elsewhere.
    let gone = Instance::new("svc", "gone", ["tcp://127.0.0.1:1"]);
    let _r3 = registry
        .register(gone, Duration::from_secs(60))
        .await
        .unwrap();

    let client = Endpoint::builder().build().unwrap();
    let options = ClusterOptions {
        selector: Arc::new(RoundRobin::default()),
        ..Default::default()
    };
    let cluster = Cluster::with_options(client.clone(), &registry, "svc", options)
        .await
        .unwrap();
    let svc = SvcClient::new(cluster);
    for _ in 0..30 {
        let _ = tokio::time::timeout(Duration::from_secs(20), svc.go())
            .await
            .unwrap();
    }

    let counters: Vec<(String, Vec<String>, u64)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Counter(c) => {
                let key = key.key();
                let mut labels: Vec<String> = key
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                labels.sort();
                Some((key.name().to_string(), labels, c))
            }
            _ => None,
        })
        .collect();
    let get = |name: &str, want: &[&str]| -> u64 {
        counters
            .iter()
            .filter(|(n, l, _)| n == name && want.iter().all(|w| l.iter().any(|x| x == w)))
            .map(|(_, _, c)| c)
            .sum()
    };
    assert!(
        get(
            "drpc_cluster_picks_total",
            &["instance=fine", "service=svc"]
        ) > 0,
        "{counters:?}"
    );
    assert_eq!(
        get(
            "drpc_cluster_breaker_transitions_total",
            &["instance=failing", "state=open"]
        ),
        1,
        "{counters:?}"
    );
    // The dial to `gone` failed: its breaker counts it, and its calls were
    // moved (a dial failure reached no handler).
    assert!(
        get("drpc_cluster_picks_total", &["instance=gone"]) > 0,
        "{counters:?}"
    );

    client.close().await;
    fine.close().await;
    failing.close().await;
}
