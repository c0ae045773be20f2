//! Helpers for tests that drive a controller through the fake API server.

use std::future::Future;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Polls `check` every 20 ms until it holds or `limit` passes; returns whether it held.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a command printed and how it ended.
#[derive(Debug)]
pub struct Ran {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

/// Runs the real `kubectl` with `KUBECONFIG=kubeconfig` from directory `dir`, `stdin` piped
/// in, and `path_first` (if any) ahead of `PATH`, where kubectl finds plugins.
pub fn kubectl(
    kubeconfig: &Path,
    dir: &Path,
    args: &[&str],
    stdin: Option<&str>,
    path_first: Option<&Path>,
) -> Ran {
    use std::io::Write;
    let mut cmd = Command::new("kubectl");
    cmd.args(args)
        .env("KUBECONFIG", kubeconfig)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(first) = path_first {
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.env("PATH", format!("{}:{path}", first.display()));
    }
    let mut child = cmd
        .spawn()
        .expect("kubectl is installed (the test command installs it)");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(input.as_bytes())
            .expect("kubectl reads its input");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("kubectl ends");
    Ran {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code().unwrap_or(-1),
    }
}
