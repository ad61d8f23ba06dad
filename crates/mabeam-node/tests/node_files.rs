//! Issue 21, item 11: the node's files are its user's alone. The data
//! directory is made 0700, `events.db`, its WAL and `config.json` are
//! 0600 (even a `config.json` left 0644 by an older node); a token or
//! cookie file readable by group or others is refused with its path and
//! the fix; a token or cookie in the config file must carry 128 bits.

#![cfg(unix)]

mod support;

use std::{ffi::OsStr, os::unix::fs::PermissionsExt, path::Path};

use support::{run_to_exit, start};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn the_data_dir_is_0700_and_its_files_0600() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    // As an older node left it.
    let config = data.join("config.json");
    std::fs::write(&config, r#"{"format": 1, "entries": []}"#).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let fresh = dir.path().join("fresh");

    let node = start(&data, &[]).await;
    let other = start(&fresh, &[]).await;
    assert_eq!(mode(&fresh), 0o700);
    for file in ["events.db", "events.db-wal", "token", "cookie"] {
        assert_eq!(mode(&fresh.join(file)), 0o600, "{file}");
    }
    assert_eq!(mode(&config), 0o600);
    node.kill().await;
    other.kill().await;
}

async fn run(data: &Path, extra: &[&OsStr]) -> (Option<i32>, String) {
    let mut args = vec![
        OsStr::new("run"),
        OsStr::new("--http"),
        OsStr::new("127.0.0.1:0"),
        OsStr::new("--data-dir"),
        data.as_os_str(),
    ];
    args.extend_from_slice(extra);
    run_to_exit(&args).await
}

#[tokio::test]
async fn a_token_or_cookie_file_others_can_read_is_refused_with_the_fix() {
    for file in ["token", "cookie"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file);
        std::fs::write(&path, "0123456789abcdef0123456789abcdef").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (code, stderr) = run(dir.path(), &[]).await;
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains("error 9010"), "{stderr}");
        assert!(
            stderr.contains(&format!("chmod 600 {}", path.display())),
            "{stderr}"
        );
        assert!(!dir.path().join("events.db").exists(), "nothing started");
    }
}

#[tokio::test]
async fn a_weak_token_or_cookie_in_the_config_is_refused() {
    for (section, key, weak) in [
        ("http", "token", "secret"),
        (
            "http",
            "token",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ),
        ("cluster", "cookie", "shh"),
        ("cluster", "cookie", "0123456789abcdef"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("node.toml");
        std::fs::write(&config, format!("[{section}]\n{key} = \"{weak}\"\n")).unwrap();
        let (code, stderr) = run(
            &dir.path().join("data"),
            &[OsStr::new("--config"), config.as_os_str()],
        )
        .await;
        assert_eq!(code, Some(2), "{weak}: {stderr}");
        assert!(stderr.contains("node.toml:2:"), "{stderr}");
        assert!(stderr.contains(&format!("{section}.{key}")), "{stderr}");
        assert!(stderr.contains("at least 128"), "{stderr}");
    }
}
