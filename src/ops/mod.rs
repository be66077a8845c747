//! Operations with their input validation, shared by the CLI and (later) the
//! admin API, so each operation has exactly one implementation.

pub mod merchants;
pub mod payments;
