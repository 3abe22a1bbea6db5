//! The GraphQL schema: object types (thin wrappers over entity models), inputs, and the query /
//! mutation / subscription roots, split by domain and merged here.
pub mod accounts;
pub mod context;
pub mod deployments;
pub mod flows;
pub mod live;
pub mod loaders;
pub mod logs;
pub mod pagination;
pub mod plain_fields;
pub mod runs;
pub mod storage;
pub mod work_queues;
pub mod workspaces;

use async_graphql::{MergedObject, MergedSubscription, Schema};

use crate::state::AppState;

pub use context::ContextExt;

#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(
    accounts::AccountQuery,
    workspaces::WorkspaceQuery,
    runs::RunQuery,
    deployments::DeploymentQuery,
);

#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(
    accounts::AccountMutation,
    workspaces::WorkspaceMutation,
    runs::RunMutation,
    logs::LogMutation,
    flows::FlowMutation,
    deployments::DeploymentMutation,
    storage::StorageMutation,
    work_queues::WorkQueueMutation,
);

#[derive(MergedSubscription, Default)]
#[graphql(name = "Subscription")]
pub struct SubscriptionRoot(live::LiveSubscription);

pub type AppSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// Exactly deep enough for the introspection query GraphiQL 3.8 sends (graphql-js 16.15: 15 =
/// `__schema { types { fields { args { type { ofType ×9 { name } } } } } }`), so that deeper
/// introspection abuse is refused. A browser test found the older 13 refused GraphiQL's schema.
pub const MAX_DEPTH: usize = 15;
pub const MAX_COMPLEXITY: usize = 5_000;

/// No extensions: `plain_fields` answers plain fields without a per-field `resolve` hook.
pub fn build_schema(state: Option<AppState>) -> AppSchema {
    let mut builder = Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot::default(),
    )
    .limit_depth(MAX_DEPTH)
    .limit_complexity(MAX_COMPLEXITY)
    .limit_recursive_depth(32)
    .limit_directives(20);
    if let Some(state) = state {
        builder = builder.data(state);
    }
    builder.finish()
}

/// The SDL that `flowcloud schema` prints and `schema/schema.graphql` holds.
pub fn sdl() -> String {
    build_schema(None).sdl()
}
