//! A fixed token, for tests or for tokens minted elsewhere.

use std::fmt;

use crate::token::{IdToken, IdTokenSource, TokenFuture};

/// Always hands out the same token, whatever the audience.
///
/// ```
/// use cloud_run_grpc::token::{IdToken, StaticToken};
/// # let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjQxMDI0NDQ4MDB9.c2ln";
/// let source = StaticToken::new(IdToken::from_jwt(jwt)?);
/// assert!(!format!("{source:?}").contains(jwt));
/// # Ok::<(), cloud_run_grpc::token::JwtError>(())
/// ```
#[derive(Clone)]
pub struct StaticToken {
    token: IdToken,
}

impl StaticToken {
    /// A source that always answers `token`.
    pub fn new(token: IdToken) -> Self {
        Self { token }
    }
}

impl fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticToken")
            .field("token", &self.token)
            .finish()
    }
}

impl IdTokenSource for StaticToken {
    fn fetch<'a>(&'a self, _audience: &'a str) -> TokenFuture<'a> {
        let token = self.token.clone();
        Box::pin(async move { Ok(token) })
    }

    fn name(&self) -> String {
        "static token".into()
    }
}
