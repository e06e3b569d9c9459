//! graze transport: QUIC (quinn, TLS 1.3) with a pinned self-signed scheduler certificate,
//! the access file that carries address, fingerprint and token, and framed message streams.

use graze_proto::{self as proto, Hello, HelloReply, Role};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use quinn;

mod setup;
pub use setup::{init_tracing, monotonic_ns, now_us, shutdown_signal, timeline, LogTo, TIMELINE};

/// Server name in the scheduler's certificate and in every client's SNI.
pub const SERVER_NAME: &str = "graze-scheduler";
/// ALPN protocol id.
pub const ALPN: &[u8] = b"graze";
/// Shortest keep-alive period of the connecting end (agents, clients), for the shortest
/// silence limits; see [`keep_alive`].
pub const KEEP_ALIVE_MIN: Duration = Duration::from_millis(500);
/// Longest keep-alive period: longer than an agent's status period (1 s), so while statuses
/// flow (each acknowledged within quinn's `max_ack_delay`, 25 ms, which restarts the
/// keep-alive timer) no keep-alive is sent at all, and with a margin for a late status.
pub const KEEP_ALIVE_MAX: Duration = Duration::from_millis(1250);

/// Keep-alive period of the connecting end for a silence limit of `silence` (the node
/// timeout): an eighth of it, between [`KEEP_ALIVE_MIN`] and [`KEEP_ALIVE_MAX`] (0.5 s up to
/// a 4 s limit, 1.25 s from 10 s, the default). The scheduler sends no keep-alives of its
/// own: its acknowledgement of each of the agent's packets (within 25 ms) is the datagram the
/// agent's self-fence listens for. So per agent and second the scheduler receives one status
/// and sends one ack; with a fixed 0.5 s keep-alive it also received a keep-alive and sent
/// its ack, twice the packets, which were most of its work per agent.
pub fn keep_alive(silence: Duration) -> Duration {
    (silence / 8).clamp(KEEP_ALIVE_MIN, KEEP_ALIVE_MAX)
}

/// Transport errors.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The access file could not be read or is invalid. Not retryable until fixed.
    #[error("access file {path}: {msg}")]
    Access {
        /// File.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A file in the state dir could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Setting up TLS or the endpoint failed.
    #[error("setting up QUIC: {0}")]
    Setup(String),
    /// The scheduler could not be reached or the handshake failed. Retryable.
    #[error("connecting to the scheduler at {addr}: {msg}")]
    Connect {
        /// Where.
        addr: String,
        /// Why.
        msg: String,
    },
    /// The connection broke. Retryable by reconnecting.
    #[error("connection lost: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// Writing failed. Retryable by reconnecting.
    #[error("sending: {0}")]
    Write(#[from] quinn::WriteError),
    /// Reading failed. Retryable by reconnecting.
    #[error("receiving: {0}")]
    Read(String),
    /// The peer sent a bad frame. Not retryable: the peer is broken or hostile.
    #[error("bad frame from peer: {0}")]
    Frame(#[from] proto::FrameError),
    /// The scheduler refused us (wrong token, wrong version, ...). Not retryable.
    #[error("refused by the scheduler: {0}")]
    Refused(String),
    /// The TLS handshake failed, e.g. the certificate does not match the pinned fingerprint.
    /// Not retryable: the access file or the scheduler's identity is wrong.
    #[error("cannot trust the scheduler at {addr}: {msg}")]
    Untrusted {
        /// Where.
        addr: String,
        /// Why.
        msg: String,
    },
}

impl NetError {
    /// Whether the connection ended by silence (the idle timeout), as opposed to a close or
    /// reset from the peer (e.g. a restarting scheduler).
    pub fn is_timeout(&self) -> bool {
        matches!(self, NetError::Connection(quinn::ConnectionError::TimedOut))
    }

    /// Whether trying again later may help.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            NetError::Connect { .. }
                | NetError::Connection(_)
                | NetError::Write(_)
                | NetError::Read(_)
        )
    }
}

/// What a client needs to reach and prove itself to a scheduler.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Access {
    /// Scheduler address, `HOST:PORT`.
    pub scheduler: String,
    /// SHA-256 of the scheduler's certificate, `sha256:HEX`.
    pub fingerprint: String,
    /// Cluster token.
    pub token: String,
}

