//! The bridge between server processes sharing one PostgreSQL database: every writing
//! transaction NOTIFYs (delivered at commit), and each process LISTENs and repeats what it hears
//! on its own bus. Notifications are wake-up hints only — the events are read from the log, so
//! a missed one or a reconnect loses nothing (feeds also look at the log every second).
use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use sqlx::postgres::PgListener;
use uuid::Uuid;

use super::bus::Notice;
use super::EventBus;
use crate::error::AppResult;

pub const CHANNEL: &str = "flowcloud_events";

/// [`Notice::Committed`] for the `event_counters` row an `UPDATE … RETURNING` just changed, built by
/// PostgreSQL so the reservation and its notification are one statement. The payload is what
/// [`encode`] makes; a test decodes it.
pub const COMMITTED_NOTIFY_SQL: &str = r#"pg_notify('flowcloud_events', 'c:' || "workspace_id"::text || ':' || "last_event_seq"::text)::text"#;

fn encode(notice: &Notice) -> String {
    match notice {
        Notice::Committed {
            workspace_id,
            last_seq,
        } => format!("c:{workspace_id}:{last_seq}"),
        Notice::AccessChanged { account_id } => match account_id {
            Some(id) => format!("a:{id}"),
            None => "a:*".to_owned(),
        },
    }
}

fn decode(payload: &str) -> Option<Notice> {
    let mut parts = payload.split(':');
    match parts.next()? {
        "c" => Some(Notice::Committed {
            workspace_id: Uuid::parse_str(parts.next()?).ok()?,
            last_seq: parts.next()?.parse().ok()?,
        }),
        "a" => Some(Notice::AccessChanged {
            account_id: match parts.next()? {
                "*" => None,
                id => Some(Uuid::parse_str(id).ok()?),
            },
        }),
        _ => None,
    }
}

/// Queues a notification to other processes; inside a transaction it is sent at commit (and
/// dropped on rollback). A no-op on SQLite, which has one process.
pub async fn notify(conn: &impl ConnectionTrait, notice: &Notice) -> AppResult<()> {
    if conn.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    conn.execute(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_notify($1, $2)",
        [CHANNEL.into(), encode(notice).into()],
    ))
    .await?;
    Ok(())
}

/// Listens for other processes' notifications until the server shuts down.
pub fn spawn_listener(
    pool: sqlx::PgPool,
    bus: EventBus,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            let err = tokio::select! {
                listened = listen(&pool, &bus) => match listened {
                    Ok(()) => return,
                    Err(err) => err,
                },
                _ = shutdown.changed() => return,
            };
            tracing::warn!(error = %err, "replica event listener lost its connection; reconnecting");
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
}

async fn listen(pool: &sqlx::PgPool, bus: &EventBus) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    // Anything committed while we were not listening is picked up by the feeds' own polling;
    // a blanket access re-check covers revocations we may have missed.
    bus.access_changed(None);
    loop {
        let notification = listener.recv().await?;
        if let Some(notice) = decode(notification.payload()) {
            bus.publish(notice);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn notices_survive_the_round_trip() {
        let ws = Uuid::now_v7();
        for notice in [
            Notice::Committed {
                workspace_id: ws,
                last_seq: 42,
            },
            Notice::AccessChanged {
                account_id: Some(ws),
            },
            Notice::AccessChanged { account_id: None },
        ] {
            assert_eq!(decode(&encode(&notice)), Some(notice));
        }
        assert_eq!(decode("garbage"), None);
    }

    #[test]
    fn the_sql_built_notification_goes_to_the_channel_we_listen_on() {
        assert!(COMMITTED_NOTIFY_SQL.starts_with(&format!("pg_notify('{CHANNEL}', 'c:'")));
    }
}
