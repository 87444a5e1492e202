//! How a command reaches the admin API: the credential it sends (`Authorization: Bearer`), from
//! `--token`, the `DOLMEN_ADMIN_TOKEN` environment variable, or the first line of
//! `--token-file`; and, for nodes with `[server] admin_tls`, the CA to check them against
//! (`--ca-file`, `DOLMEN_CA_FILE`).

use std::path::PathBuf;

/// Flags naming the admin credential.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct TokenArgs {
    /// The node's admin_token (or admin_view_token, for commands that only read); visible to
    /// other users in the process list: prefer the environment or --token-file.
    #[arg(long = "token", env = "DOLMEN_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file whose first line is the token.
    #[arg(long = "token-file", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
    /// The CA certificate (PEM) that signed the nodes' admin certificates: talk HTTPS to
    /// nodes with [server] admin_tls, accepting only certificates it signed.
    #[arg(long = "ca-file", env = "DOLMEN_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

/// Why the credential could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token file could not be read.
    #[error("--token-file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The token file's first line is empty.
    #[error("--token-file {}: the first line is empty", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The CA file could not be read.
    #[error("--ca-file {}: {source}", path.display())]
    ReadCa {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The CA file holds no usable certificate.
    #[error("--ca-file {}: {reason}", path.display())]
    BadCa {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

impl TokenArgs {
    /// An admin client for `addr` with the credential and, with `--ca-file`, HTTPS.
    ///
    /// # Errors
    /// The token or CA file cannot be read, or the CA file holds no certificate.
    pub fn client(&self, addr: &str) -> Result<dolmen_admin::AdminClient, TokenError> {
        let client = dolmen_admin::AdminClient::new(addr).with_token(self.token()?);
        let Some(path) = &self.ca_file else {
            return Ok(client);
        };
        let pem = std::fs::read(path).map_err(|source| TokenError::ReadCa {
            path: path.clone(),
            source,
        })?;
        client.with_ca(&pem).map_err(|e| TokenError::BadCa {
            path: path.clone(),
            reason: e.to_string(),
        })
    }

    /// The credential to send, if any.
    ///
    /// # Errors
    /// The token file cannot be read or its first line is empty.
    pub fn token(&self) -> Result<Option<String>, TokenError> {
        let Some(path) = &self.token_file else {
            return Ok(self.token.clone().filter(|t| !t.is_empty()));
        };
        let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
            path: path.clone(),
            source,
        })?;
        let token = text.lines().next().unwrap_or_default().trim();
        if token.is_empty() {
            return Err(TokenError::Empty { path: path.clone() });
        }
        Ok(Some(token.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_comes_from_the_flag_or_the_first_line_of_the_file() {
        let flag = TokenArgs {
            token: Some("secret-secret-secret".into()),
            ..TokenArgs::default()
        };
        assert_eq!(
            flag.token().unwrap().as_deref(),
            Some("secret-secret-secret")
        );
        assert_eq!(TokenArgs::default().token().unwrap(), None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "from-the-file-0123\nrest\n").unwrap();
        let file = TokenArgs {
            token_file: Some(path.clone()),
            ..TokenArgs::default()
        };
        assert_eq!(file.token().unwrap().as_deref(), Some("from-the-file-0123"));
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(file.token(), Err(TokenError::Empty { .. })));
    }
}