impl Access {
    /// Read and check an access file.
    pub fn load(path: &Path) -> Result<Access, NetError> {
        let err = |msg: String| NetError::Access {
            path: path.to_owned(),
            msg,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let a: Access = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        parse_fingerprint(&a.fingerprint).map_err(err)?;
        if a.token.trim().is_empty() {
            return Err(err("token is empty".into()));
        }
        if !a.scheduler.contains(':') {
            return Err(err(format!(
                "invalid scheduler '{}': must be HOST:PORT",
                a.scheduler
            )));
        }
        Ok(a)
    }

    /// Write the access file, readable by its owner only.
    pub fn save(&self, path: &Path) -> Result<(), NetError> {
        let body = format!(
            "# graze access file: the scheduler's address, its certificate fingerprint and the\n\
             # cluster token. Whoever holds this file can use the cluster: keep it private.\n{}",
            toml::to_string(self).map_err(|e| NetError::Setup(e.to_string()))?
        );
        write_private(path, body.as_bytes())
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), NetError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| NetError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Parse `sha256:HEX` into the 32 digest bytes.
pub fn parse_fingerprint(s: &str) -> Result<[u8; 32], String> {
    let hexpart = s.strip_prefix("sha256:").ok_or_else(|| {
        format!("invalid fingerprint '{s}': must start with 'sha256:' followed by 64 hex digits")
    })?;
    let bytes = hex::decode(hexpart).map_err(|_| {
        format!("invalid fingerprint '{s}': must be 'sha256:' followed by 64 hex digits")
    })?;
    bytes.try_into().map_err(|_| {
        format!("invalid fingerprint '{s}': must be 'sha256:' followed by 64 hex digits")
    })
}

/// `sha256:HEX` of a DER certificate.
pub fn fingerprint(cert_der: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(cert_der)))
}

/// A random token of 32 bytes, hex.
pub fn random_token() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// `sha256:HEX` of a token, as token stores keep it (never the token itself).
pub fn token_hash(token: &str) -> String {
    use sha2::Digest;
    format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(token.as_bytes()))
    )
}

/// Compare tokens without an early exit.
pub fn token_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The scheduler's certificate and key.
pub struct Identity {
    /// DER certificate.
    pub cert: rustls::pki_types::CertificateDer<'static>,
    /// DER PKCS#8 key.
    pub key: Vec<u8>,
}

impl Identity {
    /// Load `DIR/cert.der` and `DIR/key.der`, creating a new self-signed pair on first start.
    pub fn load_or_create(dir: &Path) -> Result<Identity, NetError> {
        let cert_path = dir.join("cert.der");
        let key_path = dir.join("key.der");
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| NetError::Io { path, source }
        };
        if cert_path.exists() && key_path.exists() {
            let cert = std::fs::read(&cert_path).map_err(io(&cert_path))?;
            let key = std::fs::read(&key_path).map_err(io(&key_path))?;
            return Ok(Identity {
                cert: cert.into(),
                key,
            });
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let ck = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string()])
            .map_err(|e| NetError::Setup(e.to_string()))?;
        let key = ck.key_pair.serialize_der();
        write_private(&key_path, &key)?;
        write_private(&cert_path, ck.cert.der())?;
        Ok(Identity {
            cert: ck.cert.der().clone(),
            key,
        })
    }

    /// The certificate's fingerprint.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert)
    }
}

/// ring's provider with AES-128-GCM first (the default puts AES-256-GCM with SHA-384
/// first): every packet is sealed with the suite chosen, and the handshake's transcript and
/// key schedule hash with its SHA-256 instead of SHA-384 (a few per cent of a handshake).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::ring::cipher_suite as cs;
    Arc::new(rustls::crypto::CryptoProvider {
        cipher_suites: vec![
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
        ],
        ..rustls::crypto::ring::default_provider()
    })
}

/// The QUIC idle timeout for a silence limit of `silence`. QUIC restarts its idle timer when
/// it sends the first ack-eliciting packet after its last receipt, which a keep-alive does up
/// to K = [`keep_alive`]`(silence)` after that receipt; so the connecting end times out
/// between `idle` and `idle + K` after the peer's last packet. Taking half a keep-alive off
/// centres that window on `silence`. The scheduler, which sends no keep-alive, times out
/// `idle` after the peer's last packet (unless it sent a message since), the window's early
/// end.
pub fn quic_idle_timeout(silence: Duration) -> Duration {
    let k = keep_alive(silence);
    silence.saturating_sub(k / 2).max(k * 2)
}

