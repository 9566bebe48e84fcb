//! A real etcd for the tests: started on free loopback ports with a data
//! directory of its own, and stopped (and its directory removed) when
//! dropped. `.ci/install-deps` installs the binary where it is missing.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Etcd {
    child: Option<Child>,
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Etcd {
    /// Starts an etcd and waits until it answers.
    pub async fn start(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("drpc-etcd-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut etcd = Self {
            child: None,
            dir,
            client_port: free_port(),
            peer_port: free_port(),
        };
        etcd.spawn().await;
        etcd
    }

    /// `host:port` for clients.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    async fn spawn(&mut self) {
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::File::create(self.dir.join("etcd.log")).unwrap();
        let child = Command::new("etcd")
            .args(["--name", "drpc-test"])
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("drpc-test={peer}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start etcd ({e}): run `bash .ci/install-deps` to install it")
            });
        self.child = Some(child);
        self.wait_ready().await;
    }

    /// Waits (at most 30 s) until a client's request succeeds.
    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let attempt = async {
                let mut c = etcd_client::Client::connect([self.endpoint()], None).await?;
                c.get("ready-probe", None).await
            };
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), attempt).await {
                return;
            }
            let log = std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default();
            assert!(
                Instant::now() < deadline,
                "etcd did not answer within 30 s; its log:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills etcd at once (SIGKILL), keeping its data.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts etcd again on the same ports and data.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
