//! Relay-style connections: `first` (default 50, at most 200), opaque `after` cursors, `totalCount`.
use async_graphql::SimpleObject;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::error::{AppError, AppResult};

pub const DEFAULT_PAGE_SIZE: i32 = 50;
pub const MAX_PAGE_SIZE: i32 = 200;

#[derive(SimpleObject, Debug, Clone, Default)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub has_previous_page: bool,
    pub start_cursor: Option<String>,
    pub end_cursor: Option<String>,
}

impl super::plain_fields::PlainFields for PageInfo {
    fn plain_field(&self, ctx: &async_graphql::Context<'_>) -> Option<async_graphql::Value> {
        use super::plain_fields::PlainValue;
        Some(match ctx.item.node.name.node.as_str() {
            "hasNextPage" => self.has_next_page.plain_value(),
            "hasPreviousPage" => self.has_previous_page.plain_value(),
            "startCursor" => self.start_cursor.as_deref().plain_value(),
            "endCursor" => self.end_cursor.as_deref().plain_value(),
            _ => return None,
        })
    }
}

/// Validated page arguments.
#[derive(Debug, Clone)]
pub struct PageArgs {
    pub first: u64,
    /// The decoded parts of the `after` cursor.
    pub after: Option<Vec<String>>,
}

impl PageArgs {
    pub fn parse(first: Option<i32>, after: Option<String>) -> AppResult<Self> {
        let first = first.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(0..=MAX_PAGE_SIZE).contains(&first) {
            return Err(AppError::bad_input(
                "first",
                format!("must be between 0 and {MAX_PAGE_SIZE}"),
            ));
        }
        let after = after.map(|c| decode_cursor("after", &c)).transpose()?;
        Ok(Self {
            first: first as u64,
            after,
        })
    }

    /// How many rows to fetch: one more than the page, to learn whether another page follows.
    pub fn fetch_limit(&self) -> u64 {
        self.first + 1
    }
}

/// Cursors are opaque to clients: the key parts of the row, joined and base64url-encoded.
pub fn encode_cursor(parts: &[&str]) -> String {
    URL_SAFE_NO_PAD.encode(parts.join("\u{1f}"))
}

pub fn decode_cursor(field: &str, cursor: &str) -> AppResult<Vec<String>> {
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| AppError::bad_input(field, "not a cursor this server issued"))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| AppError::bad_input(field, "not a cursor this server issued"))?;
    Ok(text.split('\u{1f}').map(str::to_owned).collect())
}

/// One page of rows, already trimmed, with what the connection needs to describe it.
pub struct Page<T> {
    pub items: Vec<(String, T)>,
    pub has_next_page: bool,
    pub has_previous_page: bool,
    pub total_count: u64,
}

impl<T> Page<T> {
    /// Builds a page from rows fetched with `args.fetch_limit()`.
    pub fn from_rows(
        rows: Vec<T>,
        args: &PageArgs,
        total_count: u64,
        cursor_of: impl Fn(&T) -> String,
    ) -> Self {
        let has_next_page = rows.len() as u64 > args.first;
        let items = rows
            .into_iter()
            .take(args.first as usize)
            .map(|row| (cursor_of(&row), row))
            .collect();
        Self {
            items,
            has_next_page,
            has_previous_page: args.after.is_some(),
            total_count,
        }
    }

    pub fn page_info(&self) -> PageInfo {
        PageInfo {
            has_next_page: self.has_next_page,
            has_previous_page: self.has_previous_page,
            start_cursor: self.items.first().map(|(c, _)| c.clone()),
            end_cursor: self.items.last().map(|(c, _)| c.clone()),
        }
    }
}

/// Defines `$conn` and `$edge` GraphQL types for node type `$node` (which must be `Clone` and
/// constructible from the page's row type through `From`).
#[macro_export]
macro_rules! connection_type {
    ($conn:ident, $edge:ident, $node:ty, $row:ty) => {
        pub struct $conn(pub $crate::graphql::pagination::Page<$row>);

        #[derive(async_graphql::SimpleObject)]
        pub struct $edge {
            pub cursor: String,
            pub node: $node,
        }

        #[async_graphql::Object]
        impl $conn {
            async fn edges(&self) -> Vec<$edge> {
                self.0
                    .items
                    .iter()
                    .map(|(cursor, row)| $edge {
                        cursor: cursor.clone(),
                        node: <$node>::from(row.clone()),
                    })
                    .collect()
            }
            async fn nodes(&self) -> Vec<$node> {
                self.0
                    .items
                    .iter()
                    .map(|(_, row)| <$node>::from(row.clone()))
                    .collect()
            }
            async fn page_info(&self) -> $crate::graphql::pagination::PageInfo {
                self.0.page_info()
            }
            async fn total_count(&self) -> i64 {
                i64::try_from(self.0.total_count).unwrap_or(i64::MAX)
            }
        }
    };
}
