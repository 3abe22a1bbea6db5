//! One DataLoader per relation, created per request so nothing is cached across viewers.
use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, Loader};
use entity::{accounts, deployments, flows, storage_blocks, workspaces};
use futures_util::future::BoxFuture;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use crate::state::AppState;

/// Errors cross the loader boundary as a shared, already-logged message.
pub type LoadError = Arc<String>;

/// A failed batch, as resolvers report it (the cause was logged when the batch failed).
pub fn load_failed(err: LoadError) -> crate::error::AppError {
    crate::error::AppError::Internal(err.to_string())
}

/// `load_one` with its future on the heap. async-graphql moves an object's field future, as
/// large as the largest of the object's fields, into a new box for every field a query selects;
/// one loader future held inline made even the plain fields of the object costly.
pub trait LoadOneBoxed<K, V> {
    fn load_one_boxed(&self, key: K) -> BoxFuture<'_, Result<Option<V>, LoadError>>;
}

impl<K, T> LoadOneBoxed<K, T::Value> for DataLoader<T>
where
    K: Send + Sync + std::hash::Hash + Eq + Clone + 'static,
    T: Loader<K, Error = LoadError>,
{
    fn load_one_boxed(&self, key: K) -> BoxFuture<'_, Result<Option<T::Value>, LoadError>> {
        Box::pin(self.load_one(key))
    }
}

fn load_error(err: sea_orm::DbErr) -> LoadError {
    tracing::error!(error = %err, "loader query failed");
    Arc::new("internal server error".into())
}

pub use runs::TaskRunPageKey;

pub struct Loaders {
    pub accounts: DataLoader<AccountLoader>,
    pub workspaces: DataLoader<WorkspaceLoader>,
    pub flow_runs: DataLoader<runs::FlowRunLoader>,
    pub flow_run_states: DataLoader<runs::FlowRunStatesLoader>,
    pub task_run_states: DataLoader<runs::TaskRunStatesLoader>,
    pub upstream_task_runs: DataLoader<runs::UpstreamLoader>,
    pub task_run_pages: DataLoader<runs::TaskRunPageLoader>,
    pub task_run_counts: DataLoader<runs::TaskRunCountLoader>,
    pub flows: DataLoader<FlowLoader>,
    pub deployments: DataLoader<DeploymentLoader>,
    pub deployments_by_flow: DataLoader<DeploymentsByFlowLoader>,
    pub storage_blocks: DataLoader<StorageBlockLoader>,
}

impl Loaders {
    pub fn new(state: &AppState) -> Self {
        Self {
            accounts: DataLoader::new(AccountLoader(state.clone()), tokio::spawn),
            workspaces: DataLoader::new(WorkspaceLoader(state.clone()), tokio::spawn),
            flow_runs: DataLoader::new(runs::FlowRunLoader(state.clone()), tokio::spawn),
            flow_run_states: DataLoader::new(
                runs::FlowRunStatesLoader(state.clone()),
                tokio::spawn,
            ),
            task_run_states: DataLoader::new(
                runs::TaskRunStatesLoader(state.clone()),
                tokio::spawn,
            ),
            upstream_task_runs: DataLoader::new(runs::UpstreamLoader(state.clone()), tokio::spawn),
            task_run_pages: DataLoader::new(runs::TaskRunPageLoader(state.clone()), tokio::spawn),
            task_run_counts: DataLoader::new(runs::TaskRunCountLoader(state.clone()), tokio::spawn),
            flows: DataLoader::new(FlowLoader(state.clone()), tokio::spawn),
            deployments: DataLoader::new(DeploymentLoader(state.clone()), tokio::spawn),
            deployments_by_flow: DataLoader::new(
                DeploymentsByFlowLoader(state.clone()),
                tokio::spawn,
            ),
            storage_blocks: DataLoader::new(StorageBlockLoader(state.clone()), tokio::spawn),
        }
    }
}

pub struct AccountLoader(AppState);

impl Loader<Uuid> for AccountLoader {
    type Value = accounts::Model;
    type Error = LoadError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = accounts::Entity::find()
            .filter(accounts::Column::Id.is_in(keys.iter().copied()))
            .all(self.0.db.read())
            .await
            .map_err(load_error)?;
        Ok(rows.into_iter().map(|r| (r.id, r)).collect())
    }
}

