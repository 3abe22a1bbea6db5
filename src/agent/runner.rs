//! Running one claimed flow run: propose `RUNNING` (obeying `WAIT` / `ABORT` / `REJECT`), run the
//! deployment's entrypoint with `sh -c`, ship its output as logs, and report how it ended.
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::client::{retrying, ClaimedRun, Client, Failure, OrchestrationResult, Proposal};
use super::output::{read_lines, ship_logs, Stream};
use super::Signal;

/// How long the output pipes may stay open after the command exits (something it started in
/// the background and that left its process group still holds them).
const OUTPUT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Lines buffered between the pipes and the shipper; a full buffer slows the command down.
const LINE_BUFFER: usize = 4096;
/// The longest `WAIT` obeyed in one go (the run is proposed again afterwards).
const MAX_WAIT: Duration = Duration::from_secs(300);

/// What every run task shares.
pub struct RunContext {
    pub client: Arc<Client>,
    pub workspace_id: Uuid,
    /// Raised on shutdown: runs that have not started are handed back.
    pub stop: Signal,
    /// Raised when the grace period is over: running commands are killed.
    pub kill: Signal,
    pub grace_period: Duration,
    /// How often a running command's run is checked for a cancellation request.
    pub cancel_check: Duration,
}

/// How the command ended.
enum Ending {
    Exited(ExitStatus),
    /// Killed by the agent at the end of the grace period.
    Killed,
    /// Stopped because someone asked to cancel the run (it is `CANCELLING`).
    Cancelled,
    /// The agent lost track of it (waiting failed).
    Lost(String),
}

