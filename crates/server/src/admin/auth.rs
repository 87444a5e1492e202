//! Who may call what on the admin API (docs/console.md §2): each request is classed as open,
//! view (reveals state) or operate (changes state, or streams all of it), and checked against
//! the node's credentials before any handler runs.

use std::path::Path;

use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::Response;
use dolmen_admin::ErrorCode;

use super::Refusal;

/// The admin API's credentials; an empty one is not configured.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    /// Opens everything (`server.admin_token`).
    pub operator: Option<String>,
    /// Opens what reveals state (`server.admin_view_token`).
    pub view: Option<String>,
}

/// Why the operator token could not be read from its file.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// The file could not be read.
    #[error("server.admin_token_file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Its first line is not a valid token.
    #[error("server.admin_token_file {path}: its first line {problem}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong with the token (the rule `admin_token` itself follows).
        problem: String,
    },
}

impl Credentials {
    /// The credentials of `[server]`: `admin_token` (or the first line of
    /// `admin_token_file`) and `admin_view_token`.
    ///
    /// # Errors
    /// The token file cannot be read or holds no valid token.
    pub fn from_config(server: &dolmen_config::ServerConfig) -> Result<Self, TokenFileError> {
        let operator = if server.admin_token_file.as_os_str().is_empty() {
            server.admin_token.clone()
        } else {
            read_token_file(&server.admin_token_file)?
        };
        let some = |t: String| (!t.is_empty()).then_some(t);
        Ok(Self {
            operator: some(operator),
            view: some(server.admin_view_token.clone()),
        })
    }
}

fn read_token_file(path: &Path) -> Result<String, TokenFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
        path: shown.clone(),
        source,
    })?;
    let token = text.lines().next().unwrap_or_default().trim().to_owned();
    let invalid = |problem: String| TokenFileError::Invalid {
        path: shown.clone(),
        problem,
    };
    if token.is_empty() {
        return Err(invalid("is empty".to_owned()));
    }
    dolmen_config::check_token("server.admin_token_file", &token).map_err(|e| match e {
        dolmen_config::ConfigError::Invalid { problem, .. } => invalid(problem),
        other => invalid(other.to_string()),
    })?;
    Ok(token)
}

/// What a request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Nothing: `/health`, `/ready` and the console's static files.
    Open,
    /// The view or the operator token, when a view token is configured.
    View,
    /// The operator token, when one is configured.
    Operate,
    /// The operator token, which must be configured (data writes).
    OperateConfigured,
}

/// The access `method` on `path` needs.
pub fn access(method: &Method, path: &str) -> Access {
    match (method, path) {
        (&Method::GET | &Method::HEAD, "/health" | "/ready")
        | (&Method::GET | &Method::HEAD, "/" | "/console/app.js" | "/console/style.css") => {
            Access::Open
        }
        (&Method::GET | &Method::HEAD, "/backup" | "/debug/network-faults") => Access::Operate,
        (&Method::GET | &Method::HEAD, _) => Access::View,
        (_, "/data/key") => Access::OperateConfigured,
        _ => Access::Operate,
    }
}

/// Equal in time independent of where they differ (lengths are not secret).
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Credentials {
    /// Whether a request carrying `bearer` may have `access`.
    ///
    /// # Errors
    /// A 401 (`unauthorized`) for a missing or wrong token, a 403 (`forbidden`) when no token
    /// the request could carry is configured.
    pub fn check(&self, access: Access, bearer: Option<&str>) -> Result<(), Refusal> {
        let matches = |token: &Option<String>| {
            token
                .as_deref()
                .zip(bearer)
                .is_some_and(|(t, b)| same(t.as_bytes(), b.as_bytes()))
        };
        let needed = match access {
            Access::Open => return Ok(()),
            Access::View if self.view.is_none() => return Ok(()),
            Access::View => "the admin_view_token or the admin_token",
            Access::Operate if self.operator.is_none() => return Ok(()),
            Access::Operate => "the admin_token",
            Access::OperateConfigured if self.operator.is_none() => {
                return Err(Refusal::new(
                    ErrorCode::Forbidden,
                    "data writes through the admin API need an operator credential, and this \
                     node has none: set [server] admin_token (or admin_token_file)",
                ))
            }
            Access::OperateConfigured => "the admin_token",
        };
        if matches(&self.operator) || (access == Access::View && matches(&self.view)) {
            return Ok(());
        }
        let problem = if bearer.is_some() {
            "the credential is not valid"
        } else {
            "no credential was sent"
        };
        Err(Refusal::new(
            ErrorCode::Unauthorized,
            format!("{problem}: send {needed} as \"Authorization: Bearer <token>\""),
        ))
    }
}

