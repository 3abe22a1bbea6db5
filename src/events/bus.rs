//! In-process notice that a workspace's event log grew. Writers call `committed` after their
//! transaction commits; subscribers (and the replica bridge) listen.
use tokio::sync::broadcast;
use uuid::Uuid;

#[derive(Debug, Clone, Copy)]
pub struct Committed {
    pub workspace_id: Uuid,
    pub last_seq: i64,
}

#[derive(Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Committed>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(4096);
        Self { sender }
    }

    pub fn committed(&self, workspace_id: Uuid, last_seq: i64) {
        // No receiver is fine: nobody is watching.
        let _ = self.sender.send(Committed {
            workspace_id,
            last_seq,
        });
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Committed> {
        self.sender.subscribe()
    }
}
