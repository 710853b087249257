//! Every p2pshare link is TLS 1.3 (rustls on AWS-LC) in which both ends
//! present a raw ed25519 public key (RFC 7250) instead of a certificate.
//!
//! The TLS layer proves only that each end holds the private half of the key
//! it presents; it accepts any key. *Which* key is acceptable is the caller's
//! decision, made on [`Secured::peer`] after the handshake and before a
//! single byte of its own goes out: a daemon compares the tracker's key with
//! the pinned fingerprint, a tracker compares a peer tracker's key with the
//! cluster identity, a seeder compares the requester's key with the one its
//! ticket names. One verifier, and the checks in plain code where they are
//! easy to read and test.
//!
//! TLS 1.3 only: fresh ephemeral keys on every connection, so a recorded
//! connection replayed later fails its handshake; no 0-RTT data.

use crate::keys::{KeyPairDoc, PublicKey};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::AlwaysResolvesClientRawPublicKeys;
use rustls::crypto::{verify_tls13_signature_with_raw_key, CryptoProvider};
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, SubjectPublicKeyInfoDer,
    UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::AlwaysResolvesServerRawPublicKeys;
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, Error, ServerConfig,
    SignatureScheme,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// A link: TLS over TCP, either side of it.
pub type Link = tokio_rustls::TlsStream<TcpStream>;
pub type LinkReader = tokio::io::ReadHalf<Link>;
pub type LinkWriter = tokio::io::WriteHalf<Link>;

/// An ed25519 SubjectPublicKeyInfo is this DER prefix and the 32-byte key.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("TLS handshake: {0}")]
    Handshake(std::io::Error),
    #[error("no TLS handshake within {0:?}")]
    Timeout(Duration),
    #[error("the other end presented no ed25519 key")]
    NoKey,
}

/// The raw key inside an ed25519 SubjectPublicKeyInfo.
fn key_of_spki(spki: &[u8]) -> Option<PublicKey> {
    let key = spki.strip_prefix(&ED25519_SPKI_PREFIX[..])?;
    Some(PublicKey(key.try_into().ok()?))
}

fn spki_of_key(key: &PublicKey) -> Vec<u8> {
    let mut spki = ED25519_SPKI_PREFIX.to_vec();
    spki.extend_from_slice(&key.0);
    spki
}

/// AWS-LC, with AES-128-GCM preferred: the bulk of a link is file bytes,
/// and with AES-NI it is the cheapest of the TLS 1.3 suites, with a margin
/// AES-256 does not need here.
fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    Arc::new(provider)
}

/// Accepts any ed25519 raw public key whose handshake signature is good:
/// possession is proven here, acceptance is decided by the caller.
#[derive(Debug)]
struct AnyKey(Arc<CryptoProvider>);

impl AnyKey {
    fn check_key(cert: &CertificateDer<'_>) -> Result<(), Error> {
        key_of_spki(cert.as_ref())
            .map(|_| ())
            .ok_or(Error::InvalidCertificate(CertificateError::BadEncoding))
    }

