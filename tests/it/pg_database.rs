//! A fresh database on the server named by `PAYHOOK_TEST_POSTGRES` (set by
//! scripts/with-postgres.sh). Shared by the tests and the bench
//! (`#[path]`-included there).

/// `None` unless `PAYHOOK_TEST_POSTGRES` is set; else the URL of a new,
/// empty database whose name starts with `prefix`.
pub async fn fresh(prefix: &str) -> Option<String> {
    let base = std::env::var("PAYHOOK_TEST_POSTGRES").ok()?;
    let name = format!("{prefix}_{}", ulid::Ulid::new().to_string().to_lowercase());
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("PAYHOOK_TEST_POSTGRES={base}: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let mut url = url::Url::parse(&base).unwrap();
    url.set_path(&name);
    Some(url.to_string())
}
