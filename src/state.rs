//! The application state, cloned into every handler.
use std::sync::Arc;
use std::time::Duration;

use crate::auth::jwt::SessionKeys;
use crate::auth::throttle::LoginThrottle;
use crate::config::Config;
use crate::db::Db;
use crate::events::{EventBus, Hub};

/// Cheap to clone (one reference count): every request's loaders, every subscription and every
/// background service holds one, and as a plain struct each copy was ~300 bytes.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub db: Db,
    pub config: Arc<Config>,
    pub sessions: Arc<SessionKeys>,
    pub login_throttle: Arc<LoginThrottle>,
    pub events: EventBus,
    pub hub: Hub,
    /// Flips to `true` when the server starts shutting down (websockets close with 1001).
    pub shutdown: Arc<tokio::sync::watch::Sender<bool>>,
    pub services: Arc<ServiceHandles>,
}

/// What the background services share with the rest of the server.
pub struct ServiceHandles {
    /// This process, as a lease holder.
    pub instance_id: uuid::Uuid,
    /// Whether this replica holds the leader lease (and so runs the services).
    pub leader: std::sync::atomic::AtomicBool,
    /// When the lease this replica last took ends (Unix milliseconds): past it, this replica
    /// no longer acts even if a renewal is late, since another may have taken over.
    pub leader_until_ms: std::sync::atomic::AtomicI64,
    pub wake_scheduler: tokio::sync::Notify,
    pub wake_late: tokio::sync::Notify,
    /// When the late detector looks next (Unix milliseconds): `i64::MAX` while it looks (or
    /// before it first has), `i64::MIN` while this replica does not run it. A run that could
    /// become late sooner wakes it; any other is seen in time without waking it.
    pub late_check_at_ms: std::sync::atomic::AtomicI64,
    /// Steps the late detector has taken, for tests and diagnostics.
    pub late_ticks: std::sync::atomic::AtomicU64,
}

impl AppState {
    /// A deployment's schedule changed: fill it now rather than on the next round.
    pub fn wake_scheduler(&self) {
        self.services.wake_scheduler.notify_one();
    }

    /// A run's state was written (committed): if the late detector will watch it (see
    /// `late_runs::waiting_since`) and it would be late before the detector looks next, wakes
    /// the detector.
    pub fn run_state_written(
        &self,
        state_type: &str,
        name: &str,
        scheduled_time: Option<chrono::DateTime<chrono::Utc>>,
    ) {
        let Some(since) =
            crate::services::late_runs::waiting_since(state_type, name, scheduled_time)
        else {
            return;
        };
        let late_at = since + chrono::Duration::seconds(i64::from(self.config.late_after_seconds));
        let looks_at = self
            .services
            .late_check_at_ms
            .load(std::sync::atomic::Ordering::SeqCst);
        if late_at.timestamp_millis() < looks_at {
            self.services.wake_late.notify_one();
        }
    }
}

impl AppState {
    pub fn new(db: Db, config: Config, jwt_secret: &[u8]) -> Self {
        let sessions = SessionKeys::new(jwt_secret, i64::from(config.session_ttl_seconds));
        let login_throttle = LoginThrottle::new(
            config.login_max_failures,
            Duration::from_secs(u64::from(config.login_throttle_seconds)),
        );
        let events = EventBus::new();
        let hub = Hub::new(db.clone(), events.clone());
        Self(Arc::new(Shared {
            db,
            config: Arc::new(config),
            sessions: Arc::new(sessions),
            login_throttle: Arc::new(login_throttle),
            events,
            hub,
            shutdown: Arc::new(tokio::sync::watch::channel(false).0),
            services: Arc::new(ServiceHandles {
                instance_id: uuid::Uuid::new_v4(),
                leader: std::sync::atomic::AtomicBool::new(false),
                leader_until_ms: std::sync::atomic::AtomicI64::new(0),
                wake_scheduler: tokio::sync::Notify::new(),
                wake_late: tokio::sync::Notify::new(),
                late_check_at_ms: std::sync::atomic::AtomicI64::new(i64::MAX),
                late_ticks: std::sync::atomic::AtomicU64::new(0),
            }),
        }))
    }
}
