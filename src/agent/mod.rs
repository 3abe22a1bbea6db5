//! `flowcloud agent`: polls a work queue over the public GraphQL API and runs what it claims as
//! local shell commands. See [`run`].
//!
//! The loop claims at most as many runs as it has free slots (`--concurrency`), each run runs in
//! a task of its own ([`runner::execute`]), and a failed request never ends the agent: it waits
//! (capped exponential backoff) and tries again. On shutdown it claims nothing more, hands back
//! runs that have not started, lets running commands finish within the grace period, then kills
//! them and marks their runs `CRASHED`.
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;
use uuid::Uuid;

pub mod client;
pub mod output;
pub mod runner;

use client::{retrying, Backoff, CallError, Client, Failure};
use runner::RunContext;

/// How long the final state reports of killed runs may take before the agent exits anyway.
const REPORT_WINDOW: Duration = Duration::from_secs(15);

/// `flowcloud agent` options; each is also read from the environment.
#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// The server's base URL (or its /graphql endpoint), e.g. http://127.0.0.1:4200.
    #[arg(long, env = "FLOWCLOUD_URL", value_name = "URL", value_parser = parse_server_url)]
    pub url: String,

    /// An API key (create one with the createApiKey mutation).
    #[arg(
        long,
        env = "FLOWCLOUD_API_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub api_key: String,

    /// The handle of the workspace to work for.
    #[arg(long, env = "FLOWCLOUD_WORKSPACE", value_name = "HANDLE")]
    pub workspace: String,

    /// The name of the work queue to take runs from.
    #[arg(long, env = "FLOWCLOUD_WORK_QUEUE", value_name = "NAME")]
    pub work_queue: String,

    /// Runs executed at the same time, at most.
    #[arg(long, env = "FLOWCLOUD_AGENT_CONCURRENCY", value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=200))]
    pub concurrency: u32,

    /// Seconds between polls of an empty queue, and between checks of a running run for
    /// cancellation.
    #[arg(long, env = "FLOWCLOUD_AGENT_POLL_INTERVAL_SECONDS", value_name = "SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=3_600))]
    pub poll_interval_seconds: u32,

    /// Seconds running commands get to finish after SIGTERM / Ctrl-C before they are killed.
    #[arg(long, env = "FLOWCLOUD_AGENT_GRACE_PERIOD_SECONDS", value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(0..=86_400))]
    pub grace_period_seconds: u32,
}

impl AgentArgs {
    /// Options with the defaults of the command line.
    pub fn new(
        url: impl Into<String>,
        api_key: impl Into<String>,
        workspace: impl Into<String>,
        work_queue: impl Into<String>,
    ) -> Self {
        Self {
            url: url.into(),
            api_key: api_key.into(),
            workspace: workspace.into(),
            work_queue: work_queue.into(),
            concurrency: 4,
            poll_interval_seconds: 5,
            grace_period_seconds: 30,
        }
    }
}

fn parse_server_url(value: &str) -> Result<String, String> {
    let parsed = url::Url::parse(value).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must be an http(s) URL, e.g. http://127.0.0.1:4200".into());
    }
    Ok(value.to_owned())
}

/// A one-way flag tasks can check and wait for.
#[derive(Debug, Clone)]
pub struct Signal(watch::Receiver<bool>);

