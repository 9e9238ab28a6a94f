//! The proxy listener's TLS certificate, read from its files at start and again at every
//! reload. The listener asks [`Certificates`] for the certificate of each new connection (a
//! rustls [`ResolvesServerCert`]), so a reload that finds a renewed certificate and key (at
//! the same paths or new ones) serves them to the next handshake without a restart; connections
//! already open keep the session they negotiated. A file that cannot be read, holds no
//! certificate or key, or a key that does not match the certificate keeps the certificate in
//! force, and the problem is reported with the field it comes from.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::tls::sign::CertifiedKey;
use pingora::tls::{CertificateDer, PrivateKeyDer};
use rustls::pki_types::pem::{self, PemObject};
use rustls::server::{ClientHello, ResolvesServerCert};

/// The configuration path of the certificate file.
pub const CERTIFICATE_FIELD: &str = "tls.certificateFile";
/// The configuration path of the private key file.
pub const PRIVATE_KEY_FIELD: &str = "tls.privateKeyFile";

/// A problem with the certificate or key files: the configuration field it comes from, and
/// what is wrong (never the files' contents).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateError {
    /// `tls.certificateFile` or `tls.privateKeyFile`.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

/// The certificate in force for new TLS connections.
pub struct Certificates {
    current: ArcSwap<CertifiedKey>,
}

impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Certificates")
    }
}

impl Certificates {
    /// The certificate chain in `certificate` and the private key in `key` (PEM files), put in
    /// force. `Err` names the file at fault.
    pub fn load(certificate: &Path, key: &Path) -> Result<Arc<Certificates>, CertificateError> {
        let loaded = Certificates::read(certificate, key)?;
        Ok(Arc::new(Certificates {
            current: ArcSwap::from_pointee(loaded),
        }))
    }

    /// Reads and checks a pair of files without putting it in force: at least one certificate,
    /// one private key the process's cryptography can use, the key belonging to the first
    /// certificate. `Err` names the file at fault.
    pub fn read(certificate: &Path, key: &Path) -> Result<CertifiedKey, CertificateError> {
        read_pair(certificate, key)
    }

    /// Puts `pair` (from [`Certificates::read`]) in force for the next handshakes.
    pub fn install(&self, pair: CertifiedKey) {
        self.current.store(Arc::new(pair));
    }

    /// The DER of the end-entity certificate in force (to tell which one is served).
    pub fn end_entity(&self) -> Vec<u8> {
        let current = self.current.load();
        current.cert.first().map(|c| c.to_vec()).unwrap_or_default()
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Reads and checks the pair: at least one certificate, one private key the process's
/// cryptography can use, and the key belonging to the first certificate.
fn read_pair(certificate: &Path, key: &Path) -> Result<CertifiedKey, CertificateError> {
    let chain = read_chain(certificate)?;
    let private = read_key(key)?;
    pingora::tls::install_default_crypto_provider();
    let problem = |message: String| CertificateError {
        field: PRIVATE_KEY_FIELD,
        message,
    };
    let provider = rustls::crypto::CryptoProvider::get_default()
        .ok_or_else(|| problem("no TLS cryptography provider is installed".into()))?;
    let signing = provider
        .key_provider
        .load_private_key(private)
        .map_err(|e| problem(format!("the private key cannot be used: {e}")))?;
    let pair = CertifiedKey::new(chain, signing);
    match pair.keys_match() {
        Ok(()) => Ok(pair),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(pair),
        Err(rustls::Error::InconsistentKeys(_)) => Err(problem(
            "the private key does not belong to the certificate (tls.certificateFile's first)"
                .into(),
        )),
        Err(e) => Err(CertificateError {
            field: CERTIFICATE_FIELD,
            message: format!("the certificate cannot be read: {e}"),
        }),
    }
}

/// The PEM contents of `path`; `Err` for `field` when it cannot be read.
fn read_file(path: &Path, field: &'static str) -> Result<Vec<u8>, CertificateError> {
    std::fs::read(path).map_err(|e| CertificateError {
        field,
        message: format!("cannot read {}: {e}", path.display()),
    })
}

/// The certificates of the PEM file at `path`, in order; `Err` when there is none.
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertificateError> {
    let pem = read_file(path, CERTIFICATE_FIELD)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| CertificateError {
            field: CERTIFICATE_FIELD,
            message: format!("{} is not a PEM file", path.display()),
        })?;
    if chain.is_empty() {
        return Err(CertificateError {
            field: CERTIFICATE_FIELD,
            message: format!("no certificate in {}", path.display()),
        });
    }
    Ok(chain)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) of the PEM file at `path`.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertificateError> {
    let pem = read_file(path, PRIVATE_KEY_FIELD)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| CertificateError {
        field: PRIVATE_KEY_FIELD,
        message: match e {
            pem::Error::NoItemsFound => format!("no private key in {}", path.display()),
            _ => format!("{} is not a PEM file", path.display()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate and its key, made by `openssl` in `dir` under `name`.
    fn pair(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let (cert, key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        let status = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj"])
            .arg(format!("/CN={name}"))
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl");
        assert!(status.success());
        (cert, key)
    }

    #[test]
    fn a_renewed_pair_replaces_the_one_in_force() {
        let dir = tempfile::tempdir().expect("dir");
        let (cert, key) = pair(dir.path(), "one");
        let certificates = Certificates::load(&cert, &key).expect("load");
        let first = certificates.end_entity();
        let (cert2, key2) = pair(dir.path(), "two");
        certificates.install(Certificates::read(&cert2, &key2).expect("read"));
        assert_ne!(certificates.end_entity(), first);
        assert_eq!(
            certificates.end_entity(),
            read_chain(&cert2).expect("chain")[0].to_vec()
        );
    }

    #[test]
    fn a_bad_pair_keeps_the_one_in_force_and_names_its_field() {
        let dir = tempfile::tempdir().expect("dir");
        let (cert, key) = pair(dir.path(), "one");
        let (_, other_key) = pair(dir.path(), "two");
        let certificates = Certificates::load(&cert, &key).expect("load");
        let first = certificates.end_entity();
        let mismatch = Certificates::read(&cert, &other_key).unwrap_err();
        assert_eq!(mismatch.field, PRIVATE_KEY_FIELD);
        assert!(mismatch.message.contains("does not belong"), "{mismatch:?}");
        let missing = Certificates::read(&dir.path().join("gone.crt"), &key).unwrap_err();
        assert_eq!(missing.field, CERTIFICATE_FIELD);
        let truncated = dir.path().join("half.crt");
        let text = std::fs::read_to_string(&cert).expect("cert");
        std::fs::write(&truncated, &text[..text.len() / 2]).expect("write");
        assert_eq!(
            Certificates::read(&truncated, &key).unwrap_err().field,
            CERTIFICATE_FIELD
        );
        assert_eq!(
            Certificates::read(&cert, &cert).unwrap_err().field,
            PRIVATE_KEY_FIELD
        );
        // Nothing read was put in force.
        assert_eq!(certificates.end_entity(), first);
    }
}
