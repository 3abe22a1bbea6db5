//! Accounts, API keys, profile images, workspaces, members, invitations and server settings.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Accounts {
    Table,
    Id,
    Email,
    Handle,
    Name,
    PasswordHash,
    ImageId,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ProfileImages {
    Table,
    Id,
    AccountId,
    ContentType,
    Data,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    AccountId,
    Name,
    Prefix,
    SecretHash,
    CreatedAt,
    ExpiresAt,
    LastUsedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Workspaces {
    Table,
    Id,
    Handle,
    Name,
    Description,
    OwnerId,
    LastEventSeq,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WorkspaceMembers {
    Table,
    WorkspaceId,
    AccountId,
    Role,
    JoinedAt,
}

#[derive(DeriveIden)]
enum Invitations {
    Table,
    Id,
    WorkspaceId,
    Email,
    Role,
    InvitedBy,
    Status,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum Settings {
    Table,
    Key,
    Value,
}

fn ts(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

fn ts_null(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .null()
        .to_owned()
}

fn text(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).text().not_null().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Accounts::Table)
                .col(ColumnDef::new(Accounts::Id).uuid().not_null().primary_key())
                .col(text(Accounts::Email))
                .col(text(Accounts::Handle))
                .col(text(Accounts::Name))
                .col(text(Accounts::PasswordHash))
                .col(ColumnDef::new(Accounts::ImageId).uuid().null())
                .col(ts(Accounts::CreatedAt))
                .col(ts(Accounts::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_accounts_email")
                .table(Accounts::Table)
                .col(Accounts::Email)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_accounts_handle")
                .table(Accounts::Table)
                .col(Accounts::Handle)
                .unique()
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(ProfileImages::Table)
                .col(
                    ColumnDef::new(ProfileImages::Id)
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(ProfileImages::AccountId).uuid().not_null())
                .col(text(ProfileImages::ContentType))
                .col(ColumnDef::new(ProfileImages::Data).blob().not_null())
                .col(ts(ProfileImages::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(ProfileImages::Table, ProfileImages::AccountId)
                        .to(Accounts::Table, Accounts::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_profile_images_account")
                .table(ProfileImages::Table)
                .col(ProfileImages::AccountId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(ApiKeys::Table)
                .col(ColumnDef::new(ApiKeys::Id).uuid().not_null().primary_key())
                .col(ColumnDef::new(ApiKeys::AccountId).uuid().not_null())
                .col(text(ApiKeys::Name))
                .col(text(ApiKeys::Prefix))
                .col(text(ApiKeys::SecretHash))
                .col(ts(ApiKeys::CreatedAt))
                .col(ts_null(ApiKeys::ExpiresAt))
                .col(ts_null(ApiKeys::LastUsedAt))
                .col(ts_null(ApiKeys::RevokedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(ApiKeys::Table, ApiKeys::AccountId)
                        .to(Accounts::Table, Accounts::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_api_keys_prefix")
                .table(ApiKeys::Table)
                .col(ApiKeys::Prefix)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_api_keys_account")
                .table(ApiKeys::Table)
                .col(ApiKeys::AccountId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Workspaces::Table)
                .col(
                    ColumnDef::new(Workspaces::Id)
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(text(Workspaces::Handle))
                .col(text(Workspaces::Name))
                .col(ColumnDef::new(Workspaces::Description).text().null())
                .col(ColumnDef::new(Workspaces::OwnerId).uuid().not_null())
                .col(
                    ColumnDef::new(Workspaces::LastEventSeq)
                        .big_integer()
                        .not_null()
                        .default(0),
                )
                .col(ts(Workspaces::CreatedAt))
                .col(ts(Workspaces::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(Workspaces::Table, Workspaces::OwnerId)
                        .to(Accounts::Table, Accounts::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_workspaces_handle")
                .table(Workspaces::Table)
                .col(Workspaces::Handle)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_workspaces_owner")
                .table(Workspaces::Table)
                .col(Workspaces::OwnerId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(WorkspaceMembers::Table)
                .col(
                    ColumnDef::new(WorkspaceMembers::WorkspaceId)
                        .uuid()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(WorkspaceMembers::AccountId)
                        .uuid()
                        .not_null(),
                )
                .col(text(WorkspaceMembers::Role))
                .col(ts(WorkspaceMembers::JoinedAt))
                .primary_key(
                    Index::create()
                        .col(WorkspaceMembers::WorkspaceId)
                        .col(WorkspaceMembers::AccountId),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(WorkspaceMembers::Table, WorkspaceMembers::WorkspaceId)
                        .to(Workspaces::Table, Workspaces::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(WorkspaceMembers::Table, WorkspaceMembers::AccountId)
                        .to(Accounts::Table, Accounts::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_workspace_members_account")
                .table(WorkspaceMembers::Table)
                .col(WorkspaceMembers::AccountId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Invitations::Table)
                .col(
                    ColumnDef::new(Invitations::Id)
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(Invitations::WorkspaceId).uuid().not_null())
                .col(text(Invitations::Email))
                .col(text(Invitations::Role))
                .col(ColumnDef::new(Invitations::InvitedBy).uuid().not_null())
                .col(text(Invitations::Status))
                .col(ts(Invitations::CreatedAt))
                .col(ts(Invitations::ExpiresAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(Invitations::Table, Invitations::WorkspaceId)
                        .to(Workspaces::Table, Workspaces::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(Invitations::Table, Invitations::InvitedBy)
                        .to(Accounts::Table, Accounts::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_invitations_workspace")
                .table(Invitations::Table)
                .col(Invitations::WorkspaceId)
                .col(Invitations::Status)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_invitations_email")
                .table(Invitations::Table)
                .col(Invitations::Email)
                .col(Invitations::Status)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Settings::Table)
                .col(
                    ColumnDef::new(Settings::Key)
                        .text()
                        .not_null()
                        .primary_key(),
                )
                .col(text(Settings::Value))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Settings::Table.into_iden(),
            Invitations::Table.into_iden(),
            WorkspaceMembers::Table.into_iden(),
            Workspaces::Table.into_iden(),
            ApiKeys::Table.into_iden(),
            ProfileImages::Table.into_iden(),
            Accounts::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
