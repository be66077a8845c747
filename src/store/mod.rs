//! Everything SQL. One module per table family; the rest of payhook calls
//! these functions and never writes SQL of its own.
//!
//! Two backends, one set of statements: `$1`-style placeholders and portable
//! SQL (`RETURNING`, `ON CONFLICT`, `UPDATE … FROM`) that SQLite and Postgres
//! both accept, with the two SQLite-only spellings rewritten by [`dialect`].
//! Each statement runs through [`on_db!`](crate::on_db) or
//! [`on_tx!`](crate::on_tx), which pick the backend's native driver.

pub mod chains;
pub mod dead_letters;
pub mod deliveries;
pub mod dialect;
pub mod endpoints;
pub mod events;
pub mod merchants;
pub mod payments;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};

use crate::config::Config;
use crate::delivery::queue::QueueSignal;
use crate::error::{AppError, AppResult};

/// A transaction on either backend. Store functions run their statements on
/// it with [`on_tx!`](crate::on_tx).
pub enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Pg(Transaction<'static, Postgres>),
}

impl Tx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(t) => t.commit().await,
            Tx::Pg(t) => t.commit().await,
        }
    }
}

/// A pool of either backend, for [`on_db!`](crate::on_db).
#[derive(Clone)]
pub enum Db {
    Sqlite(SqlitePool),
    Pg(PgPool),
}

impl Db {
    pub async fn close(&self) {
        match self {
            Db::Sqlite(p) => p.close().await,
            Db::Pg(p) => p.close().await,
        }
    }

    async fn begin(&self, immediate: bool) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            // IMMEDIATE takes SQLite's write lock at BEGIN, so two writers
            // queue on busy_timeout instead of failing a lock upgrade.
            Db::Sqlite(p) if immediate => Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            Db::Sqlite(p) => Tx::Sqlite(p.begin().await?),
            Db::Pg(p) => Tx::Pg(p.begin().await?),
        })
    }
}

/// Runs `$body` with `$e` bound to the pool of the store's backend and `$pg`
/// to whether that is Postgres (for [`sql!`](crate::sql)).
#[macro_export]
macro_rules! on_db {
    ($db:expr, |$e:ident, $pg:ident| $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite($e) => {
                let $pg = false;
                $body
            }
            $crate::store::Db::Pg($e) => {
                let $pg = true;
                $body
            }
        }
    };
}

/// Runs `$body` with `$c` bound to the transaction's connection.
#[macro_export]
macro_rules! on_tx {
    ($tx:expr, |$c:ident, $pg:ident| $body:expr) => {
        match $tx {
            $crate::store::Tx::Sqlite(t) => {
                let $c = &mut **t;
                let $pg = false;
                $body
            }
            $crate::store::Tx::Pg(t) => {
                let $c = &mut **t;
                let $pg = true;
                $body
            }
        }
    };
}

/// A statement's text for the backend: as written on SQLite, rewritten once
/// (see [`dialect`]) and cached on Postgres. One call site, one text.
#[macro_export]
macro_rules! sql {
    ($pg:expr, $text:expr $(,)?) => {{
        static PG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let text: &'static str = if $pg {
            PG.get_or_init(|| $crate::store::dialect::to_postgres($text))
                .as_str()
        } else {
            $text
        };
        text
    }};
}

/// The handle every part of payhook shares: connection pools, plus the
/// signal that wakes local queue workers when a transaction made work due.
///
/// Three pools, so no path waits behind another in a pool queue: `pool` for
/// reads and one-off writes (API, CLI, scanner, attempt context), `queue`
/// for the queue workers' fetch/ack/heartbeat, `writer` for the outcome
/// writer's batched commits.
#[derive(Clone)]
pub struct Store {
    pool: Db,
    queue: Db,
    writer: Db,
    signal: QueueSignal,
}

impl Store {
    /// Opens the database named by `database.url`: `sqlite://…` or
    /// `postgres://…`.
    pub async fn connect(cfg: &Config) -> AppResult<Store> {
        let store = if cfg.is_postgres() {
            Self::connect_postgres(cfg)?
        } else {
            Self::connect_sqlite(cfg)?
        };
        // Connect now, so a bad path, host or password fails at start-up.
        store.ping().await.map_err(|e| {
            AppError::internal(format!(
                "cannot open database {}: {e}",
                redact_url(&cfg.database.url)
            ))
        })?;
        Ok(store)
    }

