//! The stock Thrift client over TLS: the generated client and the stock transports and
//! protocol, over a rustls stream instead of a TCP socket (what a stock Thrift SSL socket is: a
//! TLS stream under the same transports). For the Thrift TLS listener's tests.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConnection, StreamOwned};
use thrift::protocol::{TBinaryInputProtocol, TBinaryOutputProtocol};
use thrift::transport::{
    TBufferedReadTransport, TBufferedWriteTransport, TFramedReadTransport, TFramedWriteTransport,
};

use crate::client::{tcp_connect, KvClient, Transport};
use crate::kvstore::TransactionalKVSyncClient;

/// How a TLS client connects.
#[derive(Clone, Debug)]
pub struct TlsClient {
    /// The CA (PEM) the server's certificate must chain to.
    pub ca_pem: String,
    /// The name (host name or IP address) the server's certificate must carry.
    pub server_name: String,
    /// The client certificate and key (PEM) to present, if any.
    pub identity: Option<(String, String)>,
    /// Buffered or framed.
    pub transport: Transport,
}

type Shared = Arc<Mutex<StreamOwned<ClientConnection, TcpStream>>>;

/// One direction of the shared TLS stream (the sync client reads only after it wrote, so
/// the two halves never wait on each other).
struct Half(Shared);

impl Read for Half {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?
            .read(buf)
    }
}

impl Write for Half {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?
            .write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?
            .flush()
    }
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

#[allow(
    deprecated,
    reason = "ring, as the server: rustls 0.23.48 deprecates its provider for lacking \
              post-quantum key exchange"
)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsClient {
    /// Connects to `addr` and completes the TLS handshake.
    ///
    /// # Errors
    /// When the PEM inputs are unusable, the connection fails, or the handshake fails (an
    /// untrusted server, a listener that speaks no TLS). A server that refuses this client's
    /// certificate after TLS 1.3's handshake shows only on the first call.
    pub fn connect(&self, addr: SocketAddr) -> io::Result<KvClient> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(cert.map_err(invalid)?).map_err(invalid)?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(invalid)?
            .with_root_certificates(roots);
        let config = match &self.identity {
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(invalid)?;
                let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(invalid)?;
                builder.with_client_auth_cert(chain, key).map_err(invalid)?
            }
            None => builder.with_no_client_auth(),
        };
        let name = ServerName::try_from(self.server_name.clone()).map_err(invalid)?;
        let conn = ClientConnection::new(Arc::new(config), name).map_err(invalid)?;
        let mut stream = StreamOwned::new(conn, tcp_connect(addr));
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        let shared: Shared = Arc::new(Mutex::new(stream));
        let (r, w): (Box<dyn Read + Send>, Box<dyn Write + Send>) = match self.transport {
            Transport::Buffered => (
                Box::new(TBufferedReadTransport::new(Half(shared.clone()))),
                Box::new(TBufferedWriteTransport::new(Half(shared))),
            ),
            Transport::Framed => (
                Box::new(TFramedReadTransport::new(Half(shared.clone()))),
                Box::new(TFramedWriteTransport::new(Half(shared))),
            ),
        };
        Ok(TransactionalKVSyncClient::new(
            TBinaryInputProtocol::new(r, true),
            TBinaryOutputProtocol::new(w, true),
        ))
    }
}
