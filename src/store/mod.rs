//! Everything SQL. One module per table family; the rest of payhook calls
//! these functions and never writes SQL of its own. The store writes what
//! it is told (rows, plans) and decides nothing about delivery.
//!
//! Two backends: each statement is an [`sql::Sql`] holding the text SQLite
//! runs and the text Postgres runs, side by side (once when they agree).
//! `jobs` owns the queue's tables (apalis'), `outcomes` writes the plan of
//! a batch of finished attempts.

pub mod api_keys;
pub mod audit;
pub mod chains;
pub mod dead_letters;
pub mod deliveries;
pub mod endpoint_health;
pub mod endpoints;
pub mod events;
pub mod jobs;
pub mod merchants;
pub mod operator;
pub mod outcomes;
pub mod payments;
pub mod retention;
pub mod sessions;
pub mod sql;
pub mod stats;
pub mod targets;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use self::jobs::QueueSignal;
pub use self::sql::{query, Db, Sql, Tx};
use crate::config::Config;
use crate::error::{AppError, AppResult};
use crate::sealing::KeyRing;
use crate::urls::redact_url;
use std::sync::Arc;

/// The handle every part of payhook shares: connection pools, plus the
/// signal that wakes local queue workers when a transaction made work due.
///
/// Three pools, so no path waits behind another in a pool queue: `pool` for
/// reads and one-off writes (API, CLI, scanner, attempt context), `queue`
/// for the queue workers' fetch/ack/heartbeat, `writer` for the outcome
/// writer's batched commits. On SQLite `queue` and `writer` are one
/// connection: SQLite has one writer at a time anyway, and two connections
/// taking turns wait in SQLite's busy handler, which sleeps 1, 2, 5, 10 …
/// ms between tries, where the pool's queue hands the connection over at
/// once (backlog drain 6,600 → 8,400/s, docs/benchmarks.md).
#[derive(Clone)]
pub struct Store {
    /// The SQLite database file (for the free-space check), if SQLite.
    file: Option<std::path::PathBuf>,
    pool: Db,
    queue: Db,
    writer: Db,
    signal: QueueSignal,
    keys: Option<Arc<KeyRing>>,
}

impl Store {
    /// Opens the database named by `database.url`: `sqlite://…` or
    /// `postgres://…`.
    pub async fn connect(cfg: &Config) -> AppResult<Store> {
        let mut store = if cfg.is_postgres() {
            Self::connect_postgres(cfg)?
        } else {
            Self::connect_sqlite(cfg)?
        };
        store.keys = cfg.key_ring()?.map(Arc::new);
        // Connect now, so a bad path, host or password fails at start-up.
        store.ping().await.map_err(|e| {
            AppError::internal(format!(
                "cannot open database {}: {e}",
                redact_url(&cfg.database.url)
            ))
        })?;
        Ok(store)
    }

