//! Load benchmark: starts the real server in-process (127.0.0.1:0) on a fresh SQLite file and,
//! when `BENCH_DATABASE_URL` (or `TEST_DATABASE_URL`) is a `postgres://…` URL, on a fresh
//! PostgreSQL database too, and measures over real HTTP with 16 concurrent clients:
//!
//! - log lines ingested per second through `createLogs` (batches of 1,000 lines, ~100-byte messages);
//! - flow runs created per second through `createFlowRun` (errors counted: must be zero);
//! - state transitions per second through `setFlowRunState` (SCHEDULED→PENDING→RUNNING→COMPLETED);
//! - p50/p99 latency of a 50-run dashboard page with nested fields, with 100,000 runs in the workspace.
//!
//! Run: `cargo bench --bench load` (release build). Knobs: `BENCH_RUNS` (runs in the workspace
//! for the page test, default 100000), `BENCH_CLIENTS` (default 16), `BENCH_ONLY=sqlite|postgres`,
//! `BENCH_PHASES=runs,transitions,logs,page` (default all), `BENCH_LOG=warn` (server log filter),
//! `BENCH_PAGE_REQUESTS` (page requests per client, default 100), `BENCH_ON_PAGE_PHASE` (a shell
//! command run as the page phase starts, e.g. to zero a profiler's counters; likewise
//! `BENCH_ON_RUNS_PHASE`, `BENCH_ON_TRANSITIONS_PHASE`, `BENCH_ON_LOGS_PHASE`).
//! Under `cargo test --all-targets` (no `--bench` argument) it does nothing.
use std::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use entity::{flow_run_states, flow_runs, task_run_states, task_runs};
use flowcloud::{Application, Config};
use sea_orm::{ConnectionTrait, Database, EntityTrait, Set};
use serde_json::{json, Value};
use tokio::sync::oneshot;

// The same allocator as the `flowcloud` binary, so the in-process server measures alike.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use uuid::Uuid;

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

const LOG_BATCH: usize = 1_000;
const LOG_BATCHES_PER_CLIENT: usize = 12;
const RUNS_PER_CLIENT: usize = 60;
const PAGE_REQUESTS_PER_CLIENT: usize = 100;
const PAGE_QUERY: &str = "query($ws: UUID!) { workspace(id: $ws) { flowRuns(first: 50) { nodes {
    id name state { type name } flow { name } deployment { name } tags expectedStartTime
    taskRuns(first: 5) { nodes { name state { type } } } } } } }";

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("load: skipped (run it with `cargo bench --bench load`)");
        return;
    }
    // As the `flowcloud` binary does: the server runs in this process.
    if let Err(e) = flowcloud::app::disable_transparent_huge_pages() {
        eprintln!("load: transparent huge pages stay on: {e}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("load: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run()) {
        eprintln!("load: failed: {e}");
        std::process::exit(1);
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Debug, Default, Clone)]
struct Figures {
    backend: String,
    log_lines_per_s: f64,
    log_errors: u64,
    runs_per_s: f64,
    run_errors: u64,
    transitions_per_s: f64,
    transition_errors: u64,
    seed_runs: usize,
    seed_s: f64,
    page_p50_ms: f64,
    page_p99_ms: f64,
    page_max_ms: f64,
    pages_per_s: f64,
    /// CPU time (server and in-process clients together) per page: steadier than latency on a
    /// shared machine, so it is the figure to compare when optimising.
    page_cpu_ms: f64,
    page_errors: u64,
    /// Busy CPU of the whole machine (server, database, clients) per operation, and the share
    /// of time the hypervisor gave to other guests, per phase: on a shared VM the throughput
    /// figures move with that share, these do not.
    run_machine_ms: f64,
    transition_machine_ms: f64,
    log_batch_machine_ms: f64,
    page_machine_ms: f64,
    steal_percent: [f64; 4],
}

/// Clock ticks of the whole machine from /proc/stat: busy (user, nice, system, irq, softirq),
/// stolen by the hypervisor, and all of them.
#[derive(Clone, Copy, Default)]
struct MachineTicks {
    busy: f64,
    steal: f64,
    total: f64,
}

