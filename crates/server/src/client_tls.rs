//! TLS towards clients and operators (`[client_tls]`, docs/SECURITY.md §1.2): the rustls server
//! configuration, and a listener whose handshakes run beside the accept loop, so a client that
//! stalls its handshake never holds up the next one.
//!
//! ```text
//!  TcpListener ─accept─▶ spawn: handshake (≤ HANDSHAKE_TIMEOUT) ─▶ channel ─▶ TlsIncoming
//!                                                                 ├─▶ axum (admin HTTPS)
//!                                   thrift_conns: ─▶ byte pipe ─▶ Conn ─▶ the Thrift server
//! ```

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A handshake not done within this long is dropped (a silent client costs a task this long).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most handshakes in progress at once; more connections wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 256;
/// Established connections waiting for the server to take them.
const ESTABLISHED_BACKLOG: usize = 64;

/// Why the `[client_tls]` files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClientTlsError {
    /// A file could not be read.
    #[error("{key} ({}): {source}", path.display())]
    Read {
        /// The setting.
        key: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A file holds no usable PEM item of the expected kind.
    #[error("{key} ({}): {what}", path.display())]
    Pem {
        /// The setting.
        key: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// What was wrong.
        what: String,
    },
    /// rustls refused the certificate, key or CA.
    #[error("[client_tls]: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client CA could not make a verifier.
    #[error("client_tls.client_ca_file: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, ClientTlsError> {
    std::fs::read(path).map_err(|source| ClientTlsError::Read {
        key,
        path: path.to_owned(),
        source,
    })
}

fn pem_error(key: &'static str, path: &Path, what: impl std::fmt::Display) -> ClientTlsError {
    ClientTlsError::Pem {
        key,
        path: path.to_owned(),
        what: what.to_string(),
    }
}

/// The certificates of a PEM file (at least one).
pub fn certificates(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, ClientTlsError> {
    let pem = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(key, path, format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(pem_error(key, path, "holds no CERTIFICATE block"));
    }
    Ok(certs)
}

/// The trust roots of a PEM CA file.
pub fn roots(key: &'static str, path: &Path) -> Result<RootCertStore, ClientTlsError> {
    let mut store = RootCertStore::empty();
    for cert in certificates(key, path)? {
        store.add(cert)?;
    }
    Ok(store)
}

/// The rustls provider Dolmen uses everywhere (ring, as tonic's peer TLS).
#[allow(
    deprecated,
    reason = "rustls 0.23.48 deprecates ring's provider for lacking post-quantum key exchange; \
              aws-lc-rs, which has it, needs cmake and a long C build this project avoids"
)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server side of `[client_tls]`: its certificate and key, and (when `client_ca_file` is
/// given) the CA whose client certificates are required.
///
/// # Errors
/// A file that cannot be read or parsed, or a certificate rustls refuses.
pub fn acceptor(
    tls: &dolmen_config::ClientTlsConfig,
    require_client_certificates: bool,
) -> Result<TlsAcceptor, ClientTlsError> {
    let chain = certificates("client_tls.cert_file", &tls.cert_file)?;
    let key_pem = read("client_tls.key_file", &tls.key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        pem_error(
            "client_tls.key_file",
            &tls.key_file,
            format!("no private key: {e}"),
        )
    })?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let builder = if require_client_certificates && !tls.client_ca_file.as_os_str().is_empty() {
        let roots = roots("client_tls.client_ca_file", &tls.client_ca_file)?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider()).build()?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let config = builder.with_single_cert(chain, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Connections whose TLS handshake is done, from [`spawn_handshakes`].
pub struct TlsIncoming {
    local: SocketAddr,
    established: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsIncoming {
    /// The next established connection; pending forever once the acceptor stopped.
    pub async fn next(&mut self) -> Option<(TlsStream<TcpStream>, SocketAddr)> {
        self.established.recv().await
    }
}

impl axum::serve::Listener for TlsIncoming {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.next().await {
            Some(conn) => conn,
            // The acceptor stopped: only at shutdown, when the server stops too.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Accepts on `listener` and runs each TLS handshake in its own task (each within
/// [`HANDSHAKE_TIMEOUT`], at most [`MAX_HANDSHAKES`] at once); established connections come out
/// of the returned [`TlsIncoming`]. A failed handshake is logged at debug level and dropped.
///
/// # Errors
/// When the listener has no local address.
pub fn spawn_handshakes(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    what: &'static str,
) -> io::Result<TlsIncoming> {
    let local = listener.local_addr()?;
    let (tx, established) = mpsc::channel(ESTABLISHED_BACKLOG);
    let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let (stream, peer) = tokio::select! {
                () = tx.closed() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    // Per-connection failures (EMFILE, ECONNABORTED) must not stop the listener.
                    Err(e) => {
                        tracing::warn!(error = %e, listener = what, "accept failed; retrying");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "set_nodelay failed");
            }
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send((tls, peer)).await;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, listener = what, "TLS handshake failed");
                    }
                    Err(_) => {
                        tracing::debug!(%peer, listener = what, "TLS handshake timed out");
                    }
                }
            });
        }
    });
    Ok(TlsIncoming { local, established })
}

/// The Thrift server's view of a TLS listener: each established connection becomes a plain
/// byte stream (one end of a local socket pair, the other end piped through the TLS stream),
/// because the Thrift server serves only the connection kinds it knows.
pub fn thrift_conns(mut incoming: TlsIncoming) -> mpsc::Receiver<volo::net::conn::Conn> {
    let (tx, rx) = mpsc::channel(ESTABLISHED_BACKLOG);
    tokio::spawn(async move {
        while let Some((tls, peer)) = incoming.next().await {
            let (near, far) = match tokio::net::UnixStream::pair() {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "no socket pair for a TLS client; dropped");
                    continue;
                }
            };
            tokio::spawn(pipe(tls, near));
            if tx.send(volo::net::conn::Conn::from(far)).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// Copies bytes both ways between a TLS client and the server's end of its socket pair until
/// the server closes its end (a closed connection, an idle timeout, a refusal past the limit):
/// then the TLS connection is closed at once, whatever the client does. A client that stops
/// sending only half-closes: the server still answers what it has.
async fn pipe(tls: TlsStream<TcpStream>, near: tokio::net::UnixStream) {
    use tokio::io::AsyncWriteExt;
    let (mut tls_read, mut tls_write) = tokio::io::split(tls);
    let (mut near_read, mut near_write) = near.into_split();
    let to_server = async {
        let _ = tokio::io::copy(&mut tls_read, &mut near_write).await;
        let _ = near_write.shutdown().await;
        // Only the server's side ends the pipe.
        std::future::pending::<()>().await;
    };
    let to_client = async {
        let _ = tokio::io::copy(&mut near_read, &mut tls_write).await;
        let _ = tls_write.shutdown().await;
    };
    tokio::select! {
        () = to_client => {}
        () = to_server => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_and_empty_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = certificates("client_tls.cert_file", &missing).unwrap_err();
        assert!(e.to_string().starts_with("client_tls.cert_file ("), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem at all\n").unwrap();
        let e = certificates("client_tls.cert_file", &empty).unwrap_err();
        assert!(e.to_string().contains("holds no CERTIFICATE block"), "{e}");
    }
}