    /// Opens the database and applies migrations (idempotent and fast).
    pub async fn open(cfg: &Config) -> AppResult<Store> {
        let store = Store::connect(cfg).await?;
        store.migrate().await?;
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
        owner_only(opts.get_filename(), cfg.database.url.contains("mode=rwc"))?;
        let open = |size: u32| {
            Db::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(size)
                    // A connection to a local file does not go stale; the
                    // ping would cost a hand-off to the connection's thread
                    // (~75 µs here) on every checkout.
                    .test_before_acquire(false)
                    .acquire_timeout(Duration::from_secs(60))
                    .connect_lazy_with(opts.clone()),
            )
        };
        let writer = open(1);
        Ok(Store {
            file: Some(opts.get_filename().to_path_buf()),
            pool: open(cfg.database.max_connections),
            queue: writer.clone(),
            writer,
            signal: QueueSignal::default(),
            keys: None,
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
            file: None,
            pool: open(cfg.database.max_connections),
            queue: open(4),
            writer: open(2),
            signal: QueueSignal::default(),
            keys: None,
        })
    }

    pub fn is_postgres(&self) -> bool {
        self.pool.is_postgres()
    }

    /// Connections of the outcome writer's pool: how many of its batches
    /// can be written at once.
    pub fn writer_connections(&self) -> usize {
        match &self.writer {
            Db::Sqlite(p) => p.options().get_max_connections() as usize,
            Db::Pg(p) => p.options().get_max_connections() as usize,
        }
    }

    /// Creates or upgrades the schema: the queue's own tables first (apalis
    /// tracks them in `_sqlx_migrations`), then payhook's (tracked apart, in
    /// `_payhook_migrations`), whose later files tune the queue's tables.
    pub async fn migrate(&self) -> AppResult<()> {
        self.migrate_to(i64::MAX).await?;
        // Rows written before secrets were sealed at rest are sealed now.
        if self.keys.is_some() {
            let unsealed = endpoints::Reseal::Unsealed;
            endpoints::reseal(self, unsealed, crate::time::now_ms()).await?;
        }
        Ok(())
    }

    /// Applies payhook's migrations up to `version` (and the queue's
    /// tables), as a release that ended there would have: upgrade tests
    /// build a previous release's schema with it.
    pub async fn migrate_to(&self, version: i64) -> AppResult<()> {
        jobs::create_queue_tables(&self.pool).await?;
        match &self.pool {
            Db::Sqlite(pool) => {
                let mut migrator = sqlx::migrate!("./migrations/sqlite");
                migrator.dangerous_set_table_name("_payhook_migrations");
                migrator.run_to(version, pool).await?;
            }
            Db::Pg(pool) => {
                let mut migrator = sqlx::migrate!("./migrations/postgres");
                migrator.dangerous_set_table_name("_payhook_migrations");
                migrator.run_to(version, pool).await?;
            }
        }
        Ok(())
    }

    /// The keys that seal and open stored secrets; an error saying how to
    /// make one when `secrets.key` is not configured.
    pub fn keys(&self) -> AppResult<&KeyRing> {
        self.keys
            .as_deref()
            .ok_or_else(|| AppError::config(crate::config::MISSING_KEY))
    }

    /// The general pool (reads, API, CLI, scanner).
    pub fn db(&self) -> &Db {
        &self.pool
    }

    /// Where a one-off write (no transaction) runs: on SQLite the writer
    /// connection every write transaction takes (see `begin_write`).
    pub fn write_db(&self) -> &Db {
        match &self.pool {
            Db::Sqlite(_) => &self.writer,
            Db::Pg(_) => &self.pool,
        }
    }

    /// The queue workers' pool.
    pub fn queue_db(&self) -> &Db {
        &self.queue
    }

    pub fn signal(&self) -> &QueueSignal {
        &self.signal
    }

    /// A write transaction (on SQLite it holds the write lock from BEGIN).
    /// On SQLite every write transaction takes the one writer connection,
    /// so writers queue in the pool, handed over the moment the last one
    /// commits, instead of sleeping in SQLite's busy handler.
    pub async fn begin_write(&self) -> AppResult<Tx> {
        Ok(self.write_db().begin(true).await?)
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

    /// Whether the database takes a write now (the readiness probe): one
    /// tiny row, upserted in a write transaction.
    pub async fn probe_write(&self, now: i64) -> AppResult<()> {
        const BEAT: Sql = Sql::both(
            "INSERT INTO payhook_heartbeat (id, at) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET at = excluded.at",
        );
        let mut tx = self.begin_write().await?;
        query(BEAT).bind(now).execute(&mut tx).await?;
        self.commit(tx, false).await
    }

    /// (available, total) bytes on the volume of the SQLite database file;
    /// `None` on Postgres (its server's disk is not visible from here; the
    /// write probe covers it).
    pub fn disk_space(&self) -> Option<std::io::Result<(u64, u64)>> {
        let file = self.file.as_ref()?;
        let dir = match file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        Some(fs4::statvfs(dir).map(|s| (s.available_space(), s.total_space())))
    }

    pub async fn ping(&self) -> AppResult<()> {
        query(Sql::both("SELECT 1")).execute(&self.pool).await?;
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

/// The SQLite database file and its `-wal`/`-shm` companions hold secrets
/// (sealed) and payment data: the file is created owner-only (0600) before
/// SQLite opens it (SQLite gives the companions the file's permissions),
/// and an existing one is made owner-only.
fn owner_only(path: &std::path::Path, create: bool) -> AppResult<()> {
    let name = path.to_string_lossy();
    if name.is_empty() || name == ":memory:" || name.starts_with("file:") {
        return Ok(());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let created = if create {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map(|_| ())
        } else {
            Err(std::io::ErrorKind::AlreadyExists.into())
        };
        match created {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                for suffix in ["", "-wal", "-shm"] {
                    let file = format!("{name}{suffix}");
                    let _ = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600));
                }
            }
            Err(e) => {
                return Err(AppError::internal(format!(
                    "cannot create database file {name}: {e}"
                )))
            }
        }
    }
    Ok(())
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
