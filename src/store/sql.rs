//! The one dialect layer. A statement is an [`Sql`]: its SQLite text and
//! its Postgres text, written out side by side where they differ
//! ([`Sql::each`]) or once where both backends run the same words
//! ([`Sql::both`]). Nothing rewrites SQL at run time: `grep` finds the text
//! that runs.
//!
//! The two spellings that differ most often in batch statements:
//! - a JSON array bound as one text parameter, read row by row: SQLite
//!   `json_each($1)`; Postgres `payhook_json_rows($1::jsonb)`, which is
//!   `jsonb_array_elements` planned as one row (migration 0003: with the
//!   built-in's 100-row estimate the planner scans whole tables);
//! - a status column hidden from the planner, so a batch is driven by the
//!   primary key: SQLite `+d.status` (no index on the expression); Postgres
//!   `(d.status || '')` (no index and no statistics: a status the stale
//!   statistics call rare made it scan every such row per batch element).
//!
//! A statement runs with [`query`]`(SQL).bind(…)…` on a pool ([`Db`]) or an
//! open transaction ([`Tx`]); the backend's native driver runs it.

use sqlx::postgres::{PgArguments, PgRow};
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Arguments, Decode, FromRow, PgPool, Postgres, Sqlite, SqlitePool, Transaction, Type};

/// A statement: the text each backend runs.
#[derive(Debug, Clone, Copy)]
pub struct Sql {
    sqlite: &'static str,
    postgres: &'static str,
}

impl Sql {
    /// A statement both backends run as written.
    pub const fn both(text: &'static str) -> Sql {
        Sql {
            sqlite: text,
            postgres: text,
        }
    }

    /// A statement spelled differently on each backend.
    pub const fn each(sqlite: &'static str, postgres: &'static str) -> Sql {
        Sql { sqlite, postgres }
    }
}

/// A pool of either backend.
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

    pub(crate) async fn begin(&self, immediate: bool) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            // IMMEDIATE takes SQLite's write lock at BEGIN, so two writers
            // queue on busy_timeout instead of failing a lock upgrade.
            Db::Sqlite(p) if immediate => Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            Db::Sqlite(p) => Tx::Sqlite(p.begin().await?),
            Db::Pg(p) => Tx::Pg(p.begin().await?),
        })
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Pg(_))
    }
}

/// A transaction on either backend.
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

/// Where a statement runs: a pool, or an open transaction.
pub enum On<'c> {
    Db(&'c Db),
    Tx(&'c mut Tx),
}

impl<'c> From<&'c Db> for On<'c> {
    fn from(db: &'c Db) -> Self {
        On::Db(db)
    }
}

impl<'c> From<&'c mut Tx> for On<'c> {
    fn from(tx: &'c mut Tx) -> Self {
        On::Tx(tx)
    }
}

/// A bound value. payhook stores integers (times in unix ms, counts) and
/// text (ids, statuses, JSON, decimal amounts); nothing else.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Int(Option<i64>),
    Text(Option<String>),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Arg::Int(v)
    }
}
impl From<bool> for Arg {
    fn from(v: bool) -> Self {
        Arg::Int(Some(v as i64))
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(Some(v))
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(Some(v.to_string()))
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Self {
        Arg::Text(Some(v.clone()))
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        Arg::Text(v)
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Self {
        Arg::Text(v.map(str::to_string))
    }
}
impl From<&Option<String>> for Arg {
    fn from(v: &Option<String>) -> Self {
        Arg::Text(v.clone())
    }
}

/// A row type both backends can decode (`#[derive(sqlx::FromRow)]`).
pub trait Row: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin {}
impl<T> Row for T where T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{}

/// A single-column value both backends can decode.
pub trait Scalar:
    for<'r> Decode<'r, Sqlite>
    + Type<Sqlite>
    + for<'r> Decode<'r, Postgres>
    + Type<Postgres>
    + Send
    + Unpin
{
}
impl<T> Scalar for T where
    T: for<'r> Decode<'r, Sqlite>
        + Type<Sqlite>
        + for<'r> Decode<'r, Postgres>
        + Type<Postgres>
        + Send
        + Unpin
{
}

/// A statement with its bound values, ready to run.
#[must_use = "a query does nothing until it is run"]
pub struct Query {
    sql: Sql,
    args: Vec<Arg>,
}

/// Starts a statement: `query(SQL).bind(a).bind(b).execute(&mut tx)`.
pub fn query(sql: Sql) -> Query {
    Query {
        sql,
        args: Vec::new(),
    }
}

type Encoded<A> = Result<A, sqlx::Error>;

impl Query {
    /// Binds the next `$N`.
    pub fn bind(mut self, v: impl Into<Arg>) -> Self {
        self.args.push(v.into());
        self
    }

    fn sqlite_args(&self) -> Encoded<SqliteArguments> {
        let mut a = SqliteArguments::default();
        for arg in &self.args {
            match arg {
                Arg::Int(v) => a.add(*v).map_err(sqlx::Error::Encode)?,
                Arg::Text(v) => a.add(v.clone()).map_err(sqlx::Error::Encode)?,
            }
        }
        Ok(a)
    }

    fn pg_args(&self) -> Encoded<PgArguments> {
        let mut a = PgArguments::default();
        for arg in &self.args {
            match arg {
                Arg::Int(v) => a.add(*v).map_err(sqlx::Error::Encode)?,
                Arg::Text(v) => a.add(v.clone()).map_err(sqlx::Error::Encode)?,
            }
        }
        Ok(a)
    }

    /// Runs it; returns the number of rows it changed.
    pub async fn execute<'c>(self, on: impl Into<On<'c>>) -> Result<u64, sqlx::Error> {
        let lite = || Ok::<_, sqlx::Error>(sqlx::query_with(self.sql.sqlite, self.sqlite_args()?));
        let pg = || Ok::<_, sqlx::Error>(sqlx::query_with(self.sql.postgres, self.pg_args()?));
        Ok(match on.into() {
            On::Db(Db::Sqlite(p)) => lite()?.execute(p).await?.rows_affected(),
            On::Tx(Tx::Sqlite(t)) => lite()?.execute(&mut **t).await?.rows_affected(),
            On::Db(Db::Pg(p)) => pg()?.execute(p).await?.rows_affected(),
            On::Tx(Tx::Pg(t)) => pg()?.execute(&mut **t).await?.rows_affected(),
        })
    }

    /// Every row, as `T`.
    pub async fn fetch_all<'c, T: Row>(self, on: impl Into<On<'c>>) -> Result<Vec<T>, sqlx::Error> {
        let lite = || {
            Ok::<_, sqlx::Error>(sqlx::query_as_with::<_, T, _>(
                self.sql.sqlite,
                self.sqlite_args()?,
            ))
        };
        let pg = || {
            Ok::<_, sqlx::Error>(sqlx::query_as_with::<_, T, _>(
                self.sql.postgres,
                self.pg_args()?,
            ))
        };
        match on.into() {
            On::Db(Db::Sqlite(p)) => lite()?.fetch_all(p).await,
            On::Tx(Tx::Sqlite(t)) => lite()?.fetch_all(&mut **t).await,
            On::Db(Db::Pg(p)) => pg()?.fetch_all(p).await,
            On::Tx(Tx::Pg(t)) => pg()?.fetch_all(&mut **t).await,
        }
    }

