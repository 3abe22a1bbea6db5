//! Run states: the types, their default names, and the state a client proposes.
use chrono::{DateTime, Utc};

use crate::error::{AppError, AppResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateType {
    Scheduled,
    Pending,
    Running,
    Completed,
    Failed,
    Cancelling,
    Cancelled,
    Crashed,
    Paused,
}

impl StateType {
    pub const ALL: [StateType; 9] = [
        StateType::Scheduled,
        StateType::Pending,
        StateType::Running,
        StateType::Completed,
        StateType::Failed,
        StateType::Cancelling,
        StateType::Cancelled,
        StateType::Crashed,
        StateType::Paused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StateType::Scheduled => "SCHEDULED",
            StateType::Pending => "PENDING",
            StateType::Running => "RUNNING",
            StateType::Completed => "COMPLETED",
            StateType::Failed => "FAILED",
            StateType::Cancelling => "CANCELLING",
            StateType::Cancelled => "CANCELLED",
            StateType::Crashed => "CRASHED",
            StateType::Paused => "PAUSED",
        }
    }

    pub fn parse(value: &str) -> AppResult<Self> {
        StateType::ALL
            .into_iter()
            .find(|t| t.as_str() == value)
            .ok_or_else(|| AppError::internal(format!("unknown state type in database: {value}")))
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            StateType::Completed | StateType::Failed | StateType::Cancelled | StateType::Crashed
        )
    }

    /// The display name a state of this type gets when the client names none.
    pub fn default_name(self) -> &'static str {
        match self {
            StateType::Scheduled => "Scheduled",
            StateType::Pending => "Pending",
            StateType::Running => "Running",
            StateType::Completed => "Completed",
            StateType::Failed => "Failed",
            StateType::Cancelling => "Cancelling",
            StateType::Cancelled => "Cancelled",
            StateType::Crashed => "Crashed",
            StateType::Paused => "Paused",
        }
    }
}

pub const NAME_SCHEDULED: &str = "Scheduled";
pub const NAME_LATE: &str = "Late";
pub const NAME_AWAITING_RETRY: &str = "AwaitingRetry";
pub const NAME_RETRYING: &str = "Retrying";

/// A state as a client proposes it.
#[derive(Debug, Clone)]
pub struct ProposedState {
    pub state_type: StateType,
    pub name: Option<String>,
    pub message: Option<String>,
    pub scheduled_time: Option<DateTime<Utc>>,
    pub transition_id: Option<String>,
}

impl ProposedState {
    pub fn new(state_type: StateType) -> Self {
        Self {
            state_type,
            name: None,
            message: None,
            scheduled_time: None,
            transition_id: None,
        }
    }

    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    pub fn validate(&self) -> AppResult<()> {
        if let Some(name) = &self.name {
            if name.trim().is_empty() || name.chars().count() > 100 {
                return Err(AppError::bad_input(
                    "state.name",
                    "must be 1-100 characters",
                ));
            }
        }
        if self.message.as_ref().is_some_and(|m| m.len() > 64 * 1024) {
            return Err(AppError::bad_input(
                "state.message",
                "must be at most 64 KiB",
            ));
        }
        if self
            .transition_id
            .as_ref()
            .is_some_and(|t| t.is_empty() || t.len() > 200)
        {
            return Err(AppError::bad_input(
                "state.transitionId",
                "must be 1-200 characters",
            ));
        }
        Ok(())
    }
}

/// A state as stored: the current one on a run row, or one entry of its history.
#[derive(Debug, Clone, PartialEq)]
pub struct StateRecord {
    pub id: uuid::Uuid,
    pub state_type: StateType,
    pub name: String,
    pub message: Option<String>,
    pub timestamp: DateTime<Utc>,
    pub scheduled_time: Option<DateTime<Utc>>,
    pub transition_id: Option<String>,
}

impl StateRecord {
    pub fn of_flow_run(run: &entity::flow_runs::Model) -> AppResult<Self> {
        Ok(Self {
            id: run.state_id,
            state_type: StateType::parse(&run.state_type)?,
            name: run.state_name.clone(),
            message: run.state_message.clone(),
            timestamp: run.state_timestamp,
            scheduled_time: run.state_scheduled_time,
            transition_id: run.state_transition_id.clone(),
        })
    }

    pub fn of_task_run(run: &entity::task_runs::Model) -> AppResult<Self> {
        Ok(Self {
            id: run.state_id,
            state_type: StateType::parse(&run.state_type)?,
            name: run.state_name.clone(),
            message: run.state_message.clone(),
            timestamp: run.state_timestamp,
            scheduled_time: run.state_scheduled_time,
            transition_id: run.state_transition_id.clone(),
        })
    }

    pub fn of_flow_run_state(row: &entity::flow_run_states::Model) -> AppResult<Self> {
        Ok(Self {
            id: row.id,
            state_type: StateType::parse(&row.r#type)?,
            name: row.name.clone(),
            message: row.message.clone(),
            timestamp: row.timestamp,
            scheduled_time: row.scheduled_time,
            transition_id: row.transition_id.clone(),
        })
    }

    pub fn of_task_run_state(row: &entity::task_run_states::Model) -> AppResult<Self> {
        Ok(Self {
            id: row.id,
            state_type: StateType::parse(&row.r#type)?,
            name: row.name.clone(),
            message: row.message.clone(),
            timestamp: row.timestamp,
            scheduled_time: row.scheduled_time,
            transition_id: row.transition_id.clone(),
        })
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "type": self.state_type.as_str(),
            "name": self.name,
            "message": self.message,
            "timestamp": self.timestamp,
            "scheduledTime": self.scheduled_time,
            "transitionId": self.transition_id,
        })
    }

    pub fn from_json(value: &serde_json::Value) -> AppResult<Self> {
        let text = |key: &str| value.get(key).and_then(|v| v.as_str()).map(str::to_owned);
        let time = |key: &str| {
            value
                .get(key)
                .and_then(|v| v.as_str())
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        Ok(Self {
            id: text("id")
                .and_then(|s| uuid::Uuid::parse_str(&s).ok())
                .ok_or_else(|| AppError::internal("event state without id"))?,
            state_type: StateType::parse(&text("type").unwrap_or_default())?,
            name: text("name").unwrap_or_default(),
            message: text("message"),
            timestamp: time("timestamp")
                .ok_or_else(|| AppError::internal("event state without timestamp"))?,
            scheduled_time: time("scheduledTime"),
            transition_id: text("transitionId"),
        })
    }
}