impl MachineTicks {
    fn now() -> Self {
        let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
            return Self::default();
        };
        let fields: Vec<f64> = stat
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().unwrap_or(0.0))
            .collect();
        let at = |i: usize| fields.get(i).copied().unwrap_or(0.0);
        Self {
            busy: at(0) + at(1) + at(2) + at(5) + at(6),
            steal: at(7),
            total: fields.iter().take(8).sum(),
        }
    }

    /// Busy milliseconds per operation since `self`, and the percentage of time stolen.
    fn since(self, operations: usize) -> (f64, f64) {
        let now = Self::now();
        let busy_ms = (now.busy - self.busy) * 10.0;
        let total = (now.total - self.total).max(1.0);
        (
            busy_ms / operations.max(1) as f64,
            (now.steal - self.steal) * 100.0 / total,
        )
    }
}

/// CPU time this process has used so far (user + system), from /proc; zero where unavailable.
fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start at state; utime and stime
    // are fields 14 and 15 of the whole line, in clock ticks (100 per second on Linux).
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// A hook for profilers: `BENCH_ON_PAGE_PHASE='callgrind_control -z $PPID'` zeroes valgrind's
/// counters as the measured page requests start, so they count those only (likewise
/// `BENCH_ON_RUNS_PHASE`, `BENCH_ON_TRANSITIONS_PHASE`, `BENCH_ON_LOGS_PHASE`).
fn on_phase_start(name: &str) -> Res<()> {
    let variable = format!("BENCH_ON_{}_PHASE", name.to_uppercase());
    if let Ok(command) = std::env::var(variable) {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .status()?;
    }
    Ok(())
}

fn phase(name: &str) -> bool {
    std::env::var("BENCH_PHASES")
        .map(|p| p.split(',').any(|x| x.trim() == name))
        .unwrap_or(true)
}

async fn run() -> Res<()> {
    if let Ok(filter) = std::env::var("BENCH_LOG") {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let clients = env_usize("BENCH_CLIENTS", 16);
    let total_runs = env_usize("BENCH_RUNS", 100_000);
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("flowcloud load benchmark: {cores} cores, {clients} concurrent clients, {total_runs} runs for the page test");
    let mut all = Vec::new();
    if only.is_empty() || only == "sqlite" {
        let dir = tempfile::tempdir()?;
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("bench.db").display()
        );
        all.push(bench_backend("SQLite", &url, clients, total_runs).await?);
    }
    let pg = std::env::var("BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("TEST_DATABASE_URL"))
        .ok()
        .filter(|u| u.starts_with("postgres"));
    if let Some(admin_url) = pg.filter(|_| only.is_empty() || only == "postgres") {
        let name = format!("fc_bench_{}", Uuid::new_v4().simple());
        let admin = Database::connect(&admin_url).await?;
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await?;
        let mut url = url::Url::parse(&admin_url)?;
        url.set_path(&format!("/{name}"));
        let result = bench_backend("PostgreSQL", url.as_str(), clients, total_runs).await;
        let _ = admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await;
        all.push(result?);
    } else if only.is_empty() {
        println!("(PostgreSQL skipped: set BENCH_DATABASE_URL=postgres://… to include it)");
    }
    print_table(cores, clients, &all);
    Ok(())
}

fn print_table(cores: usize, clients: usize, all: &[Figures]) {
    println!();
    println!(
        "machine: {cores} cores; {clients} concurrent clients over HTTP; release build; server in-process"
    );
    let mut header = format!("| {:<58} |", "measure");
    let mut sep = format!("|{}|", "-".repeat(60));
    for f in all {
        header.push_str(&format!(" {:>12} |", f.backend));
        sep.push_str(&format!("{}|", "-".repeat(14)));
    }
    println!("{header}");
    println!("{sep}");
    let row = |label: &str, value: &dyn Fn(&Figures) -> String| {
        let mut line = format!("| {label:<58} |");
        for f in all {
            line.push_str(&format!(" {:>12} |", value(f)));
        }
        println!("{line}");
    };
    row("log lines/s (createLogs, 1,000-line batches)", &|f| {
        format!("{:.0}", f.log_lines_per_s)
    });
    row("flow runs created/s (createFlowRun)", &|f| {
        format!("{:.0}", f.runs_per_s)
    });
    row("state transitions/s (setFlowRunState)", &|f| {
        format!("{:.0}", f.transitions_per_s)
    });
    row("50-run page p50 (ms)", &|f| format!("{:.1}", f.page_p50_ms));
    row("50-run page p99 (ms)", &|f| format!("{:.1}", f.page_p99_ms));
    row("50-run page max (ms)", &|f| format!("{:.1}", f.page_max_ms));
    row("50-run pages/s", &|f| format!("{:.0}", f.pages_per_s));
    row("CPU per 50-run page (ms, server + clients)", &|f| {
        format!("{:.2}", f.page_cpu_ms)
    });
    row("machine CPU per run created (ms)", &|f| {
        format!("{:.2}", f.run_machine_ms)
    });
    row("machine CPU per transition (ms)", &|f| {
        format!("{:.2}", f.transition_machine_ms)
    });
    row("machine CPU per 1,000 log lines (ms)", &|f| {
        format!("{:.2}", f.log_batch_machine_ms)
    });
    row("machine CPU per page (ms)", &|f| {
        format!("{:.2}", f.page_machine_ms)
    });
    row(
        "CPU stolen by other guests (runs/transitions/logs/page, %)",
        &|f| {
            let [a, b, c, d] = f.steal_percent;
            format!("{a:.0}/{b:.0}/{c:.0}/{d:.0}")
        },
    );
    row("runs in the workspace for the page test", &|f| {
        format!("{}", f.seed_runs)
    });
    row("errors (logs / runs / transitions / pages)", &|f| {
        format!(
            "{}/{}/{}/{}",
            f.log_errors, f.run_errors, f.transition_errors, f.page_errors
        )
    });
    row("seeding the runs (s, direct SQL)", &|f| {
        format!("{:.1}", f.seed_s)
    });
}

#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    url: String,
}