pub struct WorkspaceLoader(AppState);

impl Loader<Uuid> for WorkspaceLoader {
    type Value = workspaces::Model;
    type Error = LoadError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = workspaces::Entity::find()
            .filter(workspaces::Column::Id.is_in(keys.iter().copied()))
            .all(self.0.db.read())
            .await
            .map_err(load_error)?;
        Ok(rows.into_iter().map(|r| (r.id, r)).collect())
    }
}

/// Batches the relations of flow runs and task runs.
pub mod runs {
    use std::collections::HashMap;

    use async_graphql::dataloader::Loader;
    use chrono::{DateTime, Utc};
    use entity::{flow_run_states, flow_runs, task_run_dependencies, task_run_states, task_runs};
    use sea_orm::{
        ColumnTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Statement,
    };
    use uuid::Uuid;

    use super::{load_error, LoadError};
    use crate::domain::task_runs::TaskRunColumns;
    use crate::state::AppState;

    pub struct FlowRunLoader(pub AppState);

    impl Loader<Uuid> for FlowRunLoader {
        type Value = flow_runs::Model;
        type Error = LoadError;

        async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
            let rows = flow_runs::Entity::find()
                .filter(flow_runs::Column::Id.is_in(keys.iter().copied()))
                .all(self.0.db.read())
                .await
                .map_err(load_error)?;
            Ok(rows.into_iter().map(|r| (r.id, r)).collect())
        }
    }

    /// State history per flow run, oldest first.
    pub struct FlowRunStatesLoader(pub AppState);

    impl Loader<Uuid> for FlowRunStatesLoader {
        type Value = Vec<flow_run_states::Model>;
        type Error = LoadError;

        async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
            let rows = flow_run_states::Entity::find()
                .filter(flow_run_states::Column::FlowRunId.is_in(keys.iter().copied()))
                .order_by_asc(flow_run_states::Column::Timestamp)
                .order_by_asc(flow_run_states::Column::Id)
                .all(self.0.db.read())
                .await
                .map_err(load_error)?;
            let mut out: HashMap<Uuid, Self::Value> = HashMap::new();
            for row in rows {
                out.entry(row.flow_run_id).or_default().push(row);
            }
            Ok(out)
        }
    }

    /// State history per task run, oldest first.
    pub struct TaskRunStatesLoader(pub AppState);

    impl Loader<Uuid> for TaskRunStatesLoader {
        type Value = Vec<task_run_states::Model>;
        type Error = LoadError;

        async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
            let rows = task_run_states::Entity::find()
                .filter(task_run_states::Column::TaskRunId.is_in(keys.iter().copied()))
                .order_by_asc(task_run_states::Column::Timestamp)
                .order_by_asc(task_run_states::Column::Id)
                .all(self.0.db.read())
                .await
                .map_err(load_error)?;
            let mut out: HashMap<Uuid, Self::Value> = HashMap::new();
            for row in rows {
                out.entry(row.task_run_id).or_default().push(row);
            }
            Ok(out)
        }
    }

    /// The upstream task runs of each task run.
    pub struct UpstreamLoader(pub AppState);

    impl Loader<Uuid> for UpstreamLoader {
        type Value = Vec<std::sync::Arc<task_runs::Model>>;
        type Error = LoadError;

        async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
            let db = self.0.db.read();
            let edges = task_run_dependencies::Entity::find()
                .filter(task_run_dependencies::Column::TaskRunId.is_in(keys.iter().copied()))
                .all(db)
                .await
                .map_err(load_error)?;
            let upstream_ids: Vec<Uuid> = edges.iter().map(|e| e.upstream_task_run_id).collect();
            let tasks: HashMap<Uuid, std::sync::Arc<task_runs::Model>> = if upstream_ids.is_empty()
            {
                HashMap::new()
            } else {
                task_runs::Entity::find()
                    .filter(task_runs::Column::Id.is_in(upstream_ids))
                    .all(db)
                    .await
                    .map_err(load_error)?
                    .into_iter()
                    .map(|t| (t.id, std::sync::Arc::new(t)))
                    .collect()
            };
            let mut out: HashMap<Uuid, Self::Value> = HashMap::new();
            for edge in edges {
                if let Some(task) = tasks.get(&edge.upstream_task_run_id) {
                    out.entry(edge.task_run_id).or_default().push(task.clone());
                }
            }
            Ok(out)
        }
    }

    /// Where a page starts: after this (created_at, id), or at the beginning.
    type PagePosition = Option<(DateTime<Utc>, Uuid)>;

    /// One page of a flow run's task runs. Keys that share a page size and position are
    /// fetched in one windowed query for all their flow runs.
    #[derive(Debug, Clone, PartialEq, Eq, Hash)]
    pub struct TaskRunPageKey {
        pub flow_run_id: Uuid,
        /// Rows to fetch (the page size plus one).
        pub fetch: u64,
        pub after: Option<(DateTime<Utc>, Uuid)>,
        /// What the fields that will read the rows need of them.
        pub columns: crate::domain::task_runs::TaskRunColumns,
    }

    pub struct TaskRunPageLoader(pub AppState);

    impl Loader<TaskRunPageKey> for TaskRunPageLoader {
        type Value = Vec<std::sync::Arc<task_runs::Model>>;
        type Error = LoadError;

        async fn load(
            &self,
            keys: &[TaskRunPageKey],
        ) -> Result<HashMap<TaskRunPageKey, Self::Value>, Self::Error> {
            use crate::domain::task_runs::TaskRunByPosition;
            let mut groups: HashMap<(u64, PagePosition, TaskRunColumns), Vec<Uuid>> =
                HashMap::new();
            for key in keys {
                groups
                    .entry((key.fetch, key.after, key.columns))
                    .or_default()
                    .push(key.flow_run_id);
            }
            let backend = self.0.db.backend();
            let mut out = HashMap::new();
            for ((fetch, after, columns), run_ids) in groups {
                for (run_ids, statement) in
                    task_run_pages_statements(backend, &run_ids, fetch, after, columns)
                {
                    let most_rows = run_ids.len() as u64 * fetch;
                    let rows = self
                        .0
                        .db
                        .read_columns::<TaskRunByPosition>(statement, most_rows, columns)
                        .await
                        .map_err(load_error)?;
                    let mut by_run: HashMap<Uuid, Self::Value> = HashMap::new();
                    for TaskRunByPosition(row) in rows {
                        by_run
                            .entry(row.flow_run_id)
                            .or_default()
                            .push(std::sync::Arc::new(row));
                    }
                    for run_id in run_ids {
                        let mut rows = by_run.remove(&run_id).unwrap_or_default();
                        rows.sort_unstable_by_key(|t| (t.created_at, t.id));
                        out.insert(
                            TaskRunPageKey {
                                flow_run_id: run_id,
                                fetch,
                                after,
                                columns,
                            },
                            rows,
                        );
                    }
                }
            }
            Ok(out)
        }
    }

    /// A run page holds at most 200 runs; SQLite allows 500 terms in one compound SELECT.
    const RUNS_PER_TASK_PAGE_STATEMENT: usize = 200;

    /// The first `fetch` task runs (after `after`) of each of `run_ids`, in one statement: one
    /// LIMITed range of the (flow_run_id, created_at, id) index per run, so a run with thousands
    /// of task runs costs as much as one with a handful (a window over all of the runs' task runs
    /// would number every one of them to keep the first few). Columns come in model order, for
    /// `TaskRunByPosition`; rows in no promised order (the caller sorts each run's few rows,
    /// cheaper than the database sorting whole rows).
    fn task_run_pages_statements(
        backend: DbBackend,
        run_ids: &[Uuid],
        fetch: u64,
        after: PagePosition,
        columns: TaskRunColumns,
    ) -> Vec<(Vec<Uuid>, Statement)> {
        run_ids
            .chunks(RUNS_PER_TASK_PAGE_STATEMENT)
            .map(|chunk| {
                (
                    chunk.to_vec(),
                    task_run_pages_statement(backend, chunk, fetch, after, columns),
                )
            })
            .collect()
    }

    fn task_run_pages_statement(
        backend: DbBackend,
        run_ids: &[Uuid],
        fetch: u64,
        after: PagePosition,
        columns: TaskRunColumns,
    ) -> Statement {
        let mut values: Vec<sea_orm::Value> = Vec::new();
        let mut param = |value: sea_orm::Value| {
            values.push(value);
            match backend {
                DbBackend::Postgres => format!("${}", values.len()),
                _ => "?".to_owned(),
            }
        };
        let after_condition = |param: &mut dyn FnMut(sea_orm::Value) -> String| match after {
            Some((at, id)) => {
                let (later, same, id) = (param(at.into()), param(at.into()), param(id.into()));
                format!(" AND (\"created_at\" > {later} OR (\"created_at\" = {same} AND \"id\" > {id}))")
            }
            None => String::new(),
        };
        if backend == DbBackend::Postgres {
            // PostgreSQL plans a 50-branch UNION in ~9 ms; a LATERAL join over the ids is one
            // index scan per run under a plan that takes ~0.6 ms. The scans pass up only the
            // columns read (a page's 250 whole rows were most of the statement's time).
            let ids: Vec<String> = run_ids.iter().map(|id| param((*id).into())).collect();
            let after = after_condition(&mut param);
            let read_columns: Vec<String> = <task_runs::Column as sea_orm::Iterable>::iter()
                .filter(|c| columns.reads(*c))
                .map(|c| format!("\"{}\"", sea_orm::IdenStatic::as_str(&c)))
                .collect();
            let sql = format!(
                "SELECT {} FROM unnest(ARRAY[{}]::uuid[]) AS \"r\"(\"id\") CROSS JOIN LATERAL \
                 (SELECT {} FROM \"task_runs\" WHERE \"flow_run_id\" = \"r\".\"id\"{after} \
                 ORDER BY \"created_at\", \"id\" LIMIT {fetch}) AS \"t\"",
                columns.select_list("\"t\"."),
                ids.join(", "),
                read_columns.join(", "),
            );
            return Statement::from_sql_and_values(backend, sql, values);
        }
        // SQLite has no LATERAL: one LIMITed subquery per run. They pick rowids only, from
        // the index alone; the rows are then read from the table by rowid. Whole rows passed
        // up through the compound select were deep-copied, every text value of every row (a
        // malloc and a copy each: a sixth of a page's instructions).
        let ranges: Vec<String> = run_ids
            .iter()
            .enumerate()
            .map(|(i, run_id)| {
                let run = param((*run_id).into());
                let after = after_condition(&mut param);
                format!(
                    "SELECT \"rid\" FROM (SELECT \"rowid\" AS \"rid\" FROM \"task_runs\" \
                     WHERE \"flow_run_id\" = {run}{after} ORDER BY \"created_at\", \"id\" \
                     LIMIT {fetch}) AS \"r{i}\""
                )
            })
            .collect();
        // CROSS JOIN keeps the picked rowids as the outer loop: one lookup each.
        // Only the columns read; NULL in place of the others, which SQLite then never fetches.
        let sql = format!(
            "SELECT {} FROM ({}) AS \"page\" CROSS JOIN \"task_runs\" AS \"t\" \
             ON \"t\".\"rowid\" = \"page\".\"rid\"",
            columns.select_list("\"t\"."),
            ranges.join(" UNION ALL ")
        );
        Statement::from_sql_and_values(backend, sql, values)
    }

    /// Task run counts per flow run, in one GROUP BY.
    pub struct TaskRunCountLoader(pub AppState);

    impl Loader<Uuid> for TaskRunCountLoader {
        type Value = i64;
        type Error = LoadError;

        async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, i64>, Self::Error> {
            let rows: Vec<(Uuid, i64)> = task_runs::Entity::find()
                .select_only()
                .column(task_runs::Column::FlowRunId)
                .column_as(task_runs::Column::Id.count(), "n")
                .filter(task_runs::Column::FlowRunId.is_in(keys.iter().copied()))
                .group_by(task_runs::Column::FlowRunId)
                .into_tuple()
                .all(self.0.db.read())
                .await
                .map_err(load_error)?;
            Ok(rows.into_iter().collect())
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// SQLite refuses a compound SELECT of more than 500 terms ("too many terms in compound
        /// SELECT"); the task runs of any number of runs must be asked for in statements under it,
        /// every run in exactly one of them, with its parameters numbered from $1 on PostgreSQL
        /// (one per run, then the three of the `after` position).
        #[test]
        fn task_runs_of_many_runs_are_split_into_statements_sqlite_accepts() {
            let runs: Vec<Uuid> = (0..1_010).map(|_| Uuid::new_v4()).collect();
            let after = Some((chrono::Utc::now(), Uuid::new_v4()));
            for backend in [DbBackend::Sqlite, DbBackend::Postgres] {
                let statements =
                    task_run_pages_statements(backend, &runs, 6, after, TaskRunColumns::ALL);
                assert_eq!(statements.len(), 6);
                let mut covered = Vec::new();
                for (chunk, statement) in &statements {
                    let values = statement.values.as_ref().map_or(0, |v| v.0.len());
                    if backend == DbBackend::Postgres {
                        assert_eq!(values, chunk.len() + 3);
                        assert!(statement.sql.contains(&format!("${values}")));
                        assert!(!statement.sql.contains(&format!("${}", values + 1)));
                    } else {
                        let terms = statement.sql.matches(" UNION ALL ").count() + 1;
                        assert!(terms <= 500 && terms == chunk.len(), "{terms} terms");
                        assert_eq!(values, chunk.len() * 4);
                    }
                    covered.extend(chunk.iter().copied());
                }
                assert_eq!(covered, runs);
            }
        }
    }
}

