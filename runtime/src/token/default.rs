//! Application Default Credentials, for ID tokens.

use std::sync::Arc;

use tokio::sync::OnceCell;

use super::{IdTokenSource, MetadataServer, TokenError, TokenFuture};

/// The source Application Default Credentials would pick, chosen on first use.
///
/// Today this is the metadata server (Cloud Run, GKE with Workload Identity, GCE), honouring
/// `GCE_METADATA_HOST`.
#[derive(Debug, Default)]
pub struct DefaultCredentials {
    resolved: OnceCell<Arc<dyn IdTokenSource>>,
}

/// The source Application Default Credentials would pick; resolved lazily, on the first fetch,
/// so creating it does no I/O.
pub fn default_source() -> DefaultCredentials {
    DefaultCredentials::default()
}

impl DefaultCredentials {
    async fn resolve(&self) -> Result<&Arc<dyn IdTokenSource>, TokenError> {
        self.resolved
            .get_or_try_init(|| async {
                Ok(Arc::new(MetadataServer::new()) as Arc<dyn IdTokenSource>)
            })
            .await
    }
}

impl IdTokenSource for DefaultCredentials {
    fn fetch<'a>(&'a self, audience: &'a str) -> TokenFuture<'a> {
        Box::pin(async move { self.resolve().await?.fetch(audience).await })
    }

    fn name(&self) -> String {
        match self.resolved.get() {
            Some(source) => source.name(),
            None => "application default credentials".into(),
        }
    }
}