impl Client {
    async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Res<Value> {
        let body = serde_json::to_vec(&json!({ "query": query, "variables": variables }))?;
        self.post(token, body).await
    }

    async fn post(&self, token: Option<&str>, body: Vec<u8>) -> Res<Value> {
        Ok(serde_json::from_slice(&self.post_raw(token, body).await?)?)
    }

    /// How many runs a page response holds; errors if it carries GraphQL errors. Skims the
    /// runs instead of building a JSON tree, so the in-process clients take less of the CPU
    /// the server is measured on.
    /// The runs in a page response, counted without decoding it: a load generator's own JSON
    /// parsing was a seventh of the measured CPU, taken from the cores the server runs on. A
    /// page is `{"data":{"workspace":{"flowRuns":{"nodes":[…]}}}}` with one `"id"` per run
    /// (`PAGE_QUERY` selects no other); a failed request ends otherwise (with `"errors"`).
    /// The first page of the phase is decoded and checked in full.
    async fn post_page(&self, token: Option<&str>, body: Vec<u8>) -> Res<usize> {
        const START: &[u8] = br#"{"data":{"workspace":{"flowRuns":{"nodes":["#;
        const END: &[u8] = b"]}}}}";
        let page = self.post_raw(token, body).await?;
        if !page.starts_with(START) || !page.ends_with(END) {
            return Err("the page request failed".into());
        }
        Ok(memchr::memmem::find_iter(&page, br#"{"id":""#).count())
    }

    async fn post_raw(&self, token: Option<&str>, body: Vec<u8>) -> Res<bytes::Bytes> {
        let mut request = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        Ok(request.send().await?.bytes().await?)
    }
}

/// The `data` of a response, or its errors as an error.
fn data(response: Value) -> Res<Value> {
    if let Some(errors) = response.get("errors") {
        return Err(format!("GraphQL errors: {errors}").into());
    }
    response
        .get("data")
        .cloned()
        .ok_or_else(|| "no data".into())
}

fn str_at(value: &Value, path: &[&str]) -> Res<String> {
    let mut v = value;
    for p in path {
        v = &v[*p];
    }
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no string at {path:?} in {value}").into())
}

struct Setup {
    token: String,
    api_key: String,
    workspace: String,
    flow: String,
    deployment: String,
}

async fn setup(client: &Client) -> Res<Setup> {
    let signed = data(
        client
            .gql(
                None,
                "mutation($input: SignUpInput!) { signUp(input: $input) { token } }",
                json!({ "input": { "email": "bench@example.com", "password": "correct-horse-battery",
                    "handle": "bench", "name": "Bench" } }),
            )
            .await?,
    )?;
    let token = str_at(&signed, &["signUp", "token"])?;
    let t = Some(token.as_str());
    let ws = data(
        client
            .gql(
                t,
                "mutation($input: CreateWorkspaceInput!) { createWorkspace(input: $input) { id } }",
                json!({ "input": { "handle": "bench-ws", "name": "Bench" } }),
            )
            .await?,
    )?;
    let workspace = str_at(&ws, &["createWorkspace", "id"])?;
    let flow = data(
        client
            .gql(
                t,
                "mutation($ws: UUID!, $input: CreateFlowInput!) { createFlow(workspaceId: $ws, input: $input) { id } }",
                json!({ "ws": workspace, "input": { "name": "etl" } }),
            )
            .await?,
    )?;
    let flow = str_at(&flow, &["createFlow", "id"])?;
    let deployment = data(
        client
            .gql(
                t,
                "mutation($ws: UUID!, $input: CreateDeploymentInput!) { createDeployment(workspaceId: $ws, input: $input) { id } }",
                json!({ "ws": workspace, "input": { "flowId": flow, "name": "nightly",
                    "workQueueName": "bench", "tags": ["bench"] } }),
            )
            .await?,
    )?;
    let deployment = str_at(&deployment, &["createDeployment", "id"])?;
    data(
        client
            .gql(
                t,
                "mutation($ws: UUID!, $input: WorkQueueInput!) { createWorkQueue(workspaceId: $ws, input: $input) { id } }",
                json!({ "ws": workspace, "input": { "name": "bench" } }),
            )
            .await?,
    )?;
    let key = data(
        client
            .gql(
                t,
                "mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret } }",
                json!({ "input": { "name": "agent" } }),
            )
            .await?,
    )?;
    let api_key = str_at(&key, &["createApiKey", "secret"])?;
    Ok(Setup {
        token,
        api_key,
        workspace,
        flow,
        deployment,
    })
}

async fn bench_backend(label: &str, url: &str, clients: usize, total_runs: usize) -> Res<Figures> {
    println!("\n== {label} ==");
    let mut config = Config::for_database(url);
    // The runs the first phase creates stay SCHEDULED when the transitions phase is left out
    // (`BENCH_PHASES=page`): 15 s later the late-run detector would mark them, ~1,000 state
    // changes landing in whichever phase runs then (seen in the page phase under callgrind).
    config.late_after_seconds = 3_600;
    let app = Application::build(config).await?;
    let address = app.address();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stop_rx.await;
    }));
    let client = Client {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .build()?,
        url: format!("http://{address}/graphql"),
    };
    let s = Arc::new(setup(&client).await?);
    let mut figures = Figures {
        backend: label.to_owned(),
        ..Figures::default()
    };

    // ---------------------------------------------------------------- flow runs created
    let errors = Arc::new(AtomicU64::new(0));
    on_phase_start("runs")?;
    let started = Instant::now();
    let ticks = MachineTicks::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (client, s, errors) = (client.clone(), s.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..RUNS_PER_CLIENT {
                let response = client
                    .gql(
                        Some(&s.api_key),
                        "mutation($ws: UUID!, $input: CreateFlowRunInput!) { createFlowRun(workspaceId: $ws, input: $input) { id state { type } } }",
                        json!({ "ws": s.workspace, "input": { "flowId": s.flow, "deploymentId": s.deployment,
                            "tags": ["bench", format!("client-{c}")], "parameters": { "i": i } } }),
                    )
                    .await;
                match response.and_then(data).and_then(|d| str_at(&d, &["createFlowRun", "id"])) {
                    Ok(id) => ids.push(id),
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("createFlowRun failed: {e}");
                        }
                    }
                }
            }
            ids
        }));
    }
    let mut run_ids: Vec<Vec<String>> = Vec::new();
    for t in tasks {
        run_ids.push(t.await?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let created: usize = run_ids.iter().map(Vec::len).sum();
    figures.runs_per_s = created as f64 / elapsed;
    figures.run_errors = errors.load(Ordering::Relaxed);
    (figures.run_machine_ms, figures.steal_percent[0]) = ticks.since(created);
    println!(
        "createFlowRun: {created} runs in {elapsed:.2}s = {:.0}/s, {} errors; machine CPU {:.2} ms each, {:.0} % stolen",
        figures.runs_per_s, figures.run_errors, figures.run_machine_ms, figures.steal_percent[0]
    );

    // ---------------------------------------------------------------- state transitions
    if phase("transitions") {
        let errors = Arc::new(AtomicU64::new(0));
        on_phase_start("transitions")?;
        let started = Instant::now();
        let ticks = MachineTicks::now();
        let mut tasks = Vec::new();
        for ids in run_ids.clone() {
            let (client, s, errors) = (client.clone(), s.clone(), errors.clone());
            tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            for id in ids {
                for state in ["PENDING", "RUNNING", "COMPLETED"] {
                    let response = client
                        .gql(
                            Some(&s.api_key),
                            "mutation($id: UUID!, $state: StateInput!) { setFlowRunState(flowRunId: $id, state: $state) { status state { type } } }",
                            json!({ "id": id, "state": { "type": state } }),
                        )
                        .await;
                    match response.and_then(data).and_then(|d| str_at(&d, &["setFlowRunState", "status"])) {
                        Ok(status) if status == "ACCEPT" => done += 1,
                        other => {
                            if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                                eprintln!("setFlowRunState {state}: {other:?}");
                            }
                        }
                    }
                }
            }
            done
        }));
        }
        let mut transitions = 0;
        for t in tasks {
            transitions += t.await?;
        }
        let elapsed = started.elapsed().as_secs_f64();
        figures.transitions_per_s = transitions as f64 / elapsed;
        figures.transition_errors = errors.load(Ordering::Relaxed);
        (figures.transition_machine_ms, figures.steal_percent[1]) =
            ticks.since(transitions as usize);
        println!(
            "setFlowRunState: {transitions} accepted in {elapsed:.2}s = {:.0}/s, {} errors; machine CPU {:.2} ms each, {:.0} % stolen",
            figures.transitions_per_s, figures.transition_errors, figures.transition_machine_ms, figures.steal_percent[1]
        );
    }

    // ---------------------------------------------------------------- logs
    // A few runs; each request body is built once per client (the server's work is measured,
    // not the client's JSON encoding).
    let log_runs: Vec<String> = run_ids.iter().flatten().take(5).cloned().collect();
    if phase("logs") {
        let errors = Arc::new(AtomicU64::new(0));
        let mut bodies = Vec::new();
        for c in 0..clients {
            let lines: Vec<Value> = (0..LOG_BATCH)
            .map(|i| {
                let level = ["INFO", "INFO", "INFO", "DEBUG", "WARNING"][i % 5];
                json!({
                    "flowRunId": log_runs[(c + i) % log_runs.len()],
                    "level": level,
                    "name": "prefect.flow_runs.worker",
                    "message": format!("client {c:02} line {i:04}: processed batch of records from s3://bucket/key in 0.{i:03}s ok"),
                    "timestamp": Utc::now().to_rfc3339(),
                })
            })
            .collect();
            let body = serde_json::to_vec(&json!({
                "query": "mutation($ws: UUID!, $logs: [LogInput!]!) { createLogs(workspaceId: $ws, logs: $logs) }",
                "variables": { "ws": s.workspace, "logs": lines },
            }))?;
            bodies.push(Arc::new(body));
        }
        let warm = client.post(Some(&s.api_key), bodies[0].to_vec()).await?;
        data(warm)?;
        on_phase_start("logs")?;
        let started = Instant::now();
        let ticks = MachineTicks::now();
        let mut tasks = Vec::new();
        for body in bodies {
            let (client, s, errors) = (client.clone(), s.clone(), errors.clone());
            tasks.push(tokio::spawn(async move {
                let mut stored = 0u64;
                for _ in 0..LOG_BATCHES_PER_CLIENT {
                    let response = client.post(Some(&s.api_key), body.to_vec()).await;
                    match response.and_then(data) {
                        Ok(d) => stored += d["createLogs"].as_u64().unwrap_or(0),
                        Err(e) => {
                            if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                                eprintln!("createLogs failed: {e}");
                            }
                        }
                    }
                }
                stored
            }));
        }
        let mut stored = 0;
        for t in tasks {
            stored += t.await?;
        }
        let elapsed = started.elapsed().as_secs_f64();
        figures.log_lines_per_s = stored as f64 / elapsed;
        figures.log_errors = errors.load(Ordering::Relaxed);
        (figures.log_batch_machine_ms, figures.steal_percent[2]) =
            ticks.since(stored as usize / LOG_BATCH);
        println!(
            "createLogs: {stored} lines in {elapsed:.2}s = {:.0}/s, {} errors; machine CPU {:.2} ms per 1,000-line batch, {:.0} % stolen",
            figures.log_lines_per_s, figures.log_errors, figures.log_batch_machine_ms, figures.steal_percent[2]
        );
    }

    // ---------------------------------------------------------------- page of 50 runs
    if phase("page") {
        let existing = created;
        let to_seed = total_runs.saturating_sub(existing);
        let started = Instant::now();
        seed_runs(url, &s, to_seed).await?;
        figures.seed_s = started.elapsed().as_secs_f64();
        figures.seed_runs = existing + to_seed;
        println!(
            "seeded {to_seed} runs by SQL in {:.1}s ({} in the workspace)",
            figures.seed_s, figures.seed_runs
        );
        // Every run on the page gets a full nested page of task runs, and the first one
        // BENCH_LONG_RUN_TASKS (default 2,000) more: a nested page must not cost more when a run
        // has thousands of task runs.
        let page_runs: Vec<Uuid> = data(
            client
                .gql(Some(&s.token), PAGE_QUERY, json!({ "ws": s.workspace }))
                .await?,
        )?["workspace"]["flowRuns"]["nodes"]
            .as_array()
            .map(|runs| {
                runs.iter()
                    .filter_map(|r| r["id"].as_str().and_then(|id| Uuid::parse_str(id).ok()))
                    .collect()
            })
            .unwrap_or_default();
        let long_run_tasks = env_usize("BENCH_LONG_RUN_TASKS", 2_000);
        let seeded_tasks = seed_task_runs(url, &s, &page_runs, 5, long_run_tasks).await?;
        println!("seeded {seeded_tasks} task runs by SQL for the page's runs");
        // Check the page once, and warm up.
        let first = data(
            client
                .gql(Some(&s.token), PAGE_QUERY, json!({ "ws": s.workspace }))
                .await?,
        )?;
        let runs = first["workspace"]["flowRuns"]["nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if runs.len() != 50 {
            return Err(format!("the page has {} runs, expected 50", runs.len()).into());
        }
        let tasks: usize = runs
            .iter()
            .map(|r| r["taskRuns"]["nodes"].as_array().map_or(0, Vec::len))
            .sum();
        if tasks != 250 {
            return Err(format!("the page has {tasks} task runs, expected 250").into());
        }
        let errors = Arc::new(AtomicU64::new(0));
        let page_body = Arc::new(serde_json::to_vec(
            &json!({ "query": PAGE_QUERY, "variables": { "ws": s.workspace } }),
        )?);
        for _ in 0..20 {
            data(client.post(Some(&s.token), page_body.to_vec()).await?)?;
        }
        on_phase_start("page")?;
        let requests_per_client = std::env::var("BENCH_PAGE_REQUESTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(PAGE_REQUESTS_PER_CLIENT);
        let started = Instant::now();
        let cpu_before = process_cpu_seconds();
        let ticks = MachineTicks::now();
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (client, s, errors, body) =
                (client.clone(), s.clone(), errors.clone(), page_body.clone());
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(requests_per_client);
                for _ in 0..requests_per_client {
                    let t0 = Instant::now();
                    let ok = client
                        .post_page(Some(&s.token), body.to_vec())
                        .await
                        .is_ok_and(|runs| runs == 50);
                    latencies.push(t0.elapsed());
                    if !ok {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                latencies
            }));
        }
        let mut latencies: Vec<Duration> = Vec::new();
        for t in tasks {
            latencies.extend(t.await?);
        }
        let elapsed = started.elapsed().as_secs_f64();
        figures.page_cpu_ms =
            (process_cpu_seconds() - cpu_before) * 1000.0 / latencies.len().max(1) as f64;
        (figures.page_machine_ms, figures.steal_percent[3]) = ticks.since(latencies.len());
        latencies.sort();
        let pct = |p: f64| {
            let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
            latencies[i].as_secs_f64() * 1000.0
        };
        figures.page_p50_ms = pct(0.50);
        figures.page_p99_ms = pct(0.99);
        figures.page_max_ms = pct(1.0);
        figures.pages_per_s = latencies.len() as f64 / elapsed;
        figures.page_errors = errors.load(Ordering::Relaxed);
        println!(
        "50-run page: {} requests, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {:.0}/s, {:.2} ms CPU each ({:.2} ms machine), {:.0} % stolen, {} errors",
        latencies.len(),
        figures.page_p50_ms,
        figures.page_p99_ms,
        figures.page_max_ms,
        figures.pages_per_s,
        figures.page_cpu_ms,
        figures.page_machine_ms,
        figures.steal_percent[3],
        figures.page_errors
    );
    }

    let _ = stop_tx.send(());
    let _ = server.await;
    Ok(figures)
}