impl Signal {
    /// A flag and the sender that raises it.
    pub fn new() -> (watch::Sender<bool>, Signal) {
        let (tx, rx) = watch::channel(false);
        (tx, Signal(rx))
    }

    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once the flag is raised (never, if its sender is gone without raising it).
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        if rx.wait_for(|raised| *raised).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The workspace and queue the agent works for.
#[derive(Debug, Clone, Copy)]
struct Target {
    workspace_id: Uuid,
    work_queue_id: Uuid,
}

/// Runs the agent until `shutdown` resolves, then stops as described in the module docs.
/// `Err` only for what retrying cannot fix at start (unknown workspace or queue, bad key);
/// once polling, failures are logged and retried.
pub async fn run(args: AgentArgs, shutdown: impl Future<Output = ()>) -> Result<(), String> {
    let client = Arc::new(Client::new(&args.url, &args.api_key)?);
    tokio::pin!(shutdown);
    tracing::info!(
        "agent starting: server {}, workspace `{}`, work queue `{}`, concurrency {}",
        client.endpoint(),
        args.workspace,
        args.work_queue,
        args.concurrency
    );
    let target = tokio::select! {
        target = resolve(&client, &args.workspace, &args.work_queue) => target?,
        _ = &mut shutdown => {
            tracing::info!("stopped before the agent started");
            return Ok(());
        }
    };
    tracing::info!(
        "polling work queue `{}` ({}) every {} s",
        args.work_queue,
        target.work_queue_id,
        args.poll_interval_seconds
    );

    let (stop_tx, stop) = Signal::new();
    let (kill_tx, kill) = Signal::new();
    let grace_period = Duration::from_secs(u64::from(args.grace_period_seconds));
    let context = Arc::new(RunContext {
        client: client.clone(),
        workspace_id: target.workspace_id,
        stop,
        kill,
        grace_period,
        // Cancelling reaches a running command within one poll interval.
        cancel_check: Duration::from_secs(u64::from(args.poll_interval_seconds))
            .max(Duration::from_secs(1)),
    });
    let concurrency = usize::try_from(args.concurrency).unwrap_or(1).max(1);
    let slots = Arc::new(Semaphore::new(concurrency));
    let slot_freed = Arc::new(Notify::new());
    let poll_interval = Duration::from_secs(u64::from(args.poll_interval_seconds));
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut backoff = Backoff::new();

    loop {
        while let Some(joined) = tasks.try_join_next() {
            report_panic(joined);
        }
        let free = slots.available_permits();
        // Sleep until the next poll, or (when every slot is taken) until a slot frees up.
        let mut wait_for_slot = free == 0;
        let mut sleep_for = poll_interval;
        if free > 0 {
            match client.claim(target.work_queue_id, free).await {
                Ok(runs) => {
                    backoff.reset();
                    if runs.len() >= free {
                        wait_for_slot = true;
                    }
                    for run in runs {
                        let Ok(permit) = slots.clone().try_acquire_owned() else {
                            // Cannot happen (we asked for no more than the free slots); the run
                            // stays PENDING rather than overloading the machine.
                            tracing::error!(flow_run = %run.id, "claimed more runs than free slots");
                            continue;
                        };
                        let context = context.clone();
                        let slot_freed = slot_freed.clone();
                        tasks.spawn(async move {
                            runner::execute(context, run).await;
                            drop(permit);
                            slot_freed.notify_one();
                        });
                    }
                }
                Err(error) => {
                    sleep_for = backoff.next_delay();
                    let level_hint = if error.is_retryable() {
                        ""
                    } else {
                        " (check the queue and the API key)"
                    };
                    tracing::warn!(
                        "claiming runs failed: {error}{level_hint}; next try in {:.1} s",
                        sleep_for.as_secs_f64()
                    );
                }
            }
        }
        tokio::select! {
            _ = &mut shutdown => break,
            _ = slot_freed.notified(), if wait_for_slot => {}
            _ = tokio::time::sleep(sleep_for), if !wait_for_slot => {}
        }
    }

    let _ = stop_tx.send(true);
    let running = tasks.len();
    if running == 0 {
        tracing::info!("shutting down: no runs in progress");
    } else {
        tracing::info!(
            "shutting down: claiming nothing more; waiting up to {} s for {running} run(s) to finish",
            grace_period.as_secs()
        );
    }
    let finished_in_time = tokio::time::timeout(grace_period, drain(&mut tasks))
        .await
        .is_ok();
    if !finished_in_time {
        tracing::warn!(
            "grace period over: killing {} run(s) and marking them CRASHED",
            tasks.len()
        );
        let _ = kill_tx.send(true);
        if tokio::time::timeout(REPORT_WINDOW, drain(&mut tasks))
            .await
            .is_err()
        {
            tracing::error!(
                "{} run(s) could not report their end in time; exiting anyway",
                tasks.len()
            );
            tasks.abort_all();
            drain(&mut tasks).await;
        }
    }
    tracing::info!("agent stopped");
    Ok(())
}

async fn drain(tasks: &mut JoinSet<()>) {
    while let Some(joined) = tasks.join_next().await {
        report_panic(joined);
    }
}

fn report_panic(joined: Result<(), tokio::task::JoinError>) {
    if let Err(e) = joined {
        if e.is_panic() {
            tracing::error!("a run task panicked: {e}");
        }
    }
}

/// Finds the workspace by handle and the queue by name, waiting out an unreachable server.
async fn resolve(client: &Client, handle: &str, queue_name: &str) -> Result<Target, String> {
    let workspace = retrying("looking up the workspace", None, None, || {
        client.workspace(handle)
    })
    .await
    .map_err(|failure| match failure {
        Failure::Fatal(CallError::Graphql {
            code: Some(ref code),
            ..
        }) if code == "UNAUTHENTICATED" => {
            format!(
                "the server refused the API key ({failure}); check --api-key / FLOWCLOUD_API_KEY"
            )
        }
        other => format!("cannot look up workspace `{handle}`: {other}"),
    })?;
    let Some(workspace) = workspace else {
        return Err(format!(
            "no workspace with handle `{handle}` (or the API key's account cannot see it)"
        ));
    };
    let Some(queue) = workspace
        .work_queues
        .iter()
        .find(|queue| queue.name == queue_name)
    else {
        let names: Vec<&str> = workspace
            .work_queues
            .iter()
            .map(|queue| queue.name.as_str())
            .collect();
        return Err(format!(
            "workspace `{handle}` has no work queue named `{queue_name}` (it has: {})",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        ));
    };
    Ok(Target {
        workspace_id: workspace.id,
        work_queue_id: queue.id,
    })
}
