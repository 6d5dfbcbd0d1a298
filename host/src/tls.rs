//! TLS setup: certificates from files or a development certificate, optional mutual TLS, and
//! the cheapest settings that stay secure.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{ClientAuth, TlsMode, TlsSettings};

/// A ready TLS configuration, and the dev certificate's PEM path if one is in use.
pub struct TlsSetup {
    pub config: Arc<rustls::ServerConfig>,
    pub dev_cert: Option<PathBuf>,
    /// The names the certificate is for (DNS names and IP addresses): the server's own hosts,
    /// for same-origin checks.
    pub names: Vec<String>,
}

/// `None` for plain ws://.
pub fn setup(settings: &TlsSettings, state_dir: &Path) -> Result<Option<TlsSetup>> {
    if matches!(settings.mode, TlsMode::Plain) {
        return Ok(None);
    }
    // The client CA first: a bad bundle must fail before the dev certificate is written.
    let provider = Arc::new(tuned_provider());
    let verifier = client_verifier(settings, provider.clone())?;
    let (cert_path, key_path, dev_cert) = match &settings.mode {
        TlsMode::Plain => return Ok(None),
        TlsMode::Files { cert, key } => (cert.clone(), key.clone(), None),
        TlsMode::Dev => {
            let (cert, key) = dev_certificate(state_dir)?;
            (cert.clone(), key, Some(cert))
        }
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .with_context(|| format!("cannot read certificate {}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad PEM in certificate {}", cert_path.display()))?;
    if chain.is_empty() {
        bail!("certificate file {} holds no certificate", cert_path.display());
    }
    let names = names_of(&chain[0]);
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("cannot read a private key from {}", key_path.display()))?;

    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS protocol versions")?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).with_context(|| {
        format!("certificate {} and key {} do not form a usable pair", cert_path.display(), key_path.display())
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // The server's preference picks AES-128-GCM (hardware-accelerated) when the client offers it.
    config.ignore_client_order = true;
    Ok(Some(TlsSetup { config: Arc::new(config), dev_cert, names }))
}

/// The ring provider with suites ordered cheapest-first; all remain modern AEAD suites.
fn tuned_provider() -> rustls::crypto::CryptoProvider {
    use rustls::crypto::ring::cipher_suite as cs;
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites = vec![
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    p
}

fn client_verifier(
    settings: &TlsSettings,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Option<Arc<dyn ClientCertVerifier>>> {
    if settings.client_auth == ClientAuth::Off {
        return Ok(None);
    }
    let Some(ca_path) = &settings.client_ca else { bail!("client_auth needs client_ca") };
    let mut roots = RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca_path)
        .with_context(|| format!("cannot read client CA bundle {}", ca_path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad PEM in client CA bundle {}", ca_path.display()))?;
    for cert in certs {
        roots.add(cert).with_context(|| format!("unusable CA certificate in {}", ca_path.display()))?;
    }
    if roots.is_empty() {
        bail!("client CA bundle {} holds no certificate", ca_path.display());
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = match settings.client_auth {
        ClientAuth::Optional => builder.allow_unauthenticated(),
        _ => builder,
    };
    Ok(Some(builder.build().context("building the client certificate verifier")?))
}

/// The development certificate for localhost, 127.0.0.1 and ::1, generated once and kept in
/// `state_dir` so browsers and `--ca` flags keep trusting it across restarts.
fn dev_certificate(state_dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let cert = state_dir.join("dev-cert.pem");
    let key = state_dir.join("dev-key.pem");
    if cert.is_file() && key.is_file() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(state_dir).with_context(|| format!("cannot create {}", state_dir.display()))?;
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()])
            .context("generating the development certificate")?;
    write_private(&key, generated.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(&cert, generated.cert.pem()).with_context(|| format!("cannot write {}", cert.display()))?;
    Ok((cert, key))
}

fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(data).with_context(|| format!("cannot write {}", path.display()))
}

/// The subject of a DER certificate, as "CN=alice, O=Example".
pub fn subject_of(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.subject().to_string())
}

/// The subject alternative names of a DER certificate: DNS names as written (`*.example.com`
/// included) and IP addresses, IPv6 without brackets.
pub fn names_of(der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else { return Vec::new() };
    let Ok(Some(san)) = cert.subject_alternative_name() else { return Vec::new() };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            GeneralName::IPAddress(ip) => match ip.len() {
                4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).ok()?).to_string()),
                16 => Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).ok()?).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}
