//! A command's output as log lines: each stream is split into lines (long ones into pieces), the
//! lines of both streams meet in one channel in the order they were read, and a shipper sends
//! them with `createLogs` in batches — every ~200 ms, or sooner when a batch is full.
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use uuid::Uuid;

use super::client::{retrying, Client, Failure, LogLine};

/// Longest line sent as one log message; longer lines are split (the server takes 64 KiB).
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// A batch is sent when it has this many lines…
pub const MAX_BATCH_LINES: usize = 500;
/// …or this many bytes of messages (the server takes request bodies up to 2 MiB)…
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// …or when its first line has waited this long.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// How long one batch is retried while the server is unreachable before it is dropped.
const BATCH_RETRY_WINDOW: Duration = Duration::from_secs(120);

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn level(self) -> &'static str {
        match self {
            Stream::Stdout => "INFO",
            Stream::Stderr => "ERROR",
        }
    }

    fn logger(self) -> &'static str {
        match self {
            Stream::Stdout => "agent.stdout",
            Stream::Stderr => "agent.stderr",
        }
    }
}

/// One line as read.
#[derive(Debug, Clone)]
pub struct Line {
    pub stream: Stream,
    pub message: String,
    pub read_at: DateTime<Utc>,
}

/// Reads `reader` to its end, sending each line. Blank lines are skipped (a log message may not
/// be empty); a trailing `\r` is dropped; bytes that are not UTF-8 are replaced.
pub async fn read_lines<R: AsyncRead + Unpin>(
    mut reader: R,
    stream: Stream,
    tx: mpsc::Sender<Line>,
) {
    let mut pending: Vec<u8> = Vec::with_capacity(8 * 1024);
    let mut chunk = vec![0u8; 8 * 1024];
    let mut receiver_gone = false;
    loop {
        let read = match reader.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!("reading the command's {stream:?} failed: {e}");
                break;
            }
        };
        pending.extend_from_slice(&chunk[..read]);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            emit(&line[..line.len() - 1], stream, &tx, &mut receiver_gone).await;
        }
        while pending.len() >= MAX_LINE_BYTES {
            let piece: Vec<u8> = pending.drain(..MAX_LINE_BYTES).collect();
            emit(&piece, stream, &tx, &mut receiver_gone).await;
        }
    }
    if !pending.is_empty() {
        emit(&pending, stream, &tx, &mut receiver_gone).await;
    }
}

async fn emit(bytes: &[u8], stream: Stream, tx: &mpsc::Sender<Line>, receiver_gone: &mut bool) {
    if *receiver_gone {
        // Keep draining the pipe so the command never blocks on a full one.
        return;
    }
    let text = String::from_utf8_lossy(bytes);
    let text = text.strip_suffix('\r').unwrap_or(&text);
    if text.trim().is_empty() {
        return;
    }
    let line = Line {
        stream,
        message: text.to_owned(),
        read_at: Utc::now(),
    };
    if tx.send(line).await.is_err() {
        *receiver_gone = true;
    }
}

/// Sends the lines arriving on `rx` as logs of `flow_run_id` until the channel closes, then
/// flushes what is left. Timestamps are made strictly increasing, so the server's
/// (timestamp, id) order is the order the lines were read.
pub async fn ship_logs(
    client: Arc<Client>,
    workspace_id: Uuid,
    flow_run_id: Uuid,
    mut rx: mpsc::Receiver<Line>,
) -> usize {
    let mut batch: Vec<LogLine> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut sent = 0usize;
    let mut last: Option<DateTime<Utc>> = None;
    let mut flush_at: Option<Instant> = None;
    loop {
        let next = match flush_at {
            Some(at) => tokio::select! {
                line = rx.recv() => Some(line),
                _ = tokio::time::sleep_until(at) => None,
            },
            None => Some(rx.recv().await),
        };
        match next {
            Some(Some(line)) => {
                let mut timestamp = line.read_at;
                if let Some(previous) = last {
                    if timestamp <= previous {
                        timestamp = previous + chrono::Duration::microseconds(1);
                    }
                }
                last = Some(timestamp);
                batch_bytes += line.message.len();
                batch.push(LogLine {
                    flow_run_id,
                    level: line.stream.level(),
                    name: line.stream.logger(),
                    message: line.message,
                    timestamp,
                });
                flush_at.get_or_insert_with(|| Instant::now() + FLUSH_INTERVAL);
                if batch.len() >= MAX_BATCH_LINES || batch_bytes >= MAX_BATCH_BYTES {
                    sent += flush(&client, workspace_id, flow_run_id, &mut batch).await;
                    batch_bytes = 0;
                    flush_at = None;
                }
            }
            // The channel closed: every reader is done.
            Some(None) => break,
            // The flush interval passed.
            None => {
                sent += flush(&client, workspace_id, flow_run_id, &mut batch).await;
                batch_bytes = 0;
                flush_at = None;
            }
        }
    }
    sent += flush(&client, workspace_id, flow_run_id, &mut batch).await;
    sent
}

async fn flush(
    client: &Client,
    workspace_id: Uuid,
    flow_run_id: Uuid,
    batch: &mut Vec<LogLine>,
) -> usize {
    if batch.is_empty() {
        return 0;
    }
    let lines = std::mem::take(batch);
    let deadline = Instant::now() + BATCH_RETRY_WINDOW;
    let result = retrying("sending logs", None, Some(deadline), || {
        client.create_logs(workspace_id, &lines)
    })
    .await;
    match result {
        Ok(_) => lines.len(),
        Err(Failure::Fatal(e)) | Err(Failure::GaveUp(e)) => {
            tracing::warn!(
                flow_run = %flow_run_id,
                "dropping {} log lines: {e}",
                lines.len()
            );
            0
        }
        Err(Failure::Stopped) => 0,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    async fn lines_of(input: &[u8]) -> Vec<String> {
        let (tx, mut rx) = mpsc::channel(1024);
        read_lines(input, Stream::Stdout, tx).await;
        let mut out = Vec::new();
        while let Some(line) = rx.recv().await {
            out.push(line.message);
        }
        out
    }

    #[tokio::test]
    async fn output_is_split_into_lines() {
        assert_eq!(
            lines_of(b"a\r\nb\n\n  \nc").await,
            vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]
        );
    }

    #[tokio::test]
    async fn long_lines_are_split_into_pieces() {
        let mut input = vec![b'x'; MAX_LINE_BYTES * 2 + 10];
        input.push(b'\n');
        let lines = lines_of(&input).await;
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].len(), MAX_LINE_BYTES);
        assert_eq!(lines[2].len(), 10);
    }
}