/// Flow by id (the flow of a deployment or run).
pub struct FlowLoader(AppState);

impl Loader<Uuid> for FlowLoader {
    /// Shared: every run of a page asks for the same few flows.
    type Value = Arc<flows::Model>;
    type Error = LoadError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = self
            .0
            .db
            .read_by_position::<crate::domain::flows::FlowByPosition>(
                crate::db::select_by_ids::<flows::Entity>(self.0.db.backend(), keys),
                keys.len() as u64,
            )
            .await
            .map_err(load_error)?;
        Ok(rows.into_iter().map(|r| (r.0.id, Arc::new(r.0))).collect())
    }
}

/// Deployment by id (the deployment of a run).
pub struct DeploymentLoader(AppState);

impl Loader<Uuid> for DeploymentLoader {
    /// Shared: every run of a page asks for the same few deployments.
    type Value = Arc<deployments::Model>;
    type Error = LoadError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = self
            .0
            .db
            .read_by_position::<crate::domain::deployments::DeploymentByPosition>(
                crate::db::select_by_ids::<deployments::Entity>(self.0.db.backend(), keys),
                keys.len() as u64,
            )
            .await
            .map_err(load_error)?;
        Ok(rows.into_iter().map(|r| (r.0.id, Arc::new(r.0))).collect())
    }
}

