//! Live fan-out benchmark (prints figures, asserts nothing).
//!
//! Starts the release `flowcloud` binary on a fresh SQLite database, and for 1,000 / 5,000 /
//! 10,000 subscriptions (10 per websocket connection, all on one workspace) measures:
//! - delivery latency of one state change to every subscription (p50 / p99 / max, from just
//!   before the mutation is sent to each subscription's `next` being read by the client);
//! - memory per idle subscription (server RSS after opening them minus before, / count);
//! - the server's peak RSS (VmHWM);
//!
//! and once, on a server with no other subscribers, a lone subscriber's latency measured from
//! the mutation's HTTP response (p50 / p99 over many changes).
//!
//!     cargo bench --bench live            # all sizes
//!     cargo bench --bench live -- 5000    # only the given sizes
//!
//! Targets (issue "Live"): 5,000 subscriptions p99 < 100 ms; lone subscriber p50 < 5 ms;
//! < 20 KiB per idle subscription.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, StreamExt};
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const ROUNDS: usize = 10;
const LONE_ROUNDS: usize = 300;
const SUBSCRIPTION: &str = "subscription($ws: UUID!, $after: String) {
    flowRunStateChanged(workspaceId: $ws, after: $after) { cursor flowRun { id } toState { type } } }";

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Server {
    process: support::ServerProcess,
    pid: u32,
    base: String,
    ws_url: String,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/bench.db?mode=rwc", dir.path().display());
        let process = support::start_server(&url).await;
        Server {
            pid: process.pid,
            base: format!("http://{}/graphql", process.address),
            ws_url: format!("ws://{}/graphql/ws", process.address),
            process,
            _dir: dir,
        }
    }

    /// (VmRSS, VmHWM) in KiB.
    fn memory(&self) -> (u64, u64) {
        let [rss, peak] = support::status_kib(self.pid, ["VmRSS:", "VmHWM:"]);
        (rss, peak)
    }

    /// CPU time (user + system) the server has used so far.
    fn cpu(&self) -> Duration {
        cpu_of(&format!("/proc/{}/stat", self.pid))
    }

    async fn stop(mut self) {
        let _ = self.process.child.kill().await;
    }
}

struct Api {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Api {
    async fn gql(&self, query: &str, variables: Value) -> Value {
        let response: Value = self
            .http
            .post(&self.url)
            .bearer_auth(&self.token)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("POST /graphql")
            .json()
            .await
            .expect("json");
        assert!(response.get("errors").is_none(), "{response:#}");
        response["data"].clone()
    }

    async fn set_state(&self, run: &str, state_type: &str) {
        self.gql(
            "mutation($run: UUID!, $type: StateType!) {
                setFlowRunState(flowRunId: $run, state: { type: $type }, force: true) { status } }",
            json!({ "run": run, "type": state_type }),
        )
        .await;
    }
}

