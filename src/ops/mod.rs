//! Operations with their input validation, shared by the CLI and (later) the
//! admin API, so each operation has exactly one implementation.

pub mod api_keys;
pub mod endpoints;
pub mod merchants;
pub mod payments;

use crate::error::{AppError, AppResult};

/// A plain text field: 1 to `max` bytes, not blank, no control characters
/// (a NUL could not be stored on Postgres; a newline would forge log lines).
pub(crate) fn text(field: &str, v: &str, max: usize) -> AppResult<()> {
    if v.trim().is_empty() || v.len() > max || v.chars().any(char::is_control) {
        return Err(AppError::bad_input(format!(
            "{field}: expected 1 to {max} characters, no control characters"
        )));
    }
    Ok(())
}
