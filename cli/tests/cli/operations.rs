//! `drpc health` and `drpc ctl`, against a running endpoint.

use super::*;

#[test]
fn health_prints_the_state_and_exits_zero_only_when_serving() {
    let certs = Certs::new("health");
    let server = Server::start("tcp", &certs, router(), None);
    drpc()
        .args(["health", &server.url])
        .assert()
        .success()
        .stdout("serving\n");
    server.endpoint.set_health(drpc::Health::NotServing);
    drpc()
        .args(["health", &server.url])
        .assert()
        .code(1)
        .stdout("not_serving\n")
        .stderr(predicate::str::contains("is not_serving"));
    drpc()
        .args(["health", "tcp://127.0.0.1:1", "--timeout", "2s"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("cannot connect"));
}

#[test]
fn ctl_shows_stats_changes_limits_and_stops_through_the_control_channel() {
    let certs = Certs::new("ctl");
    let server = Server::start("tcp", &certs, router(), None);
    let path = std::env::temp_dir().join(format!("drpc-ctl-{}.sock", std::process::id()));
    let (admin, at) = server
        .runtime
        .block_on(
            drpc_plugins::Admin::new(&server.endpoint).listen(format!("unix://{}", path.display())),
        )
        .unwrap();
    let at = at.to_string();
    drpc()
        .args(["ctl", &at, "stats"])
        .assert()
        .success()
        .stdout(predicate::str::contains(r#""sessions": 0"#))
        .stdout(predicate::str::contains(r#""health": "serving""#));
    drpc()
        .args(["ctl", &at, "routes"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("404"));
    drpc()
        .args(["ctl", &at, "limits", "max_calls=7"])
        .assert()
        .success()
        .stdout(predicate::str::contains(r#""max_calls": 7"#));
    assert_eq!(server.endpoint.limits().max_calls, 7);
    drpc()
        .args(["ctl", &at, "limits", "max_bananas=1"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("is not a limit"));
    drpc()
        .args(["ctl", &at, "health", "not_serving"])
        .assert()
        .success()
        .stdout("\"not_serving\"\n");
    drpc()
        .args(["ctl", &at, "stop", "1s"])
        .assert()
        .success()
        .stdout("\"stopping\"\n");
    both_close(&server, &admin);
}

#[test]
fn ctl_restart_prints_the_new_process_once_it_is_ready_and_says_why_when_it_fails() {
    let certs = Certs::new("ctl-restart");
    let server = Server::start("tcp", &certs, router(), None);
    let path = std::env::temp_dir().join(format!("drpc-ctl-restart-{}.sock", std::process::id()));
    let restart = server
        .runtime
        .block_on(async { drpc::restart::Restart::from_env() })
        .unwrap();
    restart.serve(&server.endpoint);
    let (admin, at) = server
        .runtime
        .block_on(
            drpc_plugins::Admin::new(&server.endpoint)
                .restart(restart.clone())
                .listen(format!("unix://{}", path.display())),
        )
        .unwrap();
    let at = at.to_string();
    // A new process that fails: the old one serves on.
    restart.set_program("/bin/sh", ["-c", "exit 7"]);
    drpc()
        .args(["ctl", &at, "restart"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("serves on"))
        .stderr(predicate::str::contains("ended before it was ready"));
    assert!(!server.endpoint.is_closed());
    // One that reports ready (on the descriptor after the endpoint's and
    // the channel's listening sockets), then holds them.
    restart.set_program(
        "/bin/sh",
        ["-c", "printf 1 >&\"$DRPC_READY_FD\"; exec sleep 30"],
    );
    let out = drpc().args(["ctl", &at, "restart"]).assert().success();
    let pid: i32 = String::from_utf8(out.get_output().stdout.clone())
        .unwrap()
        .trim()
        .parse()
        .expect("the new process's pid");
    both_close(&server, &admin);
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
    assert!(killed.unwrap().success());
}

/// Waits until the endpoint and its control channel have closed.
fn both_close(server: &Server, admin: &Endpoint) {
    server
        .runtime
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(20), async {
                server.endpoint.closed().await;
                admin.closed().await;
            })
            .await
        })
        .expect("the endpoint and its control channel close");
}
