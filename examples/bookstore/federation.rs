//! `--federation`: the same run with ID tokens from workload identity federation, as a workload
//! outside Google Cloud (a CI job, another cloud) gets them.
//!
//! An `external_account` credentials file — what `gcloud iam workload-identity-pools
//! create-cred-config` writes — is named by `GOOGLE_APPLICATION_CREDENTIALS`. Its subject
//! token comes from an emulated identity-provider URL (as GitHub Actions' does), is exchanged
//! at an emulated Security Token Service, and IAM Credentials mints the ID token for the
//! service account the file impersonates. `default_source()` finds the file before the
//! metadata server, so nothing else in the program changes.

use std::time::Duration;

use cloud_run_grpc_testkit::{
    CredentialsFile, IamEmulator, StsEmulator, SubjectTokenServer, Verifier,
};

use super::{Failure, set_env};

const SERVICE_ACCOUNT: &str = "bookstore-caller@ci-project.iam.gserviceaccount.com";

/// The identity provider's token URL, STS, IAM Credentials, and the file naming them.
pub struct Federation {
    idp: SubjectTokenServer,
    sts: StsEmulator,
    iam: IamEmulator,
    _file: CredentialsFile,
}

impl Federation {
    /// Starts the emulators, IAM minting ID tokens that live `lifetime` after `latency`, and
    /// points `GOOGLE_APPLICATION_CREDENTIALS` at an `external_account` file for them.
    pub async fn start(lifetime: Duration, latency: Duration) -> Result<Self, Failure> {
        let sts = StsEmulator::start().await?;
        let iam = IamEmulator::builder()
            .access_tokens(sts.access_tokens().clone())
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
        set_env(
            "GOOGLE_APPLICATION_CREDENTIALS",
            &file.path().display().to_string(),
        );
        println!("identity provider:        {} (subject tokens)", idp.url());
        println!("security token service:   {}", sts.token_url());
        println!(
            "IAM Credentials:          {} (ID tokens for {SERVICE_ACCOUNT})",
            iam.base_url()
        );
        println!(
            "external_account file:    {} (GOOGLE_APPLICATION_CREDENTIALS)",
            file.path().display()
        );
        Ok(Self {
            idp,
            sts,
            iam,
            _file: file,
        })
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
