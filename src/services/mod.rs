//! Background services. Each exposes one step (`try_tick`) so tests drive it without sleeping;
//! `spawn_all` runs the steps on their schedules.
pub mod retention;

use std::time::Duration;

use crate::state::AppState;

/// Starts the background services; they stop when the server shuts down.
pub fn spawn_all(state: &AppState) {
    let retention_state = state.clone();
    let mut shutdown = state.shutdown.subscribe();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = shutdown.changed() => return,
            }
            // Drain what expired, one small batch at a time.
            loop {
                match retention::try_tick(&retention_state).await {
                    Ok(p) if p.events + p.logs > 0 => tokio::task::yield_now().await,
                    Ok(_) => break,
                    Err(err) => {
                        tracing::warn!(error = ?err, "retention step failed");
                        break;
                    }
                }
            }
        }
    });
}
