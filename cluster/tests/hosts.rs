//! Several hosts on one machine: an instance in a network namespace of its
//! own, behind a veth pair whose link the test takes down. The instance is
//! alive but silent, not dead, and the client must stop picking it all the
//! same (its breaker opens on the timeouts). Needs root for `ip netns`;
//! where namespaces cannot be made the test says so and passes.

use drpc::{CallCtx, Endpoint, Status};
use drpc_cluster::selector::RoundRobin;
use drpc_cluster::{Cluster, ClusterOptions, Instance, MemoryRegistry, Registry};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

#[drpc::service(prefix = "/who")]
trait Who {
    async fn am_i(&self, ctx: &CallCtx) -> Result<String, Status>;
}

struct Named(&'static str);

impl Who for Named {
    async fn am_i(&self, _: &CallCtx) -> Result<String, Status> {
        Ok(self.0.to_string())
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A namespace joined to this one by a veth pair: `host` here, `far` there.
struct Net {
    ns: String,
    link: String,
    host: String,
    far: String,
}

impl Net {
    fn make() -> Result<Self, String> {
        let id = std::process::id() % 200 + 20;
        let net = Self {
            ns: format!("drpc-far-{id}"),
            link: format!("vdrpc{id}"),
            host: format!("10.231.{id}.1"),
            far: format!("10.231.{id}.2"),
        };
        let peer = format!("{}p", net.link);
        ip(&["netns", "add", &net.ns])?;
        ip(&[
            "link", "add", &net.link, "type", "veth", "peer", "name", &peer,
        ])?;
        ip(&["link", "set", &peer, "netns", &net.ns])?;
        ip(&["addr", "add", &format!("{}/24", net.host), "dev", &net.link])?;
        ip(&["link", "set", &net.link, "up"])?;
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", net.ns.as_str(), "ip"];
            all.extend_from_slice(args);
            ip(&all)
        };
        inside(&["addr", "add", &format!("{}/24", net.far), "dev", &peer])?;
        inside(&["link", "set", &peer, "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        Ok(net)
    }

    /// Takes the link down: packets between the two sides are lost.
    fn cut(&self) {
        ip(&["link", "set", &self.link, "down"]).expect("link down");
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.link]);
        let _ = ip(&["netns", "del", &self.ns]);
    }
}

/// Not a test on its own: run inside the namespace by the test below, it
/// serves `/who/am_i` as "far" on `DRPC_TEST_FAR_ADDR` until killed.
#[tokio::test(flavor = "current_thread")]
async fn far_instance() {
    let Ok(addr) = std::env::var("DRPC_TEST_FAR_ADDR") else {
        return; // run normally: nothing to do
    };
    let mut router = drpc::Router::new();
    router.serve(WhoServer::new(Named("far"))).unwrap();
    let endpoint = Endpoint::builder().router(router).build().unwrap();
    let bound = endpoint.listen(addr.as_str()).await.unwrap();
    println!("listening {bound}");
    // Until killed; bounded all the same.
    tokio::time::sleep(Duration::from_secs(120)).await;
}

/// The far instance, started inside the namespace; returns its address.
fn start_far(net: &Net) -> (Child, String) {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &net.ns])
        .arg(exe)
        .args(["--exact", "far_instance", "--nocapture"])
        .env("DRPC_TEST_FAR_ADDR", format!("tcp://{}:0", net.far))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let addr = out
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("listening ").map(str::to_string))
        .expect("the far instance listens");
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_instance_behind_a_cut_link_is_left_out_by_its_breaker() {
    let net = match Net::make() {
        Ok(net) => net,
        Err(why) => {
            eprintln!("SKIPPED: network namespaces cannot be made here ({why}); run as root");
            return;
        }
    };
    let (mut far, far_addr) = start_far(&net);

    let registry = MemoryRegistry::new();
    let mut router = drpc::Router::new();
    router.serve(WhoServer::new(Named("near"))).unwrap();
    let near = Endpoint::builder().router(router).build().unwrap();
    let near_addr = near.listen("tcp://127.0.0.1:0").await.unwrap();
    let ttl = Duration::from_secs(3600);
    let _r1 = registry
        .register(Instance::new("who", "near", [near_addr.to_string()]), ttl)
        .await
        .unwrap();
    let _r2 = registry
        .register(Instance::new("who", "far", [far_addr]), ttl)
        .await
        .unwrap();

    let client = Endpoint::builder().build().unwrap();
    let options = ClusterOptions {
        selector: Arc::new(RoundRobin::default()),
        // No probe during the test, however slow the machine.
        breaker: drpc_cluster::breaker::BreakerConfig {
            cool_down: Duration::from_secs(600),
            ..Default::default()
        },
        ..Default::default()
    };
    let cluster = Cluster::with_options(client.clone(), &registry, "who", options)
        .await
        .unwrap();
    let who = WhoClient::new(cluster).with_timeout(Duration::from_millis(300));
    let mut far_served = 0;
    for _ in 0..10 {
        if who.am_i().await.unwrap() == "far" {
            far_served += 1;
        }
    }
    assert_eq!(far_served, 5, "both hosts serve while the link is up");

    net.cut();
    // The far instance is alive but silent: its calls time out (408, which
    // may have run, so they are not retried) until 5 in a row open its
    // breaker; then every call goes to the near one.
    let mut timeouts = 0;
    for _ in 0..60 {
        match who.am_i().await {
            Ok(id) => assert_eq!(id, "near"),
            Err(status) => {
                assert_eq!(status.code(), drpc::Code::DEADLINE_EXCEEDED, "{status}");
                timeouts += 1;
            }
        }
    }
    assert_eq!(timeouts, 5, "the breaker opened after five timeouts");

    let _ = far.kill();
    let _ = far.wait();
    client.shutdown(Duration::from_millis(100)).await;
    near.close().await;
}
