//! The GraphiQL explorer, with the example operations from `playground/` as its tabs.
use serde_json::json;

/// The example operations, in the order their tabs appear. A test checks that every file in
/// `playground/` is listed here and that each one runs.
pub const PLAYGROUND: &[(&str, &str)] = &[
    (
        "sign-up",
        include_str!("../../playground/01-sign-up.graphql"),
    ),
    ("log-in", include_str!("../../playground/02-log-in.graphql")),
    ("me", include_str!("../../playground/03-me.graphql")),
    (
        "create-workspace",
        include_str!("../../playground/04-create-workspace.graphql"),
    ),
    (
        "invite-collaborator",
        include_str!("../../playground/05-invite-collaborator.graphql"),
    ),
    (
        "create-api-key",
        include_str!("../../playground/06-create-api-key.graphql"),
    ),
    (
        "create-flow",
        include_str!("../../playground/07-create-flow.graphql"),
    ),
    (
        "create-work-queue",
        include_str!("../../playground/08-create-work-queue.graphql"),
    ),
    (
        "create-deployment",
        include_str!("../../playground/09-create-deployment.graphql"),
    ),
    (
        "run-deployment",
        include_str!("../../playground/10-run-deployment.graphql"),
    ),
    (
        "set-flow-run-state",
        include_str!("../../playground/11-set-flow-run-state.graphql"),
    ),
    (
        "create-logs",
        include_str!("../../playground/12-create-logs.graphql"),
    ),
    (
        "dashboard",
        include_str!("../../playground/13-dashboard.graphql"),
    ),
    (
        "watch-flow-runs",
        include_str!("../../playground/14-watch-flow-runs.graphql"),
    ),
    (
        "watch-logs",
        include_str!("../../playground/15-watch-logs.graphql"),
    ),
];

pub fn page(assets_url: &str) -> String {
    let tabs: Vec<_> = PLAYGROUND
        .iter()
        .map(|(_, query)| json!({ "query": query }))
        .collect();
    let tabs = serde_json::to_string(&tabs).unwrap_or_else(|_| "[]".into());
    // `</` inside a JSON string could close the script element early.
    let tabs = tabs.replace("</", "<\\/");
    TEMPLATE
        .replace("{{ASSETS}}", assets_url)
        .replace("{{TABS}}", &tabs)
}

const TEMPLATE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>flowcloud — GraphiQL</title>
<link rel="stylesheet" href="{{ASSETS}}/graphiql@3.8.3/graphiql.min.css">
<style>html, body, #graphiql { height: 100%; margin: 0; }</style>
</head>
<body>
<div id="graphiql">Loading GraphiQL…</div>
<script src="{{ASSETS}}/react@18.3.1/umd/react.production.min.js"></script>
<script src="{{ASSETS}}/react-dom@18.3.1/umd/react-dom.production.min.js"></script>
<script src="{{ASSETS}}/graphql-ws@5.16.0/umd/graphql-ws.min.js"></script>
<script src="{{ASSETS}}/graphiql@3.8.3/graphiql.min.js"></script>
<script>
  const tabs = {{TABS}};
  const base = window.location.origin + window.location.pathname.replace(/\/$/, '');
  const wsBase = base.replace(/^http/, 'ws');
  // Subscriptions go over graphql-ws; the token is read from GraphiQL's Headers pane each
  // time the websocket (re)connects.
  const wsClient = graphqlWs.createClient({
    url: wsBase + '/ws',
    lazy: true,
    retryAttempts: 5,
    connectionParams: () => {
      try {
        const headers = JSON.parse(localStorage.getItem('graphiql:headers') || '{}');
        return headers.Authorization ? { Authorization: headers.Authorization } : {};
      } catch (e) { return {}; }
    },
  });
  const fetcher = GraphiQL.createFetcher({ url: base, wsClient });
  ReactDOM.createRoot(document.getElementById('graphiql')).render(
    React.createElement(GraphiQL, {
      fetcher,
      defaultTabs: tabs,
      defaultHeaders: '{\n  "Authorization": "Bearer PASTE-YOUR-TOKEN"\n}',
      shouldPersistHeaders: true,
    })
  );
</script>
</body>
</html>
"#;
