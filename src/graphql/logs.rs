//! Log lines: batch ingestion and paginated reads.
use async_graphql::{Context, Enum, InputObject, Object};
use chrono::{DateTime, Utc};
use entity::logs;
use uuid::Uuid;

use super::ContextExt;
use crate::connection_type;
use crate::domain::logs::{self as domain_logs, LogLevel as DomainLevel, NewLog};
use crate::error::AppResult;

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

impl From<LogLevel> for DomainLevel {
    fn from(l: LogLevel) -> Self {
        match l {
            LogLevel::Debug => Self::Debug,
            LogLevel::Info => Self::Info,
            LogLevel::Warning => Self::Warning,
            LogLevel::Error => Self::Error,
            LogLevel::Critical => Self::Critical,
        }
    }
}

impl From<DomainLevel> for LogLevel {
    fn from(l: DomainLevel) -> Self {
        match l {
            DomainLevel::Debug => Self::Debug,
            DomainLevel::Info => Self::Info,
            DomainLevel::Warning => Self::Warning,
            DomainLevel::Error => Self::Error,
            DomainLevel::Critical => Self::Critical,
        }
    }
}

#[derive(Clone)]
pub struct Log(pub logs::Model);

impl From<logs::Model> for Log {
    fn from(m: logs::Model) -> Self {
        Self(m)
    }
}

#[Object]
impl Log {
    async fn id(&self) -> Uuid {
        self.0.id
    }
    async fn flow_run_id(&self) -> Uuid {
        self.0.flow_run_id
    }
    async fn task_run_id(&self) -> Option<Uuid> {
        self.0.task_run_id
    }
    async fn level(&self) -> LogLevel {
        DomainLevel::from_number(self.0.level).into()
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn message(&self) -> &str {
        &self.0.message
    }
    async fn timestamp(&self) -> DateTime<Utc> {
        self.0.timestamp
    }
    /// The line's place in the workspace event log: resume a `logs` subscription after it.
    async fn cursor(&self) -> String {
        crate::events::encode_cursor(self.0.seq)
    }
}

connection_type!(LogConnection, LogEdge, Log, logs::Model);

#[derive(InputObject)]
pub struct LogInput {
    flow_run_id: Uuid,
    task_run_id: Option<Uuid>,
    level: LogLevel,
    name: String,
    message: String,
    timestamp: DateTime<Utc>,
}

#[derive(Default)]
pub struct LogMutation;

#[Object]
impl LogMutation {
    /// Stores up to 10,000 lines in one transaction; returns how many were stored. Every line
    /// must belong to a flow run (and task run) of the workspace, or nothing is stored.
    async fn create_logs(
        &self,
        ctx: &Context<'_>,
        workspace_id: Uuid,
        logs: Vec<LogInput>,
    ) -> AppResult<i32> {
        let lines = logs
            .into_iter()
            .map(|l| NewLog {
                flow_run_id: l.flow_run_id,
                task_run_id: l.task_run_id,
                level: l.level.into(),
                name: l.name,
                message: l.message,
                timestamp: l.timestamp,
            })
            .collect();
        let stored = domain_logs::create(ctx.app()?, ctx.viewer()?, workspace_id, lines).await?;
        Ok(i32::try_from(stored).unwrap_or(i32::MAX))
    }
}
