//! The admin credential a command sends (`Authorization: Bearer`): from `--token`, the
//! `DOLMEN_ADMIN_TOKEN` environment variable, or the first line of `--token-file`.

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
}

impl TokenArgs {
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
            token_file: None,
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
            token: None,
            token_file: Some(path.clone()),
        };
        assert_eq!(file.token().unwrap().as_deref(), Some("from-the-file-0123"));
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(file.token(), Err(TokenError::Empty { .. })));
    }
}
