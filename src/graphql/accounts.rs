//! Accounts, sessions and API keys.
use async_graphql::{Context, InputObject, Object, SimpleObject, Upload};
use chrono::{DateTime, Utc};
use entity::{accounts as account_rows, api_keys};
use tokio::io::AsyncReadExt;
use uuid::Uuid;

use super::ContextExt;
use crate::domain::accounts::{self, ProfileUpdate, SignUp, MAX_IMAGE_BYTES};
use crate::error::{AppError, AppResult};

pub struct Account(pub account_rows::Model);

#[Object]
impl Account {
    async fn id(&self) -> Uuid {
        self.0.id
    }
    async fn email(&self) -> &str {
        &self.0.email
    }
    async fn handle(&self) -> &str {
        &self.0.handle
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Where the server serves the profile image (a path on this server), if one was uploaded.
    async fn image_url(&self) -> Option<String> {
        self.0.image_id.map(|id| format!("/profile-images/{id}"))
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// The account's API keys; only the account itself may list them.
    async fn api_keys(&self, ctx: &Context<'_>) -> AppResult<Vec<ApiKey>> {
        let viewer = ctx.viewer()?;
        if viewer.account_id != self.0.id {
            return Err(AppError::forbidden(
                "only the account itself may list its API keys",
            ));
        }
        let keys = accounts::list_api_keys(ctx.app()?, self.0.id).await?;
        Ok(keys.into_iter().map(ApiKey).collect())
    }
}

pub struct ApiKey(pub api_keys::Model);

#[Object]
impl ApiKey {
    async fn id(&self) -> Uuid {
        self.0.id
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.expires_at
    }
    async fn last_used_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_used_at
    }
    async fn revoked(&self) -> bool {
        self.0.revoked_at.is_some()
    }
    /// The first characters of the key, to tell keys apart (the secret is never shown again).
    async fn prefix(&self) -> String {
        format!("{}{}", crate::auth::api_keys::KEY_PREFIX, self.0.prefix)
    }
}

#[derive(SimpleObject)]
pub struct AuthPayload {
    token: String,
    account: Account,
}

#[derive(SimpleObject)]
pub struct CreatedApiKey {
    /// The whole key. Shown exactly once: store it now.
    secret: String,
    api_key: ApiKey,
}

#[derive(InputObject)]
pub struct SignUpInput {
    email: String,
    password: String,
    handle: String,
    name: String,
}

#[derive(InputObject)]
pub struct UpdateProfileInput {
    handle: Option<String>,
    name: Option<String>,
}

#[derive(InputObject)]
pub struct CreateApiKeyInput {
    name: String,
    expires_at: Option<DateTime<Utc>>,
}

#[derive(Default)]
pub struct AccountQuery;

#[Object]
impl AccountQuery {
    /// The signed-in account.
    async fn me(&self, ctx: &Context<'_>) -> AppResult<Account> {
        let viewer = ctx.viewer()?;
        let account = accounts::get(ctx.app()?, viewer.account_id)
            .await
            .map_err(|_| AppError::unauthenticated())?;
        Ok(Account(account))
    }
}

#[derive(Default)]
pub struct AccountMutation;

#[Object]
impl AccountMutation {
    /// Creates a personal account and signs it in.
    async fn sign_up(&self, ctx: &Context<'_>, input: SignUpInput) -> AppResult<AuthPayload> {
        let (account, token) = accounts::sign_up(
            ctx.app()?,
            SignUp {
                email: input.email,
                password: input.password,
                handle: input.handle,
                name: input.name,
            },
        )
        .await?;
        Ok(AuthPayload {
            token,
            account: Account(account),
        })
    }

    /// Exchanges email and password for a session token.
    async fn log_in(
        &self,
        ctx: &Context<'_>,
        email: String,
        password: String,
    ) -> AppResult<AuthPayload> {
        let (account, token) =
            accounts::log_in(ctx.app()?, &email, password, ctx.client_addr()).await?;
        Ok(AuthPayload {
            token,
            account: Account(account),
        })
    }

    async fn update_profile(
        &self,
        ctx: &Context<'_>,
        input: UpdateProfileInput,
    ) -> AppResult<Account> {
        let viewer = ctx.viewer()?;
        let account = accounts::update_profile(
            ctx.app()?,
            viewer,
            ProfileUpdate {
                handle: input.handle,
                name: input.name,
            },
        )
        .await?;
        Ok(Account(account))
    }

    /// Sets the profile image (PNG, JPEG, WebP or GIF, at most 1 MiB) from a multipart upload.
    async fn upload_profile_image(&self, ctx: &Context<'_>, image: Upload) -> AppResult<Account> {
        let viewer = ctx.viewer()?;
        let upload = image
            .value(ctx)
            .map_err(|_| AppError::bad_input("image", "no file was sent for this variable"))?;
        let mut bytes = Vec::new();
        let mut file =
            tokio::fs::File::from_std(upload.content.try_clone().map_err(AppError::internal)?)
                .take(MAX_IMAGE_BYTES as u64 + 1);
        file.read_to_end(&mut bytes)
            .await
            .map_err(AppError::internal)?;
        let account = accounts::set_profile_image(ctx.app()?, viewer, bytes).await?;
        Ok(Account(account))
    }

    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        input: CreateApiKeyInput,
    ) -> AppResult<CreatedApiKey> {
        let viewer = ctx.viewer()?;
        let (key, secret) =
            accounts::create_api_key(ctx.app()?, viewer, &input.name, input.expires_at).await?;
        Ok(CreatedApiKey {
            secret,
            api_key: ApiKey(key),
        })
    }

    async fn revoke_api_key(&self, ctx: &Context<'_>, id: Uuid) -> AppResult<ApiKey> {
        let viewer = ctx.viewer()?;
        let key = accounts::revoke_api_key(ctx.app()?, viewer, id).await?;
        Ok(ApiKey(key))
    }
}