/// Bidirectional streams a peer may have open at once on one connection (more wait).
const MAX_STREAMS: u32 = 64;

/// The transport of either end; `sends_keep_alives` for the connecting end only (see
/// [`keep_alive`]).
fn transport(
    idle_timeout: Duration,
    sends_keep_alives: bool,
) -> Result<Arc<quinn::TransportConfig>, NetError> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(sends_keep_alives.then(|| keep_alive(idle_timeout)));
    t.max_idle_timeout(Some(
        quic_idle_timeout(idle_timeout)
            .try_into()
            .map_err(|_| NetError::Setup("idle timeout too large".into()))?,
    ));
    // Streams are requests (a client's), checkpoint parts and restores (an agent's): a few at
    // a time. quinn sets up an entry for every stream the peer may open, on each connection:
    // 1024 cost about 60 KiB per connection, 10,000 agents 600 MiB in the scheduler.
    t.max_concurrent_bidi_streams(MAX_STREAMS.into());
    // graze opens no unidirectional streams.
    t.max_concurrent_uni_streams(0u32.into());
    Ok(Arc::new(t))
}

/// The socket buffers the scheduler asks for (the kernel caps them at `net.core.rmem_max`
/// and `wmem_max`). Every agent's packets arrive on its one socket: at 10,000 agents a status
/// a second each is 10,000 datagrams a second, and the default 208 KiB (about 200 datagrams
/// of kernel accounting) overflowed whenever the scheduler's thread was busy for a few tens
/// of ms, dropping handshakes and statuses.
const SERVER_UDP_BUFFER: usize = 8 << 20;

/// Ask for send and receive buffers of `bytes` on `socket`; returns the receive buffer the
/// kernel granted (it doubles the request for its own accounting and caps it), 0 if unknown.
pub fn set_udp_buffers(socket: &std::net::UdpSocket, bytes: usize) -> usize {
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    let mut got: libc::c_int = 0;
    let mut got_len = len;
    // SAFETY: the fd is the socket's, open while it lives; the option values are c_ints on
    // this stack and their lengths are given.
    unsafe {
        for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
            libc::setsockopt(fd, libc::SOL_SOCKET, opt, std::ptr::addr_of!(v).cast(), len);
        }
        if libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            std::ptr::addr_of_mut!(got).cast(),
            &mut got_len,
        ) != 0
        {
            return 0;
        }
    }
    usize::try_from(got).unwrap_or(0)
}

/// A QUIC server endpoint presenting `id`.
pub fn server_endpoint(
    listen: SocketAddr,
    id: &Identity,
    idle_timeout: Duration,
) -> Result<quinn::Endpoint, NetError> {
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(id.key.clone().into());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| NetError::Setup(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![id.cert.clone()], key)
        .map_err(|e| NetError::Setup(e.to_string()))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map_err(|e| NetError::Setup(e.to_string()))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    cfg.transport_config(transport(idle_timeout, false)?);
    // A stateless-reset key that survives restarts: after a scheduler restart, packets on old
    // connections are answered with a reset the agents recognise, so they reconnect at once
    // instead of waiting for the idle timeout.
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"graze stateless reset key");
    h.update(&id.key);
    let digest = h.finalize();
    let reset_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &digest);
    let mut ep_cfg = quinn::EndpointConfig::new(Arc::new(reset_key));
    // Connection ids are validated with a key; it must survive restarts too, or the restarted
    // scheduler drops old packets as invalid instead of resetting them.
    let mut cid_key = [0u8; 8];
    cid_key.copy_from_slice(&digest[..8]);
    let cid_key = u64::from_le_bytes(cid_key);
    ep_cfg.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    let socket = std::net::UdpSocket::bind(listen)
        .map_err(|e| NetError::Setup(format!("listen on {listen}: {e}")))?;
    let got = set_udp_buffers(&socket, SERVER_UDP_BUFFER);
    tracing::debug!(bytes = got, "the scheduler's UDP receive buffer");
    let runtime = quinn::default_runtime()
        .ok_or_else(|| NetError::Setup("no async runtime for QUIC".into()))?;
    quinn::Endpoint::new(ep_cfg, Some(cfg), socket, runtime)
        .map_err(|e| NetError::Setup(format!("listen on {listen}: {e}")))
}