    fn check_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        if dss.scheme != SignatureScheme::ED25519 {
            return Err(Error::InvalidCertificate(CertificateError::BadSignature));
        }
        verify_tls13_signature_with_raw_key(
            message,
            &SubjectPublicKeyInfoDer::from(cert.as_ref()),
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
}

impl ServerCertVerifier for AnyKey {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        AnyKey::check_key(end_entity).map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        // Only TLS 1.3 is configured; never reached.
        Err(Error::General("TLS 1.2 is not supported".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.check_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

impl ClientCertVerifier for AnyKey {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        AnyKey::check_key(end_entity).map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        Err(Error::General("TLS 1.2 is not supported".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.check_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// A key, ready to be presented on links in either role.
#[derive(Clone)]
pub struct Endpoint {
    key: PublicKey,
    connector: tokio_rustls::TlsConnector,
    acceptor: tokio_rustls::TlsAcceptor,
    deadline: Duration,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Endpoint({})", self.key)
    }
}

/// A finished handshake: the link and the key the other end proved it holds.
#[derive(Debug)]
pub struct Secured {
    pub link: Link,
    pub peer: PublicKey,
}

/// How long a handshake may take: a stranger gets no longer than this
/// before the connection is dropped.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

impl Endpoint {
    /// Configures TLS 1.3 with `key` presented in both roles, the other end
    /// required to present one too.
    pub fn new(key: &KeyPairDoc) -> Endpoint {
        let provider = provider();
        let signing = provider
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                key.pkcs8().to_vec(),
            )))
            .expect("rustls loads an ed25519 PKCS#8 key");
        let spki = CertificateDer::from(spki_of_key(&key.public()));
        let certified = Arc::new(CertifiedKey::new(vec![spki], signing));
        let verifier = Arc::new(AnyKey(Arc::clone(&provider)));

        let server = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("the AWS-LC provider supports TLS 1.3")
            .with_client_cert_verifier(verifier.clone())
            .with_cert_resolver(Arc::new(AlwaysResolvesServerRawPublicKeys::new(
                certified.clone(),
            )));
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("the AWS-LC provider supports TLS 1.3")
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(Arc::new(AlwaysResolvesClientRawPublicKeys::new(certified)));
        // Nothing to resume: every link is long-lived or one download.
        client.resumption = rustls::client::Resumption::disabled();
        Endpoint {
            key: key.public(),
            connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            deadline: HANDSHAKE_DEADLINE,
        }
    }

    /// The same endpoint with another handshake deadline (tests).
    pub fn with_deadline(mut self, deadline: Duration) -> Endpoint {
        self.deadline = deadline;
        self
    }

    /// The key this endpoint presents.
    pub fn key(&self) -> PublicKey {
        self.key
    }

    /// Client side of a handshake on `tcp`.
    ///
    /// # Errors
    /// The handshake failed or took longer than the deadline.
    pub async fn connect(&self, tcp: TcpStream) -> Result<Secured, LinkError> {
        // The name is not checked (keys are); rustls needs one anyway.
        let name = ServerName::try_from("p2pshare").expect("a valid DNS name");
        let tls = tokio::time::timeout(self.deadline, self.connector.connect(name, tcp))
            .await
            .map_err(|_| LinkError::Timeout(self.deadline))?
            .map_err(LinkError::Handshake)?;
        let peer = peer_key(tls.get_ref().1.peer_certificates())?;
        Ok(Secured {
            link: tokio_rustls::TlsStream::Client(tls),
            peer,
        })
    }

    /// Server side of a handshake on `tcp`.
    ///
    /// # Errors
    /// The handshake failed or took longer than the deadline.
    pub async fn accept(&self, tcp: TcpStream) -> Result<Secured, LinkError> {
        let tls = tokio::time::timeout(self.deadline, self.acceptor.accept(tcp))
            .await
            .map_err(|_| LinkError::Timeout(self.deadline))?
            .map_err(LinkError::Handshake)?;
        let peer = peer_key(tls.get_ref().1.peer_certificates())?;
        Ok(Secured {
            link: tokio_rustls::TlsStream::Server(tls),
            peer,
        })
    }
}

fn peer_key(certs: Option<&[CertificateDer<'_>]>) -> Result<PublicKey, LinkError> {
    certs
        .and_then(|c| c.first())
        .and_then(|c| key_of_spki(c.as_ref()))
        .ok_or(LinkError::NoKey)
}

/// Splits a link into halves a reader and a writer task can own.
pub fn split(link: Link) -> (LinkReader, LinkWriter) {
    tokio::io::split(link)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair(server: &Endpoint, client: &Endpoint) -> (Secured, Secured) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accept = async {
            let (tcp, _) = listener.accept().await.unwrap();
            server.accept(tcp).await.unwrap()
        };
        let connect = async {
            let tcp = TcpStream::connect(addr).await.unwrap();
            client.connect(tcp).await.unwrap()
        };
        tokio::join!(accept, connect)
    }

    #[tokio::test]
    async fn both_ends_learn_the_key_the_other_holds_and_bytes_flow() {
        let a = KeyPairDoc::generate().unwrap();
        let b = KeyPairDoc::generate().unwrap();
        let (sa, sb) = (Endpoint::new(&a), Endpoint::new(&b));
        let (mut srv, mut cli) = pair(&sa, &sb).await;
        assert_eq!(srv.peer, b.public());
        assert_eq!(cli.peer, a.public());
        cli.link.write_all(b"ping").await.unwrap();
        cli.link.flush().await.unwrap();
        let mut buf = [0u8; 4];
        srv.link.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
    }

    #[tokio::test]
    async fn plain_tcp_gets_no_handshake_and_no_bytes() {
        let a = Endpoint::new(&KeyPairDoc::generate().unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = async {
            let (tcp, _) = listener.accept().await.unwrap();
            a.accept(tcp).await
        };
        let client = async {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            // A frame of the old clear-text protocol.
            tcp.write_all(b"\0\0\0\x02{}").await.unwrap();
            let mut buf = Vec::new();
            let _ = tcp.read_to_end(&mut buf).await;
            buf
        };
        let (res, _) = tokio::join!(server, client);
        assert!(matches!(res, Err(LinkError::Handshake(_))), "{res:?}");
    }

    #[tokio::test]
    async fn a_silent_stranger_is_dropped_at_the_deadline() {
        let a = Endpoint::new(&KeyPairDoc::generate().unwrap())
            .with_deadline(Duration::from_millis(200));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _idle = TcpStream::connect(addr).await.unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        let res = a.accept(tcp).await;
        assert!(matches!(res, Err(LinkError::Timeout(_))), "{res:?}");
    }

    #[test]
    fn spki_round_trip() {
        let k = KeyPairDoc::generate().unwrap().public();
        assert_eq!(key_of_spki(&spki_of_key(&k)), Some(k));
        assert_eq!(key_of_spki(&[0u8; 44]), None);
        assert_eq!(key_of_spki(&spki_of_key(&k)[..43]), None);
    }
}
