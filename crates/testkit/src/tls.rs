//! Throwaway certificates for mutual TLS between peers (docs/SECURITY.md §1): one certificate
//! authority per cluster, and one certificate per node naming [`PEER_TLS_NAME`], the name every
//! peer checks. `dolmen demo` and the harnesses use it so that clusters run secured by default;
//! a production cluster brings its own CA.

use std::path::{Path, PathBuf};

use dolmen_config::{ClientTlsConfig, TlsConfig};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// The DNS name in every node certificate, which peers verify (the peer addresses are not
/// names the certificate could carry: any member may move). The same as
/// `dolmen_raft::network::PEER_TLS_NAME` (this crate does not link the server); the handshake
/// tests in `crates/raft/tests/network/tls.rs` fail if the two differ.
pub const PEER_TLS_NAME: &str = "dolmen-peer";

/// Why certificates could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rcgen refused.
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A certificate authority that signs node certificates.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new CA named `name`.
    ///
    /// # Errors
    /// When rcgen cannot generate the key or certificate.
    pub fn new(name: &str) -> Result<Self, TlsError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Ok(Self {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate()?)?,
        })
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A node certificate for `node` (its common name) naming [`PEER_TLS_NAME`], for both
    /// ends of a connection: `(certificate, key)`, PEM.
    ///
    /// # Errors
    /// When rcgen cannot generate the key or certificate.
    pub fn node_pem(&self, node: &str) -> Result<(String, String), TlsError> {
        self.leaf_pem(node, &[PEER_TLS_NAME])
    }

    /// A certificate with common name `name` for the host names and IP addresses `hosts`, for
    /// both ends of a connection: `(certificate, key)`, PEM. What a client-facing listener
    /// (`[client_tls]`) or a client presents.
    ///
    /// # Errors
    /// When rcgen cannot generate the key or certificate.
    pub fn leaf_pem(&self, name: &str, hosts: &[&str]) -> Result<(String, String), TlsError> {
        let hosts = hosts.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>();
        let mut params = CertificateParams::new(hosts)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Writes the CA certificate and a certificate and key for `hosts` (see
    /// [`TestCa::leaf_pem`]) into `dir` as `client-ca.pem`, `<stem>.pem` and `<stem>.key`;
    /// returns the `[client_tls]` settings naming them (the CA as `ca_file`; `client_ca_file`
    /// left empty).
    ///
    /// # Errors
    /// When a certificate cannot be made or a file written.
    pub fn write_leaf(
        &self,
        dir: &Path,
        stem: &str,
        hosts: &[&str],
    ) -> Result<ClientTlsConfig, TlsError> {
        let (cert, key) = self.leaf_pem(stem, hosts)?;
        let files = ClientTlsConfig {
            cert_file: dir.join(format!("{stem}.pem")),
            key_file: dir.join(format!("{stem}.key")),
            ca_file: dir.join("client-ca.pem"),
            client_ca_file: PathBuf::new(),
        };
        write(&files.ca_file, &self.ca_pem(), false)?;
        write(&files.cert_file, &cert, false)?;
        write(&files.key_file, &key, true)?;
        Ok(files)
    }

    /// Writes the CA certificate and node `i`'s certificate and key into `dir` (the key
    /// readable by its owner only); returns the `[tls]` settings naming them.
    ///
    /// # Errors
    /// When a certificate cannot be made or a file written.
    pub fn write_node(&self, dir: &Path, i: usize) -> Result<TlsConfig, TlsError> {
        let (cert, key) = self.node_pem(&format!("dolmen node {i}"))?;
        let files = TlsConfig {
            ca_file: dir.join("ca.pem"),
            cert_file: dir.join(format!("node-{i}.pem")),
            key_file: dir.join(format!("node-{i}.key")),
        };
        write(&files.ca_file, &self.ca_pem(), false)?;
        write(&files.cert_file, &cert, false)?;
        write(&files.key_file, &key, true)?;
        Ok(files)
    }
}

fn write(path: &Path, text: &str, secret: bool) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let failed = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)
        .map_err(failed)?;
    file.write_all(text.as_bytes()).map_err(failed)
}
