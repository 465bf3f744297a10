//! `run --role worker`: one organization's listener runs in a distributed
//! deployment. (Being built: see issue 16.)

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::organization::{Organization, Shared};
use super::run::RunReport;
use super::AppError;
use crate::distributed::DistributedError;
use crate::store::Store;

impl Organization {
    /// Consumes, runs and records until `token`.
    pub(super) async fn work(
        &self,
        _store: Arc<dyn Store>,
        _shared: &Shared,
        _token: CancellationToken,
    ) -> Result<RunReport, AppError> {
        Err(DistributedError::Setup(vec!["`--role worker` is not built yet".to_owned()]).into())
    }
}
