//! What the benchmarks that run the release binary share.
use std::time::Duration;

use tokio::io::AsyncBufReadExt;

/// A `flowcloud serve` process started by a benchmark.
pub struct ServerProcess {
    pub child: tokio::process::Child,
    pub pid: u32,
    /// `HOST:PORT` it listens on.
    pub address: String,
}

/// Starts `flowcloud serve` on `database_url` and a free port, and returns once it has logged
/// the address it listens on. Its output is drained from then on, so it never blocks on a full
/// pipe; the process is killed if the handle is dropped.
pub async fn start_server(database_url: &str) -> ServerProcess {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_flowcloud"))
        .arg("serve")
        .env("DATABASE_URL", database_url)
        .env("FLOWCLOUD_LISTEN", "127.0.0.1:0")
        .env("FLOWCLOUD_LOG", "warn,flowcloud::app=info")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start the flowcloud binary");
    let pid = child.id().expect("pid");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let address = loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the server did not report its address")
            .expect("read")
            .expect("the server exited");
        if let Some(at) = line.find("listening on http://") {
            let rest = &line[at + "listening on http://".len()..];
            let end = rest
                .find(|c: char| c.is_whitespace() || c == '\u{1b}')
                .unwrap_or(rest.len());
            break rest[..end].to_owned();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    ServerProcess {
        child,
        pid,
        address,
    }
}

/// Fields of `/proc/PID/status` given in kB (`VmRSS:`, `VmHWM:`, `RssAnon:`…), in KiB; 0 for a
/// field the kernel does not report.
pub fn status_kib<const N: usize>(pid: u32, fields: [&str; N]) -> [u64; N] {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    fields.map(|name| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    })
}