/// A flow's deployments (flow id → its deployments by name).
pub struct DeploymentsByFlowLoader(AppState);

impl Loader<Uuid> for DeploymentsByFlowLoader {
    type Value = Vec<deployments::Model>;
    type Error = LoadError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = deployments::Entity::find()
            .filter(deployments::Column::FlowId.is_in(keys.iter().copied()))
            .order_by_asc(deployments::Column::Name)
            .all(self.0.db.read())
            .await
            .map_err(load_error)?;
        let mut by_flow: HashMap<Uuid, Self::Value> =
            keys.iter().map(|k| (*k, Vec::new())).collect();
        for row in rows {
            by_flow.entry(row.flow_id).or_default().push(row);
        }
        Ok(by_flow)
    }
}

/// Storage block by id (the storage of a deployment).
pub struct StorageBlockLoader(AppState);

impl Loader<Uuid> for StorageBlockLoader {
    type Value = storage_blocks::Model;
    type Error = LoadError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Self::Value>, Self::Error> {
        let rows = storage_blocks::Entity::find()
            .filter(storage_blocks::Column::Id.is_in(keys.iter().copied()))
            .all(self.0.db.read())
            .await
            .map_err(load_error)?;
        Ok(rows.into_iter().map(|r| (r.id, r)).collect())
    }
}