    /// Every SQLite connection gets WAL, a busy timeout and
    /// `synchronous = NORMAL` (see README, "Durability").
    fn connect_sqlite(cfg: &Config) -> AppResult<Store> {
        let opts = SqliteConnectOptions::from_str(&cfg.database.url)
            .map_err(|e| {
                AppError::config(format!(
                    "database.url: expected sqlite://PATH[?mode=rwc] or postgres://…, got {:?} ({e})",
                    redact_url(&cfg.database.url)
                ))
            })?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true)
            .pragma("temp_store", "MEMORY");
        let open = |size: u32| {
            Db::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(size)
                    .acquire_timeout(Duration::from_secs(60))
                    .connect_lazy_with(opts.clone()),
            )
        };
        Ok(Store {
            pool: open(cfg.database.max_connections),
            queue: open(2),
            writer: open(1),
            signal: QueueSignal::default(),
        })
    }

    /// Postgres pools reconnect by themselves after an outage: a checkout
    /// fails fast (acquire timeout) while the server is away, and the next
    /// one after it is back gets a fresh connection.
    fn connect_postgres(cfg: &Config) -> AppResult<Store> {
        let opts = PgConnectOptions::from_str(&cfg.database.url).map_err(|e| {
            AppError::config(format!(
                "database.url: expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE, got {:?} ({})",
                redact_url(&cfg.database.url),
                e.to_string().replace(&cfg.database.url, "…")
            ))
        })?;
        let open = |size: u32| {
            Db::Pg(
                PgPoolOptions::new()
                    .max_connections(size)
                    .acquire_timeout(Duration::from_secs(10))
                    .test_before_acquire(true)
                    .connect_lazy_with(opts.clone()),
            )
        };
        Ok(Store {
            pool: open(cfg.database.max_connections),
            queue: open(4),
            writer: open(2),
            signal: QueueSignal::default(),
        })
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.pool, Db::Pg(_))
    }

    /// Applies payhook's migrations and the queue's own tables.
    pub async fn migrate(&self) -> AppResult<()> {
        // payhook's migrations are tracked in their own table, apart from
        // the queue's (apalis keeps its own in `_sqlx_migrations`).
        match &self.pool {
            Db::Sqlite(pool) => {
                let mut migrator = sqlx::migrate!("./migrations/sqlite");
                migrator.dangerous_set_table_name("_payhook_migrations");
                migrator.run(pool).await?;
            }
            Db::Pg(pool) => {
                let mut migrator = sqlx::migrate!("./migrations/postgres");
                migrator.dangerous_set_table_name("_payhook_migrations");
                migrator.run(pool).await?;
            }
        }
        crate::delivery::queue::setup(&self.pool).await?;
        Ok(())
    }

    /// The general pool (reads, API, CLI, scanner).
    pub fn db(&self) -> &Db {
        &self.pool
    }

    /// The queue workers' pool.
    pub fn queue_db(&self) -> &Db {
        &self.queue
    }

    pub fn signal(&self) -> &QueueSignal {
        &self.signal
    }

    /// A write transaction (on SQLite it holds the write lock from BEGIN).
    pub async fn begin_write(&self) -> AppResult<Tx> {
        Ok(self.pool.begin(true).await?)
    }

    /// A transaction for consistent reads.
    pub async fn begin_read(&self) -> AppResult<Tx> {
        Ok(self.pool.begin(false).await?)
    }

    /// A write transaction on the outcome writer's own pool.
    pub async fn begin_writer(&self) -> AppResult<Tx> {
        Ok(self.writer.begin(true).await?)
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
        on_db!(&self.pool, |db, _pg| sqlx::query("SELECT 1")
            .execute(db)
            .await
            .map(|r| r.rows_affected()))?;
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

/// A list of ids as the JSON the statements read with
/// `SELECT value ->> 'id' FROM json_each($1)` on both backends.
pub(crate) fn id_list(ids: &[&str]) -> String {
    let rows: Vec<serde_json::Value> = ids
        .iter()
        .map(|id| serde_json::json!({ "id": id }))
        .collect();
    serde_json::Value::Array(rows).to_string()
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
