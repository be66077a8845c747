//! payhook: the outbound webhook delivery worker of a crypto payment gateway.
//!
//! Data flows one way: `ops` and `scanner` change payments and write events
//! (through `store`), `delivery` sends them. `cli` is the shell surface.
#![forbid(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod config;
pub mod console;
pub mod delivery;
pub mod demo;
pub mod domain;
pub mod error;
pub mod events;
pub mod ids;
pub mod logging;
pub mod metrics;
pub mod money;
pub mod ops;
pub mod pipeline;
pub mod scanner;
pub mod sealing;
pub mod store;
pub mod time;
pub mod urls;
pub mod web;