/// Runs one claimed run from `PENDING` to a final state. Never panics and never returns an
/// error: every failure is logged and, where possible, reported on the run.
pub async fn execute(ctx: Arc<RunContext>, run: ClaimedRun) {
    let run_id = run.id;
    let deployment = run
        .deployment
        .as_ref()
        .map(|d| d.name.as_str())
        .unwrap_or("-");
    tracing::info!(flow_run = %run_id, "claimed run {} ({}) of deployment {deployment}", run.id, run.name);

    let entrypoint = run
        .deployment
        .as_ref()
        .and_then(|d| d.entrypoint.as_deref())
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned);
    let Some(entrypoint) = entrypoint else {
        let message = if run.deployment.is_some() {
            "the deployment has no entrypoint: nothing to run (set one with updateDeployment)"
        } else {
            "the run has no deployment, so the agent has no entrypoint to run"
        };
        tracing::warn!(flow_run = %run_id, "{message}");
        report_end(&ctx, run_id, "FAILED", message.to_owned()).await;
        return;
    };

    if !start(&ctx, &run).await {
        return;
    }

    let parameters = if run.parameters.is_null() {
        "{}".to_owned()
    } else {
        run.parameters.to_string()
    };
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(&entrypoint)
        .env("FLOWCLOUD_PARAMETERS", parameters)
        .env("FLOWCLOUD_FLOW_RUN_ID", run_id.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // A process group of its own: Ctrl-C at the agent's terminal does not reach the command
    // (it gets its grace period), and the agent can end everything the command started.
    #[cfg(unix)]
    command.process_group(0);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let message = format!("the agent could not start `sh -c {entrypoint}`: {e}");
            tracing::error!(flow_run = %run_id, "{message}");
            report_end(&ctx, run_id, "FAILED", message).await;
            return;
        }
    };
    let pid = child.id();
    tracing::info!(flow_run = %run_id, "started `{entrypoint}` (pid {})", pid.unwrap_or(0));

    let (tx, rx) = mpsc::channel(LINE_BUFFER);
    let mut readers = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        readers.push(tokio::spawn(read_lines(stdout, Stream::Stdout, tx.clone())));
    }
    if let Some(stderr) = child.stderr.take() {
        readers.push(tokio::spawn(read_lines(stderr, Stream::Stderr, tx.clone())));
    }
    drop(tx);
    let shipper = tokio::spawn(ship_logs(ctx.client.clone(), ctx.workspace_id, run_id, rx));

    let ending = tokio::select! {
        status = child.wait() => match status {
            Ok(status) => Ending::Exited(status),
            Err(e) => Ending::Lost(e.to_string()),
        },
        _ = ctx.kill.wait() => {
            tracing::warn!(flow_run = %run_id, "grace period over: killing the command");
            kill_group(pid);
            let _ = child.start_kill();
            let _ = child.wait().await;
            Ending::Killed
        }
        _ = cancellation_requested(&ctx, run_id) => {
            tracing::info!(flow_run = %run_id, "cancellation requested: stopping the command");
            kill_group(pid);
            let _ = child.start_kill();
            let _ = child.wait().await;
            Ending::Cancelled
        }
    };
    // End what the command left running in its group, so the pipes close.
    kill_group(pid);
    let drained = tokio::time::timeout(OUTPUT_DRAIN_TIMEOUT, async {
        for reader in &mut readers {
            let _ = reader.await;
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(flow_run = %run_id, "the command's output stayed open after it ended; not reading it any further");
        for reader in &readers {
            reader.abort();
        }
    }
    let shipped = shipper.await.unwrap_or(0);

    let (state_type, message) = match ending {
        Ending::Exited(status) => match status.code() {
            Some(0) => {
                tracing::info!(flow_run = %run_id, "finished with code 0 ({shipped} log lines)");
                ("COMPLETED", "the command exited with code 0".to_owned())
            }
            Some(code) => {
                tracing::info!(flow_run = %run_id, "finished with code {code} ({shipped} log lines)");
                ("FAILED", format!("the command exited with code {code}"))
            }
            None => {
                let how = signal_of(&status);
                tracing::info!(flow_run = %run_id, "ended by {how} ({shipped} log lines)");
                ("FAILED", format!("the command was ended by {how}"))
            }
        },
        Ending::Cancelled => (
            "CANCELLED",
            "cancelled: the agent stopped the command".to_owned(),
        ),
        Ending::Killed => (
            "CRASHED",
            format!(
                "the agent shut down and killed the command after the {} s grace period",
                ctx.grace_period.as_secs()
            ),
        ),
        Ending::Lost(error) => (
            "CRASHED",
            format!("the agent lost track of the command: {error}"),
        ),
    };
    report_end(&ctx, run_id, state_type, message).await;
}

/// Resolves once the run is `CANCELLING` (or already `CANCELLED`). Checks every
/// `ctx.cancel_check`; a failed check (server restarting) is simply tried again next time.
async fn cancellation_requested(ctx: &RunContext, run_id: Uuid) {
    let mut every = tokio::time::interval(ctx.cancel_check);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        match ctx.client.run_state(run_id).await {
            Ok(Some(state)) if matches!(state.state_type.as_str(), "CANCELLING" | "CANCELLED") => {
                return
            }
            Ok(_) => {}
            Err(err) => {
                tracing::debug!(flow_run = %run_id, error = %err, "could not check for cancellation")
            }
        }
    }
}