/// Signs up, creates a workspace, a flow and a run; returns (api, workspace id, run id).
async fn setup(server: &Server) -> (Api, String, String) {
    let mut api = Api {
        http: reqwest::Client::new(),
        url: server.base.clone(),
        token: String::new(),
    };
    let response: Value = api
        .http
        .post(&api.url)
        .json(&json!({
            "query": "mutation($i: SignUpInput!) { signUp(input: $i) { token } }",
            "variables": { "i": { "email": "bench@example.com", "password": "correct-horse-battery",
                                   "handle": "bench", "name": "bench" } },
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    api.token = response["data"]["signUp"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("{response:#}"))
        .to_owned();
    let ws = api
        .gql(
            "mutation { createWorkspace(input: { handle: \"bench\", name: \"bench\" }) { id } }",
            Value::Null,
        )
        .await["createWorkspace"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let flow = api
        .gql(
            "mutation($ws: UUID!) { createFlow(workspaceId: $ws, input: { name: \"etl\" }) { id } }",
            json!({ "ws": ws }),
        )
        .await["createFlow"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let run = api
        .gql(
            "mutation($ws: UUID!, $flow: UUID!) { createFlowRun(workspaceId: $ws, input: { flowId: $flow }) { id } }",
            json!({ "ws": ws, "flow": flow }),
        )
        .await["createFlowRun"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (api, ws, run)
}

async fn connect(url: &str, token: &str) -> Socket {
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("websocket connect");
    socket
        .send(Message::Text(
            json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } })
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(t))) if t.as_str().contains("connection_ack") => break,
            Some(Ok(_)) => {}
            other => panic!("no ack: {other:?}"),
        }
    }
    socket
}

async fn subscribe(socket: &mut Socket, id: usize, ws: &str, after: Option<&str>) {
    let message = json!({ "type": "subscribe", "id": id.to_string(),
        "payload": { "query": SUBSCRIPTION, "variables": { "ws": ws, "after": after } } });
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .unwrap();
}

/// Reads a connection forever, reporting the arrival time of every result.
fn spawn_reader(
    mut read: futures_util::stream::SplitStream<Socket>,
    tx: mpsc::UnboundedSender<Instant>,
) {
    tokio::spawn(async move {
        while let Some(Ok(message)) = read.next().await {
            if let Message::Text(text) = message {
                if text.as_str().starts_with("{\"type\":\"next\"")
                    || text.as_str().contains("\"type\":\"next\"")
                {
                    let _ = tx.send(Instant::now());
                } else if text.as_str().contains("\"error\"") {
                    eprintln!("subscription error: {text}");
                }
            }
        }
    });
}

/// utime + stime of a process, from its `/proc/…/stat`.
fn cpu_of(path: &str) -> Duration {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// The newest cursor: the one event so far is the run's creation.
async fn head_cursor(server: &Server, api: &Api, ws: &str) -> String {
    let mut socket = connect(&server.ws_url, &api.token).await;
    subscribe(&mut socket, 0, ws, Some("0")).await;
    let mut cursor = String::new();
    while let Some(Ok(Message::Text(text))) = socket.next().await {
        let v: Value = serde_json::from_str(text.as_str()).unwrap();
        if v["type"] == "next" {
            cursor = v["payload"]["data"]["flowRunStateChanged"]["cursor"]
                .as_str()
                .unwrap()
                .to_owned();
            break;
        }
    }
    let _ = socket.close(None).await;
    cursor
}

async fn lone_subscriber() {
    let server = Server::start().await;
    let (api, ws, run) = setup(&server).await;
    let after = head_cursor(&server, &api, &ws).await;
    let socket = connect(&server.ws_url, &api.token).await;
    let (mut write, read) = socket.split();
    let (tx, mut rx) = mpsc::unbounded_channel();
    {
        let message = json!({ "type": "subscribe", "id": "lone",
            "payload": { "query": SUBSCRIPTION, "variables": { "ws": ws, "after": after } } });
        write
            .send(Message::Text(message.to_string().into()))
            .await
            .unwrap();
    }
    spawn_reader(read, tx);
    let mut from_response = Vec::with_capacity(LONE_ROUNDS);
    let mut from_request = Vec::with_capacity(LONE_ROUNDS);
    let mut early = 0;
    for i in 0..LONE_ROUNDS {
        let sent = Instant::now();
        api.set_state(&run, if i % 2 == 0 { "PENDING" } else { "RUNNING" })
            .await;
        let answered = Instant::now();
        let arrived = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("the lone subscriber got nothing")
            .unwrap();
        if arrived < answered {
            early += 1;
        }
        from_response.push(arrived.saturating_duration_since(answered));
        from_request.push(arrived - sent);
    }
    from_response.sort();
    from_request.sort();
    println!("lone subscriber, {LONE_ROUNDS} state changes:");
    println!(
        "  from the mutation's response: p50 {}  p99 {}  max {}  ({early} events arrived before the response)",
        ms(percentile(&from_response, 50.0)),
        ms(percentile(&from_response, 99.0)),
        ms(*from_response.last().unwrap()),
    );
    println!(
        "  from sending the mutation:    p50 {}  p99 {}  max {}",
        ms(percentile(&from_request, 50.0)),
        ms(percentile(&from_request, 99.0)),
        ms(*from_request.last().unwrap()),
    );
    drop(write);
    server.stop().await;
}

/// One state change; the time from just before sending it to each subscription's delivery.
async fn round(
    api: &Api,
    run: &str,
    state_type: &str,
    rx: &mut mpsc::UnboundedReceiver<Instant>,
    subscriptions: usize,
) -> Vec<Duration> {
    let sent = Instant::now();
    api.set_state(run, state_type).await;
    let mut latencies = Vec::with_capacity(subscriptions);
    for _ in 0..subscriptions {
        let arrived = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .expect("not every subscription got the event")
            .unwrap();
        latencies.push(arrived - sent);
    }
    latencies
}

/// Subscriptions per websocket connection: 10, or `BENCH_SUBS_PER_CONNECTION`.
fn subs_per_connection() -> usize {
    std::env::var("BENCH_SUBS_PER_CONNECTION")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(10)
}

async fn fan_out(subscriptions: usize) {
    let per_connection = subs_per_connection();
    let connections = subscriptions / per_connection;
    let server = Server::start().await;
    let (api, ws, run) = setup(&server).await;
    // Live subscriptions (what a dashboard opens), or with BENCH_RESUME=1 resuming from the
    // newest cursor (each one then replays from the log as it starts).
    let after = match std::env::var_os("BENCH_RESUME") {
        Some(_) => Some(head_cursor(&server, &api, &ws).await),
        None => None,
    };
    let (rss_before, _) = server.memory();

    let (tx, mut rx) = mpsc::unbounded_channel();
    let opening = Instant::now();
    let sinks: Vec<SplitSink<Socket, Message>> = futures_util::stream::iter(0..connections)
        .map(|_| {
            let (url, token, ws, after, tx) = (
                server.ws_url.clone(),
                api.token.clone(),
                ws.clone(),
                after.clone(),
                tx.clone(),
            );
            async move {
                let mut socket = connect(&url, &token).await;
                for id in 0..per_connection {
                    subscribe(&mut socket, id, &ws, after.as_deref()).await;
                }
                let (write, read) = socket.split();
                spawn_reader(read, tx);
                write
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let opened_in = opening.elapsed();
    if std::env::var_os("BENCH_SHOW_PID").is_some() {
        eprintln!("server pid {}", server.pid);
    }

    // Warm-up: subscriptions have no acknowledgement, so change state until one change
    // reaches every subscription (resuming ones get the first change in any case).
    let warm_started = Instant::now();
    let mut warm_rounds = 0;
    let warm_max = loop {
        warm_rounds += 1;
        let sent = Instant::now();
        api.set_state(
            &run,
            if warm_rounds % 2 == 0 {
                "RUNNING"
            } else {
                "PENDING"
            },
        )
        .await;
        let mut got = 0;
        let mut last = sent;
        while got < subscriptions {
            match tokio::time::timeout(Duration::from_secs(2), rx.recv()).await {
                Ok(Some(at)) => {
                    got += 1;
                    last = at;
                }
                _ => break,
            }
        }
        if got == subscriptions {
            break last - sent;
        }
        assert!(
            warm_started.elapsed() < Duration::from_secs(120),
            "subscriptions never all went live"
        );
    };
    // Let the server settle, then read its memory with every subscription idle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss_idle, _) = server.memory();

    let (server_cpu, client_cpu) = (server.cpu(), cpu_of("/proc/self/stat"));
    let mut all = Vec::with_capacity(subscriptions * ROUNDS);
    let mut round_max = Vec::with_capacity(ROUNDS);
    for i in 0..ROUNDS {
        let mut latencies = round(
            &api,
            &run,
            if i % 2 == 0 { "RUNNING" } else { "PENDING" },
            &mut rx,
            subscriptions,
        )
        .await;
        latencies.sort();
        round_max.push(*latencies.last().unwrap());
        all.extend(latencies);
    }
    all.sort();
    let server_cpu = (server.cpu() - server_cpu) / ROUNDS as u32;
    let client_cpu = (cpu_of("/proc/self/stat") - client_cpu) / ROUNDS as u32;
    let (_, peak) = server.memory();
    let per_subscription = (rss_idle.saturating_sub(rss_before)) as f64 / subscriptions as f64;
    println!(
        "{subscriptions} subscriptions ({connections} connections x {per_connection}), opened in {opened_in:.2?}, all live after {warm_rounds} change(s), the last reaching all in {}:",
        ms(warm_max)
    );
    println!(
        "  one state change to all ({ROUNDS} changes): p50 {}  p99 {}  max {}  (slowest round's last delivery: {})",
        ms(percentile(&all, 50.0)),
        ms(percentile(&all, 99.0)),
        ms(*all.last().unwrap()),
        ms(*round_max.iter().max().unwrap()),
    );
    println!(
        "  CPU per change: server {}, benchmark clients {}",
        ms(server_cpu),
        ms(client_cpu)
    );
    println!(
        "  memory: {:.1} KiB per idle subscription (RSS {} MiB -> {} MiB); peak RSS {} MiB",
        per_subscription,
        rss_before / 1024,
        rss_idle / 1024,
        peak / 1024
    );
    drop(sinks);
    server.stop().await;
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1_000, 5_000, 10_000]
    } else {
        sizes
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        println!("flowcloud live benchmark (release binary, SQLite)");
        lone_subscriber().await;
        for size in sizes {
            fan_out(size).await;
        }
    });
}
