//! In-process notices: a workspace's event log grew, or someone's access changed. Writers call
//! these after their transaction commits; the replica bridge repeats what other processes
//! committed. Notices are only wake-up hints: the events themselves are read from the log.
use tokio::sync::broadcast;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Events up to `last_seq` are committed in the workspace.
    Committed { workspace_id: Uuid, last_seq: i64 },
    /// The account's access changed (removed from a workspace, API key revoked, workspace
    /// deleted): its open subscriptions re-check their access now.
    AccessChanged { account_id: Option<Uuid> },
}

/// Two channels, so that each kind of listener is woken only by what it acts on: every open
/// subscription listens for access changes, while only the feeds (one per watched workspace)
/// listen for commits. One channel for both would wake every subscription on every commit.
#[derive(Clone)]
pub struct EventBus {
    committed: broadcast::Sender<Notice>,
    access: broadcast::Sender<Notice>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    pub fn new() -> Self {
        let (committed, _) = broadcast::channel(8192);
        let (access, _) = broadcast::channel(1024);
        Self { committed, access }
    }

    pub fn committed(&self, workspace_id: Uuid, last_seq: i64) {
        self.publish(Notice::Committed {
            workspace_id,
            last_seq,
        });
    }

    pub fn access_changed(&self, account_id: Option<Uuid>) {
        self.publish(Notice::AccessChanged { account_id });
    }

    pub fn publish(&self, notice: Notice) {
        let sender = match notice {
            Notice::Committed { .. } => &self.committed,
            Notice::AccessChanged { .. } => &self.access,
        };
        // No receiver is fine: nobody is watching.
        let _ = sender.send(notice);
    }

    /// `Committed` notices only.
    pub fn subscribe_committed(&self) -> broadcast::Receiver<Notice> {
        self.committed.subscribe()
    }

    /// `AccessChanged` notices only.
    pub fn subscribe_access(&self) -> broadcast::Receiver<Notice> {
        self.access.subscribe()
    }
}
