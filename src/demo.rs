pub async fn run(_cfg: crate::config::Config) -> crate::error::AppResult<()> { Ok(()) }
