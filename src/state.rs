//! The application state, cloned into every handler.
use std::sync::Arc;
use std::time::Duration;

use crate::auth::jwt::SessionKeys;
use crate::auth::throttle::LoginThrottle;
use crate::config::Config;
use crate::db::Db;
use crate::events::{EventBus, Hub};

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub config: Arc<Config>,
    pub sessions: Arc<SessionKeys>,
    pub login_throttle: Arc<LoginThrottle>,
    pub events: EventBus,
    pub hub: Hub,
    /// Flips to `true` when the server starts shutting down (websockets close with 1001).
    pub shutdown: Arc<tokio::sync::watch::Sender<bool>>,
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
        Self {
            db,
            config: Arc::new(config),
            sessions: Arc::new(sessions),
            login_throttle: Arc::new(login_throttle),
            events,
            hub,
            shutdown: Arc::new(tokio::sync::watch::channel(false).0),
        }
    }
}
