//! Certificates and TLS settings: loading PEM files, the server's rustls configuration
//! (`dwell serve --tls-cert --tls-key`) and the roots that outbound clients trust
//! (Mozilla's, plus a private CA given with `--ca-cert`). rustls with the ring provider
//! is the one TLS stack; the HTTP layer and the HTTP clients only receive what is built
//! here.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::ring;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: String },
    #[error("the TLS configuration is not usable: {0}")]
    Config(String),
}

fn read_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Every certificate in a PEM file (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| read_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_err(path, e))?;
    if certs.is_empty() {
        return Err(Error::NoCertificate {
            path: path.display().to_string(),
        });
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| read_err(path, e))
}

/// The server side: a certificate chain and its key, TLS 1.2 and 1.3, HTTP/1.1.
pub fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, Error> {
    let chain = load_certs(cert)?;
    let key = load_key(key)?;
    let mut config =
        rustls::ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| Error::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// What outbound clients (guests' calls, callbacks, the CLI) verify servers against:
/// Mozilla's roots, plus every certificate in `extra_ca` when given.
pub fn client_roots(extra_ca: Option<&Path>) -> Result<ureq::tls::RootCerts, Error> {
    let Some(path) = extra_ca else {
        return Ok(ureq::tls::RootCerts::WebPki);
    };
    let mut roots: Vec<ureq::tls::Certificate<'static>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    for cert in load_certs(path)? {
        roots.push(ureq::tls::Certificate::from_der(cert.as_ref()).to_owned());
    }
    Ok(ureq::tls::RootCerts::new_with_certs(&roots))
}

/// The TLS settings of an outbound ureq client.
pub fn client_config(extra_ca: Option<&Path>) -> Result<ureq::tls::TlsConfig, Error> {
    Ok(ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .root_certs(client_roots(extra_ca)?)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&c, cert.cert.pem()).unwrap();
        std::fs::write(&k, cert.signing_key.serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn a_certificate_and_key_make_a_server_config() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(dir.path());
        let config = server_config(&cert, &key).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        // A key file in place of the certificate names the file.
        let err = server_config(&key, &key).unwrap_err().to_string();
        assert!(err.contains("key.pem"), "{err}");
        assert!(client_roots(Some(&dir.path().join("missing.pem"))).is_err());
    }

    #[test]
    fn a_private_ca_is_trusted_beside_mozillas_roots() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = self_signed(dir.path());
        let ureq::tls::RootCerts::Specific(roots) = client_roots(Some(&cert)).unwrap() else {
            panic!("a CA file gives specific roots");
        };
        assert_eq!(
            roots.len(),
            webpki_root_certs::TLS_SERVER_ROOT_CERTS.len() + 1
        );
        assert!(matches!(
            client_roots(None).unwrap(),
            ureq::tls::RootCerts::WebPki
        ));
    }
}