/// Proposes `RUNNING` until the server lets the run start. `false`: the run is not ours to run.
async fn start(ctx: &RunContext, run: &ClaimedRun) -> bool {
    let run_id = run.id;
    let proposal = Proposal::new("RUNNING", None);
    loop {
        if ctx.stop.is_set() {
            release(ctx, run).await;
            return false;
        }
        let result = retrying("proposing RUNNING", Some(&ctx.stop), None, || {
            ctx.client.set_state(run_id, &proposal)
        })
        .await;
        let answer = match result {
            Ok(answer) => answer,
            Err(Failure::Stopped) => {
                tracing::warn!(flow_run = %run_id, "shutting down before the run could start; it stays PENDING");
                return false;
            }
            Err(e) => {
                tracing::error!(flow_run = %run_id, "could not set the run RUNNING ({e}); dropping it");
                return false;
            }
        };
        match answer.status.as_str() {
            "ACCEPT" => return true,
            // Our own proposal, already applied by an attempt whose answer was lost.
            "REJECT" if answer.state.state_type == "RUNNING" => return true,
            "WAIT" => {
                let seconds = answer.delay_seconds.unwrap_or(1).max(1) as u64;
                let delay = Duration::from_secs(seconds).min(MAX_WAIT);
                tracing::info!(
                    flow_run = %run_id,
                    "the server says wait {seconds} s before starting ({})",
                    answer.reason.as_deref().unwrap_or("no reason given")
                );
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = ctx.stop.wait() => {}
                }
            }
            "ABORT" => {
                tracing::info!(flow_run = %run_id, "the server aborted the run ({}); dropping it", reason(&answer));
                return false;
            }
            other => {
                tracing::warn!(flow_run = %run_id, "the server answered {other} to RUNNING ({}); dropping the run", reason(&answer));
                return false;
            }
        }
    }
}

/// Hands a run that never started back to its queue (`SCHEDULED` at its original time), so
/// another agent takes it.
async fn release(ctx: &RunContext, run: &ClaimedRun) {
    let run_id = run.id;
    let mut proposal = Proposal::new(
        "SCHEDULED",
        Some("handed back: the agent shut down before starting it".to_owned()),
    );
    proposal.name = Some("Scheduled".to_owned());
    proposal.scheduled_time = run.expected_start_time;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    match retrying("handing the run back", None, Some(deadline), || {
        ctx.client.set_state(run_id, &proposal)
    })
    .await
    {
        Ok(answer) if answer.status == "ACCEPT" => {
            tracing::info!(flow_run = %run_id, "shutting down: handed the unstarted run back to the queue");
        }
        Ok(answer) => {
            tracing::warn!(flow_run = %run_id, "could not hand the run back: {} ({})", answer.status, reason(&answer));
        }
        Err(e) => tracing::warn!(flow_run = %run_id, "could not hand the run back: {e}"),
    }
}

/// Reports how a run ended, retrying while the server is unreachable.
async fn report_end(ctx: &RunContext, run_id: Uuid, state_type: &'static str, message: String) {
    let proposal = Proposal::new(state_type, Some(message));
    let result = retrying(&format!("setting {state_type}"), None, None, || {
        ctx.client.set_state(run_id, &proposal)
    })
    .await;
    match result {
        Ok(answer) => match answer.status.as_str() {
            "ACCEPT" => {
                tracing::info!(flow_run = %run_id, "run is {} ({})", answer.state.state_type, answer.state.name);
            }
            "REJECT" if answer.state.state_type == state_type => {}
            "REJECT" if answer.state.name == "AwaitingRetry" => {
                tracing::info!(flow_run = %run_id, "the run will be retried ({})", reason(&answer));
            }
            other => {
                tracing::warn!(
                    flow_run = %run_id,
                    "the server answered {other} to {state_type} ({}); the run is {}",
                    reason(&answer),
                    answer.state.state_type
                );
            }
        },
        Err(e) => tracing::error!(flow_run = %run_id, "could not set {state_type}: {e}"),
    }
}

fn reason(answer: &OrchestrationResult) -> &str {
    answer.reason.as_deref().unwrap_or("no reason given")
}

#[cfg(unix)]
fn signal_of(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(signal) => format!("signal {signal}"),
        None => "an unknown cause".to_owned(),
    }
}

#[cfg(not(unix))]
fn signal_of(_status: &ExitStatus) -> String {
    "an unknown cause".to_owned()
}

/// SIGKILLs the command's process group (the command and everything it started).
#[cfg(unix)]
fn kill_group(pid: Option<u32>) {
    let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 0) else {
        return;
    };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; a negative pid names
    // the process group the command leads (it was spawned with `process_group(0)`).
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
}

#[cfg(not(unix))]
fn kill_group(_pid: Option<u32>) {}
