//! Parsed GraphQL documents, kept by query text. Dashboards and agents send the same few
//! queries over and over, and async-graphql's parser costs about a tenth of a 50-run page's CPU;
//! a cached document is cloned instead (its names are shared `Arc<str>`s).
use std::sync::Arc;

use async_graphql::parser::types::ExecutableDocument;
use quick_cache::sync::Cache;

/// Distinct documents kept; the least used go first.
const CAPACITY: usize = 1024;
/// Longer queries are parsed every time, so the cache holds at most CAPACITY × this much text.
const MAX_CACHED_QUERY_BYTES: usize = 16 * 1024;

#[derive(Clone)]
pub struct DocumentCache {
    documents: Arc<Cache<String, Arc<ExecutableDocument>>>,
}

impl Default for DocumentCache {
    fn default() -> Self {
        Self {
            documents: Arc::new(Cache::new(CAPACITY)),
        }
    }
}

impl DocumentCache {
    /// The parsed document of `query`; parse errors are not kept.
    pub fn parse(&self, query: &str) -> async_graphql::parser::Result<ExecutableDocument> {
        if query.len() > MAX_CACHED_QUERY_BYTES {
            return async_graphql::parser::parse_query(query);
        }
        if let Some(document) = self.documents.get(query) {
            return Ok(ExecutableDocument::clone(&document));
        }
        let document = async_graphql::parser::parse_query(query)?;
        self.documents
            .insert(query.to_owned(), Arc::new(document.clone()));
        Ok(document)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_cached_document_is_the_one_a_fresh_parse_gives() {
        let cache = DocumentCache::default();
        let query = "query Q($id: UUID!) { flowRun(id: $id) { id name state { type } } }";
        let first = cache.parse(query).unwrap();
        let second = cache.parse(query).unwrap();
        let fresh = async_graphql::parser::parse_query(query).unwrap();
        assert_eq!(format!("{first:?}"), format!("{fresh:?}"));
        assert_eq!(format!("{second:?}"), format!("{fresh:?}"));
        assert_eq!(cache.documents.len(), 1);
    }

    #[test]
    fn parse_errors_are_returned_every_time_and_not_kept() {
        let cache = DocumentCache::default();
        assert!(cache.parse("{ flowRun(").is_err());
        assert!(cache.parse("{ flowRun(").is_err());
        assert_eq!(cache.documents.len(), 0);
    }

    #[test]
    fn long_queries_are_parsed_but_not_kept() {
        let cache = DocumentCache::default();
        let query = format!("{{ __typename {} }}", " ".repeat(MAX_CACHED_QUERY_BYTES));
        assert!(cache.parse(&query).is_ok());
        assert_eq!(cache.documents.len(), 0);
    }
}
