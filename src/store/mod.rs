//! Everything SQL. One module per table family; the rest of payhook calls
//! these functions and never writes SQL of its own.
//!
//! Statements use `$1`-style placeholders and portable SQL (`RETURNING`,
//! `ON CONFLICT`) that SQLite and Postgres both accept, so the Postgres
//! backend adds a pool variant here rather than a second copy of the queries.
//! Write transactions on SQLite start with `BEGIN IMMEDIATE`, so two writers
//! queue on `busy_timeout` instead of failing a lock upgrade.

pub mod chains;
pub mod dead_letters;
pub mod deliveries;
pub mod endpoints;
pub mod events;
pub mod merchants;
pub mod payments;

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use crate::config::Config;
use crate::delivery::queue::QueueSignal;
use crate::error::{AppError, AppResult};

pub type Tx = Transaction<'static, Sqlite>;

/// The handle every part of payhook shares: connection pools, plus the
/// signal that wakes local queue workers when a transaction made work due.
///
/// Three pools, so no path waits behind another in a pool queue: `pool` for
/// reads and one-off writes (API, CLI, scanner, attempt context), `queue`
/// for the queue workers' fetch/ack/heartbeat, `writer` (one connection)
/// for the outcome writer's batched commits.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    queue: SqlitePool,
    writer: SqlitePool,
    signal: QueueSignal,
}

impl Store {
    /// Opens the database named by `database.url`. Every connection gets WAL,
    /// a busy timeout and `synchronous = NORMAL` (see README, "Durability").
    pub async fn connect(cfg: &Config) -> AppResult<Store> {
        if cfg.is_postgres() {
            return Err(AppError::config(
                "database.url: the Postgres backend is not built yet; use sqlite://… for now",
            ));
        }
        let opts = SqliteConnectOptions::from_str(&cfg.database.url)
            .map_err(|e| {
                AppError::config(format!(
                    "database.url: expected sqlite://PATH[?mode=rwc] or postgres://…, got {:?} ({e})",
                    cfg.database.url
                ))
            })?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true)
            .pragma("temp_store", "MEMORY");
        let open = |size: u32| {
            SqlitePoolOptions::new()
                .max_connections(size)
                .acquire_timeout(Duration::from_secs(60))
                .connect_lazy_with(opts.clone())
        };
        let store = Store {
            pool: open(cfg.database.max_connections),
            queue: open(2),
            writer: open(1),
            signal: QueueSignal::default(),
        };
        // Connect now, so a bad path or permission fails at start-up.
        store.pool.acquire().await.map_err(|e| {
            AppError::internal(format!(
                "cannot open database {}: {e}",
                redact_url(&cfg.database.url)
            ))
        })?;
        Ok(store)
    }

    /// Applies payhook's migrations and the queue's own tables.
    pub async fn migrate(&self) -> AppResult<()> {
        // payhook's migrations are tracked in their own table, apart from
        // the queue's (apalis keeps its own in `_sqlx_migrations`).
        let mut migrator = sqlx::migrate!("./migrations/sqlite");
        migrator.dangerous_set_table_name("_payhook_migrations");
        migrator.run(&self.pool).await?;
        crate::delivery::queue::setup(&self.pool).await?;
        Ok(())
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The queue workers' pool.
    pub fn queue_pool(&self) -> &SqlitePool {
        &self.queue
    }

    pub fn signal(&self) -> &QueueSignal {
        &self.signal
    }

    /// A write transaction that holds the write lock from its first statement.
    pub async fn begin_write(&self) -> AppResult<Tx> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// A write transaction on the outcome writer's own connection.
    pub async fn begin_writer(&self) -> AppResult<Tx> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Commits, then wakes local workers if the transaction queued jobs.
    pub async fn commit(&self, tx: Tx, queued_jobs: bool) -> AppResult<()> {
        tx.commit().await?;
        if queued_jobs {
            self.signal.wake();
        }
        Ok(())
    }

    pub async fn ping(&self) -> AppResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pools, waiting at most a few seconds for connections still
    /// checked out (a worker left behind by a bounded stop may hold one).
    pub async fn close(&self) {
        let all = async {
            self.pool.close().await;
            self.queue.close().await;
            self.writer.close().await;
        };
        let _ = tokio::time::timeout(Duration::from_secs(3), all).await;
    }
}

/// Hides a password in a database URL before it reaches a message.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => raw.to_string(),
    }
}

/// Pages of list routes: `limit` rows after `cursor` (an id), newest first.
#[derive(Debug, Clone)]
pub struct Page {
    pub limit: i64,
    pub cursor: Option<String>,
}

impl Page {
    pub const MAX: i64 = 500;

    pub fn new(limit: Option<i64>, cursor: Option<String>) -> AppResult<Page> {
        let limit = limit.unwrap_or(50);
        if !(1..=Page::MAX).contains(&limit) {
            return Err(AppError::bad_input(format!(
                "limit: expected a whole number from 1 to {}, got {limit}",
                Page::MAX
            )));
        }
        Ok(Page { limit, cursor })
    }
}