/// Inserts `count` finished runs (each with its state history row and the state columns
/// filled in) straight into the database, in multi-row statements, older than the runs the
/// API created.
/// Task runs for `runs` by direct SQL: `per_run` each, and `extra_on_first` more on the first.
async fn seed_task_runs(
    url: &str,
    s: &Setup,
    runs: &[Uuid],
    per_run: usize,
    extra_on_first: usize,
) -> Res<usize> {
    const CHUNK: usize = 1_000;
    let db = Database::connect(url).await?;
    let workspace = Uuid::parse_str(&s.workspace)?;
    let base = Utc::now() - chrono::Duration::seconds(600);
    let mut wanted: Vec<(Uuid, usize)> = Vec::new();
    for (n, run) in runs.iter().enumerate() {
        let count = per_run + if n == 0 { extra_on_first } else { 0 };
        wanted.extend((0..count).map(|k| (*run, k)));
    }
    for chunk in wanted.chunks(CHUNK) {
        let mut tasks = Vec::with_capacity(chunk.len());
        let mut states = Vec::with_capacity(chunk.len());
        for (run, k) in chunk {
            let (id, state_id) = (Uuid::now_v7(), Uuid::now_v7());
            let at = base + chrono::Duration::milliseconds(*k as i64);
            tasks.push(task_runs::ActiveModel {
                id: Set(id),
                workspace_id: Set(workspace),
                flow_run_id: Set(*run),
                task_key: Set(format!("task-{k}")),
                dynamic_key: Set("0".into()),
                name: Set(format!("task-{k}-0")),
                tags: Set(json!([])),
                run_count: Set(1),
                total_run_time: Set(0.5),
                start_time: Set(Some(at)),
                end_time: Set(Some(at)),
                state_id: Set(state_id),
                state_type: Set("COMPLETED".into()),
                state_name: Set("Completed".into()),
                state_message: Set(None),
                state_timestamp: Set(at),
                state_scheduled_time: Set(None),
                state_transition_id: Set(None),
                created_at: Set(at),
                updated_at: Set(at),
            });
            states.push(task_run_states::ActiveModel {
                id: Set(state_id),
                workspace_id: Set(workspace),
                task_run_id: Set(id),
                r#type: Set("COMPLETED".into()),
                name: Set("Completed".into()),
                message: Set(None),
                timestamp: Set(at),
                scheduled_time: Set(None),
                transition_id: Set(None),
            });
        }
        task_runs::Entity::insert_many(tasks)
            .exec_without_returning(&db)
            .await?;
        task_run_states::Entity::insert_many(states)
            .exec_without_returning(&db)
            .await?;
    }
    if url.starts_with("postgres") {
        // As after the runs' bulk load (`seed_runs`): without statistics the planner takes a
        // run's 2,000 task runs for a handful, and reads and sorts all of them to page five.
        db.execute_unprepared("ANALYZE task_runs, task_run_states")
            .await?;
    }
    db.close().await?;
    Ok(wanted.len())
}

