//! [`open`]: the store a [`DatabaseUrl`] names.

use std::sync::Arc;

use super::api::Store;
use super::error::StoreError;
use super::model::StoreOptions;
use super::postgres::PgStore;
use super::sqlite::SqliteStore;
use crate::config::{Backend, DatabaseUrl};

/// Opens the store named by `url`.
///
/// # Errors
///
/// [`StoreError`] when the database is unreachable (or, with SQLite, its
/// file cannot be created).
pub async fn open(url: &DatabaseUrl, opts: &StoreOptions) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match url.options() {
        Backend::Sqlite(connect) => {
            Arc::new(SqliteStore::open(connect.clone(), url.location(), opts).await?)
        }
        Backend::Postgres(connect) => {
            Arc::new(PgStore::open(connect.clone(), url.location(), opts).await?)
        }
    })
}
