//! Issue 21, item 1: a node that cannot start says why with a typed error
//! (its code and what to do), exits 1 (2 for bad configuration), never
//! panics, and leaves nothing behind. Each case runs the binary.

mod support;

use std::ffi::OsStr;

use mabeam_node::client::request;
use support::{WAIT, run_to_exit, start};

fn no_panic(stderr: &str) {
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The HTTP address is taken: nothing is started, not even the data
/// directory made.
#[tokio::test]
async fn a_taken_port_is_error_9005_naming_the_flag_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, stderr) = run_to_exit(&[
        OsStr::new("run"),
        OsStr::new("--http"),
        OsStr::new(&addr),
        OsStr::new("--data-dir"),
        data.as_os_str(),
    ])
    .await;
    no_panic(&stderr);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("error 9005"), "{stderr}");
    assert!(
        stderr.contains(&format!("{addr} is in use: pass --http ADDR")),
        "{stderr}"
    );
    assert!(!data.exists(), "nothing is made before the port is bound");
}

/// A second node on the data directory of a running one is refused with
/// the first one's pid; the first keeps serving.
#[tokio::test]
async fn a_data_dir_in_use_is_error_9009_naming_the_pid_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let first = start(dir.path(), &[]).await;
    let pid = first.child.id().unwrap();

    let (code, stderr) = run_to_exit(&[
        OsStr::new("run"),
        OsStr::new("--http"),
        OsStr::new("127.0.0.1:0"),
        OsStr::new("--data-dir"),
        dir.path().as_os_str(),
    ])
    .await;
    no_panic(&stderr);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("error 9009"), "{stderr}");
    assert!(
        stderr.contains(&format!("is in use by another node (pid {pid})")),
        "{stderr}"
    );
    let health = tokio::time::timeout(WAIT, request(&first.addr, "GET", "/health", None))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(health.status, 200, "{}", health.body);
    first.kill().await;
}

/// A corrupt `config.json` (the config server's settings) is the user's
/// to fix: exit 2, the file named. Once it is removed, the node starts on
/// the same directory: the failed start held nothing.
#[tokio::test]
async fn a_corrupt_config_json_names_the_file_exits_2_and_leaves_nothing_held() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.json");
    std::fs::write(&file, "{ not json").unwrap();
    let (code, stderr) = run_to_exit(&[
        OsStr::new("run"),
        OsStr::new("--http"),
        OsStr::new("127.0.0.1:0"),
        OsStr::new("--data-dir"),
        dir.path().as_os_str(),
    ])
    .await;
    no_panic(&stderr);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("config.json"), "{stderr}");
    assert!(stderr.contains("mabeam: error 9006"), "{stderr}");
    assert!(stderr.contains("fix that file or move it away"), "{stderr}");

    std::fs::remove_file(&file).unwrap();
    let again = start(dir.path(), &[]).await;
    again.kill().await;
}

/// `--store` names a PostgreSQL server that is down: the node exits 1
/// with the event store's typed error (3016), naming the URL without its
/// password.
#[tokio::test]
async fn a_postgres_store_that_is_down_names_its_url_without_the_password_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://app:s3cret@127.0.0.1:{port}/events");
    let (code, stderr) = run_to_exit(&[
        OsStr::new("run"),
        OsStr::new("--http"),
        OsStr::new("127.0.0.1:0"),
        OsStr::new("--data-dir"),
        dir.path().as_os_str(),
        OsStr::new("--store"),
        OsStr::new(&url),
    ])
    .await;
    no_panic(&stderr);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("postgres://app:***@127.0.0.1:{port}/events")),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
}