async fn seed_runs(url: &str, s: &Setup, count: usize) -> Res<()> {
    const CHUNK: usize = 1_000;
    let db = Database::connect(url).await?;
    let workspace = Uuid::parse_str(&s.workspace)?;
    let flow = Uuid::parse_str(&s.flow)?;
    let deployment = Uuid::parse_str(&s.deployment)?;
    let base = Utc
        .timestamp_opt(Utc::now().timestamp() - 3_600, 0)
        .single()
        .ok_or("time")?;
    let kinds = [
        ("COMPLETED", "Completed"),
        ("COMPLETED", "Completed"),
        ("FAILED", "Failed"),
        ("SCHEDULED", "Scheduled"),
        ("RUNNING", "Running"),
    ];
    let mut done = 0;
    while done < count {
        let n = CHUNK.min(count - done);
        let mut runs = Vec::with_capacity(n);
        let mut states = Vec::with_capacity(n);
        for i in done..done + n {
            let id = Uuid::now_v7();
            let state_id = Uuid::now_v7();
            let at = base - chrono::Duration::seconds(i as i64 * 30);
            let (state_type, state_name) = kinds[i % kinds.len()];
            runs.push(flow_runs::ActiveModel {
                id: Set(id),
                workspace_id: Set(workspace),
                flow_id: Set(flow),
                deployment_id: Set(Some(deployment)),
                work_queue_name: Set(Some("bench".into())),
                name: Set(format!("seeded-run-{i}")),
                parameters: Set(json!({ "i": i })),
                tags: Set(json!(["bench", "seeded"])),
                idempotency_key: Set(None),
                auto_scheduled: Set(true),
                retries: Set(0),
                retry_delay_seconds: Set(0),
                run_count: Set(1),
                total_run_time: Set(12.5),
                expected_start_time: Set(Some(at)),
                start_time: Set(Some(at)),
                end_time: Set(Some(at + chrono::Duration::seconds(12))),
                state_id: Set(state_id),
                state_type: Set(state_type.into()),
                state_name: Set(state_name.into()),
                state_message: Set(None),
                state_timestamp: Set(at),
                state_scheduled_time: Set(None),
                state_transition_id: Set(None),
                created_at: Set(at),
                updated_at: Set(at),
            });
            states.push(flow_run_states::ActiveModel {
                id: Set(state_id),
                workspace_id: Set(workspace),
                flow_run_id: Set(id),
                r#type: Set(state_type.into()),
                name: Set(state_name.into()),
                message: Set(None),
                timestamp: Set(at),
                scheduled_time: Set(None),
                transition_id: Set(None),
            });
        }
        flow_runs::Entity::insert_many(runs)
            .exec_without_returning(&db)
            .await?;
        flow_run_states::Entity::insert_many(states)
            .exec_without_returning(&db)
            .await?;
        done += n;
    }
    if url.starts_with("postgres") {
        // What autovacuum would do soon after a bulk load; SQLite is left as the server keeps it.
        db.execute_unprepared("ANALYZE").await?;
    }
    db.close().await?;
    Ok(())
}
