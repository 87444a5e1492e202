//! Mutual TLS between peers (docs/SECURITY.md §1): every member holds a certificate signed by
//! the cluster CA and naming [`PEER_TLS_NAME`]; the server requires a client certificate the CA
//! signed, and the client checks the server's against the same CA and name. A peer without
//! such a certificate is refused at the handshake, before any Raft message is read.

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// The DNS name every node certificate carries and every peer checks (member addresses are not
/// names a certificate could list: members move).
pub const PEER_TLS_NAME: &str = "dolmen-peer";

/// The cluster CA's certificate and this node's certificate and key, PEM.
#[derive(Clone)]
pub struct PeerTls {
    /// The CA certificate.
    pub ca: Vec<u8>,
    /// This node's certificate.
    pub cert: Vec<u8>,
    /// Its private key.
    pub key: Vec<u8>,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("PeerTls").finish_non_exhaustive()
    }
}

impl PeerTls {
    fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert, &self.key)
    }

    fn ca(&self) -> Certificate {
        Certificate::from_pem(&self.ca)
    }

    /// The client side: present this node's certificate, trust only the cluster CA.
    pub(crate) fn client(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(self.ca())
            .identity(self.identity())
            .domain_name(PEER_TLS_NAME)
    }

    /// The server side: present this node's certificate, require a client certificate the
    /// cluster CA signed.
    pub(crate) fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity())
            .client_ca_root(self.ca())
    }
}
