//! Background services: the scheduler, the late-run detector and retention. Each exposes one
//! step (`try_tick`) so tests drive it without sleeping; `spawn_all` runs the steps in every
//! replica, acting only while this replica holds the leader lease.
pub mod late_runs;
pub mod leader;
pub mod retention;
pub mod scheduler;

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::state::AppState;

/// The scheduler re-checks every schedule this often (and at once when woken).
const SCHEDULER_EVERY: Duration = Duration::from_secs(10);
/// The late detector's longest sleep when no run is waiting.
const LATE_IDLE: Duration = Duration::from_secs(30);
const RETENTION_EVERY: Duration = Duration::from_secs(60);

/// Starts the background services; they stop when the server shuts down. The server awaits
/// the returned tasks before it returns, so that a step under way commits and the leader gives
/// its lease up (the process ends once the server returns, cutting off whatever is left).
/// Each subscribes to the shutdown signal here, before it runs, so that none can miss it.
pub fn spawn_all(state: &AppState) -> JoinSet<()> {
    let mut services = JoinSet::new();
    services.spawn(leader_loop(state.clone(), state.shutdown.subscribe()));
    services.spawn(scheduler_loop(state.clone(), state.shutdown.subscribe()));
    services.spawn(late_detector_loop(
        state.clone(),
        state.shutdown.subscribe(),
    ));
    services.spawn(retention_loop(state.clone(), state.shutdown.subscribe()));
    services
}

/// Whether this replica may act now: it holds the lease and the lease has not run out (a
/// renewal that comes late must not leave two replicas acting at once).
pub fn is_leader(state: &AppState) -> bool {
    state.services.leader.load(Ordering::Relaxed)
        && Utc::now().timestamp_millis() < state.services.leader_until_ms.load(Ordering::Relaxed)
}

async fn leader_loop(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let ttl = chrono::Duration::seconds(i64::from(state.config.leader_lease_seconds));
    let renew = Duration::from_millis(u64::from(state.config.leader_lease_seconds) * 1000 / 3);
    let holder = state.services.instance_id.to_string();
    loop {
        let now = Utc::now();
        let leader = match leader::try_acquire(&state, &holder, ttl, now).await {
            Ok(leader) => leader,
            Err(err) => {
                tracing::warn!(error = ?err, "leader lease check failed");
                false
            }
        };
        if leader {
            let until = (now + ttl).timestamp_millis();
            state
                .services
                .leader_until_ms
                .store(until, Ordering::Relaxed);
        }
        let was = state.services.leader.swap(leader, Ordering::Relaxed);
        if leader && !was {
            tracing::info!("this replica now runs the background services");
            state.services.wake_scheduler.notify_one();
            state.services.wake_late.notify_one();
        } else if !leader && was {
            tracing::info!("another replica runs the background services now");
        }
        tokio::select! {
            _ = tokio::time::sleep(renew) => {}
            _ = shutdown.changed() => {
                if state.services.leader.swap(false, Ordering::Relaxed) {
                    if let Err(err) = leader::release(&state, &holder).await {
                        tracing::warn!(error = ?err, "could not give the leader lease up");
                    }
                }
                return;
            }
        }
    }
}

async fn scheduler_loop(state: AppState, mut shutdown: watch::Receiver<bool>) {
    loop {
        if is_leader(&state) {
            if let Err(err) = scheduler::try_tick(&state, Utc::now()).await {
                tracing::warn!(error = ?err, "scheduler step failed");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(SCHEDULER_EVERY) => {}
            _ = state.services.wake_scheduler.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn late_detector_loop(state: AppState, mut shutdown: watch::Receiver<bool>) {
    let looks_at = &state.services.late_check_at_ms;
    loop {
        let mut sleep_for = LATE_IDLE;
        let leader = is_leader(&state);
        if leader {
            // Before it reads the runs: one scheduled after that read must wake it again.
            looks_at.store(i64::MAX, Ordering::SeqCst);
            state.services.late_ticks.fetch_add(1, Ordering::Relaxed);
            let now = Utc::now();
            match late_runs::try_tick(&state, now).await {
                Ok(tick) => {
                    if let Some(due) = tick.next_due {
                        let wait = (due - now).to_std().unwrap_or(Duration::ZERO);
                        // Just past the threshold, not before it.
                        sleep_for = sleep_for.min(wait + Duration::from_millis(5));
                    }
                }
                Err(err) => tracing::warn!(error = ?err, "late-run detector step failed"),
            }
        }
        // Not leading, it acts on nothing: becoming leader wakes it.
        let next_look = if leader {
            let sleep_ms = i64::try_from(sleep_for.as_millis()).unwrap_or(i64::MAX);
            Utc::now().timestamp_millis().saturating_add(sleep_ms)
        } else {
            i64::MIN
        };
        looks_at.store(next_look, Ordering::SeqCst);
        tokio::select! {
            _ = tokio::time::sleep(sleep_for) => {}
            _ = state.services.wake_late.notified() => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn retention_loop(state: AppState, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(RETENTION_EVERY) => {}
            _ = shutdown.changed() => return,
        }
        if !is_leader(&state) {
            continue;
        }
        // Drain what expired, one small batch at a time, until done or told to stop.
        while !*shutdown.borrow() {
            match retention::try_tick(&state).await {
                Ok(p) if p.events + p.logs > 0 => tokio::task::yield_now().await,
                Ok(_) => break,
                Err(err) => {
                    tracing::warn!(error = ?err, "retention step failed");
                    break;
                }
            }
        }
    }
}
