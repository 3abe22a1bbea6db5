//! Input rules shared by the domain functions. Each failure names the field.
use crate::error::{AppError, AppResult};

pub fn email(field: &str, value: &str) -> AppResult<String> {
    let value = value.trim().to_lowercase();
    let valid = value.len() <= 254
        && !value.chars().any(char::is_whitespace)
        && match value.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains("..")
            }
            None => false,
        };
    if valid {
        Ok(value)
    } else {
        Err(AppError::bad_input(field, "must be a valid email address"))
    }
}

pub fn password(field: &str, value: &str) -> AppResult<()> {
    let len = value.chars().count();
    if len < 8 {
        return Err(AppError::bad_input(field, "must be at least 8 characters"));
    }
    if len > 1024 {
        return Err(AppError::bad_input(
            field,
            "must be at most 1024 characters",
        ));
    }
    Ok(())
}

/// Handles are URL-safe: 2–39 characters of `a-z`, `0-9`, `-` and `_`, starting with a letter or
/// digit. They are compared case-insensitively, so they are stored lower-cased.
pub fn handle(field: &str, value: &str) -> AppResult<String> {
    let value = value.trim().to_lowercase();
    let len = value.chars().count();
    let valid = (2..=39).contains(&len)
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && value.starts_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        Ok(value)
    } else {
        Err(AppError::bad_input(
            field,
            "must be 2-39 characters of letters, digits, '-' or '_', starting with a letter or digit",
        ))
    }
}

/// A required display name: trimmed, 1..=max characters, no control characters.
pub fn name(field: &str, value: &str, max: usize) -> AppResult<String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(AppError::bad_input(field, "must not be empty"));
    }
    bounded_text(field, value, max)
}

/// Optional free text: at most `max` characters; blank becomes `None`.
pub fn optional_text(field: &str, value: Option<&str>, max: usize) -> AppResult<Option<String>> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => bounded_text(field, v, max).map(Some),
    }
}

fn bounded_text(field: &str, value: &str, max: usize) -> AppResult<String> {
    if value.chars().count() > max {
        return Err(AppError::bad_input(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(AppError::bad_input(
            field,
            "must not contain control characters",
        ));
    }
    Ok(value.to_owned())
}
