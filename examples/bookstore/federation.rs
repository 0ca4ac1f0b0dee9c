//! `--federation`: the same run with ID tokens from workload identity federation, as a workload
//! outside Google Cloud (a CI job, another cloud) gets them.
//!
//! An `external_account` credentials file — what `gcloud iam workload-identity-pools
//! create-cred-config` writes — is read by `ExternalAccount::from_file` (named by
//! `GOOGLE_APPLICATION_CREDENTIALS`, `default_source()` would find it the same way). Its
//! subject token comes from an emulated identity-provider URL (as GitHub Actions' does), is
//! exchanged at an emulated Security Token Service, and IAM Credentials mints the ID token for
//! the service account the file impersonates.

use std::time::Duration;

use cloud_run_grpc::token::{ExternalAccount, TokenError};
use cloud_run_grpc_testkit::{
    CredentialsFile, IamEmulator, StsEmulator, SubjectTokenServer, Verifier,
};

use super::Failure;

const SERVICE_ACCOUNT: &str = "bookstore-caller@ci-project.iam.gserviceaccount.com";

/// The identity provider's token URL, STS, IAM Credentials, and the file naming them.
pub struct Federation {
    idp: SubjectTokenServer,
    sts: StsEmulator,
    iam: IamEmulator,
    file: CredentialsFile,
}

impl Federation {
    /// Starts the emulators, IAM minting ID tokens that live `lifetime` after `latency`, and
    /// writes an `external_account` file for them.
    pub async fn start(lifetime: Duration, latency: Duration) -> Result<Self, Failure> {
        let sts = StsEmulator::start().await?;
        let iam = sts
            .iam_builder()
            .token_lifetime(lifetime)
            .latency(latency)
            .start()
            .await?;
        let idp = SubjectTokenServer::builder(&sts)
            .json_field("value")
            .require_header("Authorization", "Bearer ci-job-request-token")
            .start()
            .await?;
        let file = CredentialsFile::write(&sts.external_account_json(
            &idp.credential_source(),
            Some(&iam.impersonation_url(SERVICE_ACCOUNT)),
        ))?;
        println!("identity provider:        {} (subject tokens)", idp.url());
        println!("security token service:   {}", sts.token_url());
        println!(
            "IAM Credentials:          {} (ID tokens for {SERVICE_ACCOUNT})",
            iam.base_url()
        );
        println!("external_account file:    {}", file.path().display());
        Ok(Self {
            idp,
            sts,
            iam,
            file,
        })
    }

    /// The token source the file describes.
    pub fn token_source(&self) -> Result<ExternalAccount, TokenError> {
        ExternalAccount::from_file(self.file.path())
    }

    /// Trusts the ID tokens IAM mints.
    pub fn verifier(&self) -> Verifier {
        self.iam.verifier()
    }

    /// How many ID tokens IAM was asked for, and a line on what each cost.
    pub fn fetches(&self) -> (usize, String) {
        let minted = self.iam.requests();
        let detail = format!(
            " ({minted} from IAM, after {} subject token(s) and {} STS exchange(s): the \
             federated token is reused while valid)",
            self.idp.requests(),
            self.sts.requests()
        );
        (minted, detail)
    }
}
