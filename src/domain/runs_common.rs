//! Input rules shared by flow runs and task runs.
use chrono::{DateTime, SubsecRound, Utc};

use super::validate;
use crate::error::{AppError, AppResult};

pub const MAX_TAGS: usize = 50;
pub const TAG_MAX: usize = 100;

/// Tags: trimmed, non-empty, at most 100 characters each and 50 in all; duplicates dropped,
/// order kept.
pub fn tags(field: &str, tags: Option<Vec<String>>) -> AppResult<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for tag in tags.unwrap_or_default() {
        let tag = validate::name(field, &tag, TAG_MAX)?;
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    if out.len() > MAX_TAGS {
        return Err(AppError::bad_input(
            field,
            format!("at most {MAX_TAGS} tags"),
        ));
    }
    Ok(out)
}

/// Parameters are a JSON object; absent means `{}`.
pub fn parameters(field: &str, value: Option<serde_json::Value>) -> AppResult<serde_json::Value> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(serde_json::json!({})),
        Some(v @ serde_json::Value::Object(_)) => Ok(v),
        Some(_) => Err(AppError::bad_input(field, "must be a JSON object")),
    }
}

pub fn tags_from_json(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The current time to the microsecond, the precision both databases keep: what a mutation
/// returns is then exactly what a later read gives.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A client's time to the microsecond (see [`now`]).
pub fn micros(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}