#[derive(Debug)]
struct PinnedCert {
    pin: [u8; 32],
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use sha2::Digest;
        let got: [u8; 32] = sha2::Sha256::digest(end_entity.as_ref()).into();
        if got == self.pin {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "scheduler certificate fingerprint sha256:{} does not match the pinned sha256:{} from the access file",
                hex::encode(got),
                hex::encode(self.pin)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client endpoint bound to `bind` (port chosen by the OS) that only trusts `fingerprint`.
pub fn client_endpoint(
    bind: IpAddr,
    fingerprint: &str,
    idle_timeout: Duration,
) -> Result<quinn::Endpoint, NetError> {
    let mut ep = bind_client(bind, None)?;
    ep.set_default_client_config(client_config(fingerprint, idle_timeout)?);
    Ok(ep)
}

/// A client endpoint on `bind` (port chosen by the OS) with no default configuration; with
/// `buffers`, socket buffers of that size (see [`set_udp_buffers`]), for an endpoint many
/// connections share.
pub fn bind_client(bind: IpAddr, buffers: Option<usize>) -> Result<quinn::Endpoint, NetError> {
    let Some(bytes) = buffers else {
        return quinn::Endpoint::client(SocketAddr::new(bind, 0))
            .map_err(|e| NetError::Setup(format!("bind {bind}: {e}")));
    };
    let socket = std::net::UdpSocket::bind(SocketAddr::new(bind, 0))
        .map_err(|e| NetError::Setup(format!("bind {bind}: {e}")))?;
    set_udp_buffers(&socket, bytes);
    let runtime = quinn::default_runtime()
        .ok_or_else(|| NetError::Setup("no async runtime for QUIC".into()))?;
    quinn::Endpoint::new(quinn::EndpointConfig::default(), None, socket, runtime)
        .map_err(|e| NetError::Setup(format!("bind {bind}: {e}")))
}

/// The endpoint for connections that name no local address: one per tokio runtime (an
/// endpoint's driver is a task of the runtime that made it), kept for the process's life.
/// A new endpoint per connection cost about a third of a one-submit client's CPU: besides
/// its socket and zeroed buffers, quinn probes for UDP GRO with a throwaway IPv6 socket,
/// whose `UDP_GRO` and close flip a kernel static key twice, each patching kernel text on
/// every CPU.
fn shared_client(bind: IpAddr) -> Result<quinn::Endpoint, NetError> {
    static SHARED: std::sync::Mutex<Vec<(tokio::runtime::Id, IpAddr, quinn::Endpoint)>> =
        std::sync::Mutex::new(Vec::new());
    let rt = tokio::runtime::Handle::current().id();
    let mut shared = SHARED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, _, ep)) = shared.iter().find(|(r, b, _)| *r == rt && *b == bind) {
        return Ok(ep.clone());
    }
    let ep = bind_client(bind, None)?;
    // Only the latest runtime's endpoints are kept: a finished runtime's endpoint is dead.
    shared.retain(|(r, _, _)| *r == rt);
    shared.push((rt, bind, ep.clone()));
    Ok(ep)
}

/// A client configuration that only trusts `fingerprint`.
fn client_config(
    fingerprint: &str,
    idle_timeout: Duration,
) -> Result<quinn::ClientConfig, NetError> {
    let pin = parse_fingerprint(fingerprint).map_err(NetError::Setup)?;
    let provider = provider();
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| NetError::Setup(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCert { pin, provider }))
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| NetError::Setup(e.to_string()))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(transport(idle_timeout, true)?);
    Ok(cfg)
}

/// A framed bidirectional stream.
pub struct Framed {
    /// Sending half.
    pub send: quinn::SendStream,
    /// Receiving half.
    pub recv: quinn::RecvStream,
}

impl Framed {
    /// Send one message.
    pub async fn send<T: Serialize>(&mut self, msg: &T) -> Result<(), NetError> {
        send(&mut self.send, msg).await
    }
    /// Receive one message; `None` when the peer finished the stream cleanly.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<Option<T>, NetError> {
        recv(&mut self.recv).await
    }
}

/// Send one message on a stream.
pub async fn send<T: Serialize>(s: &mut quinn::SendStream, msg: &T) -> Result<(), NetError> {
    s.write_all(&proto::encode(msg)).await?;
    Ok(())
}