    /// The first row, if any. (payhook's single-row reads are by key, so
    /// reading every row the statement returns is reading one.)
    pub async fn fetch_optional<'c, T: Row>(
        self,
        on: impl Into<On<'c>>,
    ) -> Result<Option<T>, sqlx::Error> {
        Ok(self.fetch_all(on).await?.into_iter().next())
    }

    /// Exactly one row.
    pub async fn fetch_one<'c, T: Row>(self, on: impl Into<On<'c>>) -> Result<T, sqlx::Error> {
        self.fetch_optional(on)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }

    /// The first column of every row.
    pub async fn scalars<'c, T: Scalar>(
        self,
        on: impl Into<On<'c>>,
    ) -> Result<Vec<T>, sqlx::Error> {
        let lite = || {
            Ok::<_, sqlx::Error>(sqlx::query_scalar_with::<_, T, _>(
                self.sql.sqlite,
                self.sqlite_args()?,
            ))
        };
        let pg = || {
            Ok::<_, sqlx::Error>(sqlx::query_scalar_with::<_, T, _>(
                self.sql.postgres,
                self.pg_args()?,
            ))
        };
        match on.into() {
            On::Db(Db::Sqlite(p)) => lite()?.fetch_all(p).await,
            On::Tx(Tx::Sqlite(t)) => lite()?.fetch_all(&mut **t).await,
            On::Db(Db::Pg(p)) => pg()?.fetch_all(p).await,
            On::Tx(Tx::Pg(t)) => pg()?.fetch_all(&mut **t).await,
        }
    }

    /// The first column of the first row, if any.
    pub async fn scalar_optional<'c, T: Scalar>(
        self,
        on: impl Into<On<'c>>,
    ) -> Result<Option<T>, sqlx::Error> {
        Ok(self.scalars(on).await?.into_iter().next())
    }

    /// The first column of exactly one row.
    pub async fn scalar<'c, T: Scalar>(self, on: impl Into<On<'c>>) -> Result<T, sqlx::Error> {
        self.scalar_optional(on)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }
}

/// Rows for a batch statement: a JSON array bound as one text parameter,
/// read with `json_each($N)` / `payhook_json_rows($N::jsonb)`. An encoding
/// failure is an error, never an empty batch.
pub fn json_rows<T: serde::Serialize + ?Sized>(rows: &T) -> Result<String, sqlx::Error> {
    serde_json::to_string(rows).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

/// A list of ids as the rows `SELECT value ->> 'id' FROM json_each($1)`
/// reads (on Postgres from `payhook_json_rows($1::jsonb)`).
pub fn id_rows<S: AsRef<str>>(ids: &[S]) -> String {
    let rows: Vec<serde_json::Value> = ids
        .iter()
        .map(|id| serde_json::json!({ "id": id.as_ref() }))
        .collect();
    serde_json::Value::Array(rows).to_string()
}

impl<T: crate::domain::Stored> From<T> for Arg {
    fn from(v: T) -> Self {
        Arg::Text(Some(v.stored().to_string()))
    }
}
impl<T: crate::domain::Stored> From<Option<T>> for Arg {
    fn from(v: Option<T>) -> Self {
        Arg::Text(v.map(|v| v.stored().to_string()))
    }
}
impl From<&crate::sealing::Sealed> for Arg {
    fn from(v: &crate::sealing::Sealed) -> Self {
        Arg::Text(Some(v.as_stored().to_string()))
    }
}
impl From<Option<&crate::sealing::Sealed>> for Arg {
    fn from(v: Option<&crate::sealing::Sealed>) -> Self {
        Arg::Text(v.map(|v| v.as_stored().to_string()))
    }
}
