//! Integration tests, compiled as ONE test binary (faster to link). Real
//! receivers on 127.0.0.1, real SQLite files, the real `payhook` binary.

mod pg_database;
mod support;

mod admin;
mod browser;
mod cli;
mod config_errors;
mod console;
mod crash;
mod delivery;
mod endpoints;
mod evm;
mod faults;
mod ganache;
mod logs;
mod proxy;
mod retention;
mod retries;
mod safety;
mod scale;
mod scanner;
mod sealed;
mod stats;
mod tokens;