/// Receive one message; `None` on a clean end of stream between frames.
pub async fn recv<T: DeserializeOwned>(r: &mut quinn::RecvStream) -> Result<Option<T>, NetError> {
    let mut prefix = [0u8; 4];
    match r.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(quinn::ReadExactError::ReadError(quinn::ReadError::ConnectionLost(e))) => {
            return Err(NetError::Connection(e))
        }
        Err(e) => return Err(NetError::Read(e.to_string())),
    }
    let len = proto::frame_len(prefix)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)
        .await
        .map_err(|e| NetError::Read(e.to_string()))?;
    Ok(Some(proto::decode(&body)?))
}

/// Send one data block of a checkpoint stream (a 4-byte big-endian length, then the bytes).
/// An empty `data` is the end of the data ([`proto::CheckpointStream`]); longer blocks than
/// [`proto::MAX_BLOCK`] are split.
pub async fn send_block(s: &mut quinn::SendStream, data: &[u8]) -> Result<(), NetError> {
    if data.is_empty() {
        s.write_all(&0u32.to_be_bytes()).await?;
        return Ok(());
    }
    for chunk in data.chunks(proto::MAX_BLOCK) {
        // A chunk is at most MAX_BLOCK (1 MiB): its length fits in u32.
        let len = u32::try_from(chunk.len()).unwrap_or(u32::MAX);
        s.write_all(&len.to_be_bytes()).await?;
        s.write_all(chunk).await?;
    }
    Ok(())
}

/// Receive one data block of a checkpoint stream; `None` at the end-of-data block. A length
/// above [`proto::MAX_BLOCK`] or a stream that ends inside a block is an error.
pub async fn recv_block(r: &mut quinn::RecvStream) -> Result<Option<Vec<u8>>, NetError> {
    let mut prefix = [0u8; 4];
    match r.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::ReadError(quinn::ReadError::ConnectionLost(e))) => {
            return Err(NetError::Connection(e))
        }
        Err(e) => return Err(NetError::Read(e.to_string())),
    }
    let len = u32::from_be_bytes(prefix) as usize;
    if len == 0 {
        return Ok(None);
    }
    if len > proto::MAX_BLOCK {
        return Err(NetError::Read(format!(
            "checkpoint block of {len} bytes is larger than {}",
            proto::MAX_BLOCK
        )));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)
        .await
        .map_err(|e| NetError::Read(e.to_string()))?;
    Ok(Some(body))
}

/// Resolve `HOST:PORT`.
pub async fn resolve(addr: &str) -> Result<SocketAddr, NetError> {
    let mut it = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| NetError::Connect {
            addr: addr.into(),
            msg: format!("cannot resolve: {e}"),
        })?;
    it.next().ok_or_else(|| NetError::Connect {
        addr: addr.into(),
        msg: "no address".into(),
    })
}

/// A connection that passed the hello, with its control stream.
pub struct Session {
    /// The endpoint (kept alive with the connection; shared by the process's connections
    /// that named no local address).
    pub endpoint: quinn::Endpoint,
    /// The connection.
    pub conn: quinn::Connection,
    /// The control stream on which the hello went.
    pub control: Framed,
}

/// Connect, pin the certificate, say hello as `role` and wait for the welcome.
pub async fn connect(
    access: &Access,
    role: Role,
    bind: Option<IpAddr>,
    idle_timeout: Duration,
) -> Result<Session, NetError> {
    let addr = resolve(&access.scheduler).await?;
    // A named local address (an agent's) gets an endpoint of its own; the others share one.
    let endpoint = match bind {
        Some(bind) => bind_client(bind, None)?,
        None => shared_client(match addr {
            SocketAddr::V4(_) => IpAddr::from([0, 0, 0, 0]),
            SocketAddr::V6(_) => IpAddr::from([0u16; 8]),
        })?,
    };
    hello(endpoint, addr, access, role, idle_timeout).await
}

/// [`connect`] on a given endpoint (one that many connections may share, such as the load
/// generator's simulated agents).
pub async fn connect_via(
    endpoint: quinn::Endpoint,
    access: &Access,
    role: Role,
    idle_timeout: Duration,
) -> Result<Session, NetError> {
    let addr = resolve(&access.scheduler).await?;
    hello(endpoint, addr, access, role, idle_timeout).await
}