/// The bearer token of a request, if it carries one.
fn bearer(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// The middleware: refuses a request its credential does not allow, before its handler runs.
pub async fn guard(
    State(credentials): State<std::sync::Arc<Credentials>>,
    request: Request,
    next: Next,
) -> Result<Response, Refusal> {
    let needs = access(request.method(), request.uri().path());
    credentials.check(needs, bearer(&request))?;
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPERATOR: &str = "operator-token-0123456789";
    const VIEWER: &str = "viewer-token-0123456789";

    fn code(result: Result<(), Refusal>) -> Option<ErrorCode> {
        result.err().and_then(|r| r.code())
    }

    #[test]
    fn requests_are_classed_by_method_and_path() {
        assert_eq!(access(&Method::GET, "/health"), Access::Open);
        assert_eq!(access(&Method::GET, "/"), Access::Open);
        assert_eq!(access(&Method::GET, "/console/app.js"), Access::Open);
        assert_eq!(access(&Method::GET, "/metrics"), Access::View);
        assert_eq!(access(&Method::GET, "/data/range"), Access::View);
        assert_eq!(access(&Method::GET, "/backup"), Access::Operate);
        assert_eq!(access(&Method::POST, "/cluster/add-node"), Access::Operate);
        assert_eq!(access(&Method::PUT, "/data/key"), Access::OperateConfigured);
        assert_eq!(
            access(&Method::DELETE, "/data/key"),
            Access::OperateConfigured
        );
    }

    #[test]
    fn with_no_credentials_only_data_writes_are_refused() {
        let none = Credentials::default();
        assert_eq!(code(none.check(Access::View, None)), None);
        assert_eq!(code(none.check(Access::Operate, None)), None);
        assert_eq!(
            code(none.check(Access::OperateConfigured, Some(OPERATOR))),
            Some(ErrorCode::Forbidden)
        );
    }

    #[test]
    fn each_token_opens_what_it_should_and_nothing_else() {
        let both = Credentials {
            operator: Some(OPERATOR.into()),
            view: Some(VIEWER.into()),
        };
        assert_eq!(code(both.check(Access::Open, None)), None);
        assert_eq!(
            code(both.check(Access::View, None)),
            Some(ErrorCode::Unauthorized)
        );
        assert_eq!(code(both.check(Access::View, Some(VIEWER))), None);
        assert_eq!(code(both.check(Access::View, Some(OPERATOR))), None);
        assert_eq!(
            code(both.check(Access::Operate, Some(VIEWER))),
            Some(ErrorCode::Unauthorized)
        );
        assert_eq!(
            code(both.check(Access::OperateConfigured, Some("operator-token-012345678X"))),
            Some(ErrorCode::Unauthorized)
        );
        assert_eq!(code(both.check(Access::Operate, Some(OPERATOR))), None);
        assert_eq!(
            code(both.check(Access::OperateConfigured, Some(OPERATOR))),
            None
        );
        let operator_only = Credentials {
            operator: Some(OPERATOR.into()),
            view: None,
        };
        assert_eq!(code(operator_only.check(Access::View, None)), None);
        assert_eq!(
            code(operator_only.check(Access::Operate, None)),
            Some(ErrorCode::Unauthorized)
        );
    }

    #[test]
    fn a_token_file_gives_its_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, format!("{OPERATOR}\nignored\n")).unwrap();
        assert_eq!(read_token_file(&path).unwrap(), OPERATOR);
        std::fs::write(&path, "short\n").unwrap();
        assert!(matches!(
            read_token_file(&path),
            Err(TokenFileError::Invalid { .. })
        ));
        assert!(matches!(
            read_token_file(&dir.path().join("absent")),
            Err(TokenFileError::Read { .. })
        ));
    }
}
