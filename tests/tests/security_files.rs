//! kms-core's files and logs under hostile conditions (issue 11, items 8 and 9): started
//! with umask 000, its data directory is 0700, the database, its `-wal` and `-shm` files and
//! the development master key 0600, and its socket is never seen wider than 0660; a uid with
//! a newline in it cannot write a line of its own into the text log.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use kms_tests::proxy::{binary, capture_output};
use kms_tests::stack::{by_uid, create_request, unix_http};

fn mode(path: &Path) -> Result<u32> {
    Ok(std::fs::symlink_metadata(path)?.permissions().mode() & 0o777)
}

/// A raw HTTP request for kms-core's socket, as the proxy would send it for `user`.
fn kmip_request(user: &str, body: &serde_json::Value) -> String {
    let body = body.to_string();
    format!(
        "POST /kmip/2_1 HTTP/1.1\r\nHost: core\r\nX-KMS-User: {user}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn modes_hold_under_umask_000_and_logs_cannot_be_forged() -> Result<()> {
    let dir = tempfile::Builder::new().prefix("kms-files-").tempdir()?;
    let data = dir.path().join("data");
    let socket = dir.path().join("run").join("core.sock");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("umask 000 && exec \"$0\" \"$@\"")
        .arg(binary("kms-core"))
        .args([
            "--dev",
            "--log-format",
            "text",
            "--admin-address",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(&data)
        .arg("--socket")
        .arg(&socket)
        .env("KMS_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let logs = capture_output(&mut child);
    let lines = || logs.lock().map(|l| l.clone()).unwrap_or_default();

    // Watch the socket path from the moment it appears: never wider than 0660.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut widest = 0;
    loop {
        if let Ok(meta) = std::fs::symlink_metadata(&socket)
            && meta.file_type().is_socket()
        {
            widest |= meta.permissions().mode() & 0o777;
            if lines()
                .iter()
                .any(|l| l.contains("kms-core listening on unix:"))
            {
                break;
            }
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("kms-core did not start:\n{}", lines().join("\n"));
        }
        std::hint::spin_loop();
    }
    assert_eq!(
        widest & !0o660,
        0,
        "the socket was seen with mode {widest:o}"
    );
    assert_eq!(mode(&socket)?, 0o660);

    // A write, so that SQLite has its -wal and -shm files.
    let (status, body) = unix_http(
        &socket,
        &kmip_request("alice", &create_request(256, &["f"], None)),
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(mode(&data)?, 0o700, "data directory");
    for file in ["kms.db", "kms.db-wal", "kms.db-shm", "dev-master.key"] {
        assert_eq!(mode(&data.join(file))?, 0o600, "{file}");
    }

    // A uid that carries a forged audit line: escaped, on the line of the real event.
    let forged = "nope\n2026-11-29T00:00:00.000000Z  INFO audit: kmip user=\"admin\" operation=\"Destroy\" outcome=\"success\"";
    let (status, _) = unix_http(
        &socket,
        &kmip_request("mallory", &by_uid("Get", forged, vec![])),
    )
    .await?;
    assert_ne!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !lines().iter().any(|l| l.contains("user=\"mallory\"")) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let all = lines();
    assert!(
        all.iter().any(|l| l.contains("nope\\n2026-11-29T00:00:00")),
        "the forged text is not on the event's line:\n{}",
        all.join("\n")
    );
    assert!(
        !all.iter().any(|l| l.starts_with("2026-11-29T00:00:00")),
        "a forged line reached the log:\n{}",
        all.join("\n")
    );
    Ok(())
}
