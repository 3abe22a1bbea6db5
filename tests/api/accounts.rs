//! Accounts: sign-up, log-in, profile, profile images, sessions and API keys.
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn signing_up_returns_a_token_that_identifies_the_new_account() {
    let app = spawn_app().await;
    let ada = app.sign_up("ada").await;
    let response = app
        .gql_as(
            &ada.token,
            "{ me { id email handle name imageUrl } }",
            json!(null),
        )
        .await;
    let me = &data(&response)["me"];
    assert_eq!(uuid_at(&me["id"]), ada.id);
    assert_eq!(me["email"], "ada@example.com");
    assert_eq!(me["handle"], "ada");
    assert_eq!(me["name"], "ada");
    assert_eq!(me["imageUrl"], json!(null));
}
