//! Where ID tokens come from: one file per credential source, each an [`IdTokenSource`].
//!
//! | file | source |
//! |---|---|
//! | `metadata.rs` | [`MetadataServer`]: Cloud Run, GKE with Workload Identity, GCE |
//! | `service_account.rs` | [`ServiceAccountKey`]: a service account's JSON key file |
//! | `impersonated.rs` | [`ImpersonatedServiceAccount`]: IAM Credentials `generateIdToken` |
//! | `external_account/` | [`ExternalAccount`]: workload identity federation (STS, then IAM) |
//! | `gcloud.rs` | [`GcloudCli`]: `gcloud auth print-identity-token` |
//! | `static_token.rs` | [`StaticToken`]: a token minted elsewhere |
//! | `application_default.rs` | [`default_source`]: the Application Default Credentials search |
//!
//! A source does one fetch per call; caching, refresh and single flight are the
//! [`TokenCache`](super::TokenCache)'s job.

mod application_default;
mod external_account;
mod gcloud;
mod impersonated;
mod metadata;
mod service_account;
mod static_token;

#[cfg(doc)]
use super::IdTokenSource;

pub use application_default::{DefaultCredentials, default_source};
pub use external_account::ExternalAccount;
pub use gcloud::GcloudCli;
pub use impersonated::ImpersonatedServiceAccount;
pub use metadata::MetadataServer;
pub use service_account::ServiceAccountKey;
pub use static_token::StaticToken;