/// Connect on `endpoint` to `addr`, pin the certificate, say hello and wait for the welcome.
async fn hello(
    endpoint: quinn::Endpoint,
    addr: SocketAddr,
    access: &Access,
    role: Role,
    idle_timeout: Duration,
) -> Result<Session, NetError> {
    let config = client_config(&access.fingerprint, idle_timeout)?;
    let cerr = |msg: String| NetError::Connect {
        addr: access.scheduler.clone(),
        msg,
    };
    let conn = endpoint
        .connect_with(config, addr, SERVER_NAME)
        .map_err(|e| cerr(e.to_string()))?
        .await
        .map_err(|e| match &e {
            // TLS alerts are the crypto range of QUIC transport error codes (0x100-0x1ff).
            quinn::ConnectionError::TransportError(t)
                if (0x100..0x200).contains(&u64::from(t.code)) =>
            {
                NetError::Untrusted {
                    addr: access.scheduler.clone(),
                    msg: t.reason.clone(),
                }
            }
            _ => cerr(e.to_string()),
        })?;
    let (send, recv) = conn.open_bi().await?;
    let mut control = Framed { send, recv };
    control
        .send(&Hello {
            version: proto::PROTOCOL_VERSION,
            role,
            token: access.token.clone(),
            software: format!("graze {}", env!("CARGO_PKG_VERSION")),
        })
        .await?;
    match control.recv::<HelloReply>().await? {
        Some(HelloReply::Welcome { version }) => {
            proto::check_version("scheduler", version).map_err(NetError::Refused)?;
            Ok(Session {
                endpoint,
                conn,
                control,
            })
        }
        Some(HelloReply::Refused { reason }) => Err(NetError::Refused(reason)),
        None => Err(NetError::Refused(
            "the scheduler closed the connection during the hello".into(),
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn access_round_trip_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("access.toml");
        let a = Access {
            scheduler: "127.0.0.1:7700".into(),
            fingerprint: fingerprint(b"x"),
            token: random_token(),
        };
        a.save(&p).unwrap();
        assert_eq!(Access::load(&p).unwrap(), a);
        std::fs::write(
            &p,
            "scheduler = \"h:1\"\nfingerprint = \"md5:00\"\ntoken = \"t\"\n",
        )
        .unwrap();
        let e = Access::load(&p).unwrap_err().to_string();
        assert!(e.contains("invalid fingerprint 'md5:00'"), "{e}");
        std::fs::write(
            &p,
            "scheduler = \"h:1\"\nfingerprint = \"sha256:00\"\ntoken = \"t\"\nx = 1\n",
        )
        .unwrap();
        let e = Access::load(&p).unwrap_err().to_string();
        assert!(e.contains("unknown field"), "{e}");
    }

    #[test]
    fn udp_buffers_are_what_was_asked_within_the_kernel_cap() {
        let max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let bytes = 1 << 20;
        // Linux doubles the request (its bookkeeping) after capping it at rmem_max.
        assert_eq!(set_udp_buffers(&s, bytes), 2 * bytes.min(max));
    }

    #[test]
    fn keep_alive_and_idle_timeout_follow_the_silence_limit() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        // The shortest limits keep the 0.5 s keep-alive ...
        assert_eq!(keep_alive(s(3)), ms(500));
        assert_eq!(quic_idle_timeout(s(3)), ms(2750));
        // ... the default one sends none while 1 s statuses flow.
        assert_eq!(keep_alive(s(10)), ms(1250));
        assert!(keep_alive(s(10)) > ms(1000) + ms(25) + ms(200));
        assert_eq!(quic_idle_timeout(s(10)), ms(9375));
        assert_eq!(keep_alive(s(600)), KEEP_ALIVE_MAX);
        // Monotonic, so the shorter of two limits gives the shorter idle timeout.
        let mut last = Duration::ZERO;
        for t in (2000..20_000).step_by(50) {
            let idle = quic_idle_timeout(ms(t));
            assert!(idle >= last, "{t} ms");
            assert!(idle >= keep_alive(ms(t)) * 2);
            last = idle;
        }
    }

    #[test]
    fn token_hash_is_sha256() {
        assert_eq!(
            token_hash("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn token_compare() {
        assert!(token_eq("abc", "abc"));
        assert!(!token_eq("abc", "abd"));
        assert!(!token_eq("abc", "ab"));
    }
}
