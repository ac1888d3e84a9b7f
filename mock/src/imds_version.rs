//! Which IMDS path a caller took to the instance role's credentials.

use serde::Serialize;

/// How the caller reached the credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImdsVersion {
    /// A tokenless GET (`HttpTokens=optional` only).
    V1,
    /// A GET with a session token.
    V2,
}
