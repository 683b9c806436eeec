//! A throw-away PKI: one self-signed CA and one server certificate for every test name, written
//! to a temporary directory (PEM files for curl and the backends, DER roots for rustls).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;
use tempfile::TempDir;

/// Names (and addresses) the server certificate is valid for.
pub const SERVER_NAMES: &[&str] =
    &["h2.lb.test", "h1.lb.test", "echo.lb.test", "*.lb.test", "10.77.1.1", "fd77:1::1", "10.77.2.2", "10.77.2.3", "10.77.2.4", "10.77.2.5"];

/// The CA and server certificate files; the directory is removed on drop.
pub struct Certs {
    dir: TempDir,
    ca_der: CertificateDer<'static>,
    roots: Arc<RootCertStore>,
}

impl Certs {
    pub fn generate() -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("lb-tests-certs-").tempdir()?;

        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "lb-tests CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca_key = KeyPair::generate().context("CA key")?;
        let ca = ca_params.self_signed(&ca_key).context("self-signing the CA")?;

        let names: Vec<String> = SERVER_NAMES.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).context("server certificate names")?;
        params.distinguished_name.push(DnType::CommonName, "h2.lb.test");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let key = KeyPair::generate().context("server key")?;
        let cert = params.signed_by(&key, &ca, &ca_key).context("signing the server certificate")?;

        let write = |name: &str, text: &str| -> Result<()> {
            let path = dir.path().join(name);
            fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
        };
        write("ca.pem", &ca.pem())?;
        write("server.pem", &cert.pem())?;
        write("server.key", &key.serialize_pem())?;

        let ca_der = ca.der().clone();
        let mut roots = RootCertStore::empty();
        roots.add(ca_der.clone()).context("adding the CA to the root store")?;
        Ok(Self { dir, ca_der, roots: Arc::new(roots) })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    /// The CA certificate (PEM), for `curl --cacert`.
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
    /// The server certificate (PEM).
    pub fn cert_pem(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }
    /// The server private key (PEM, PKCS#8).
    pub fn key_pem(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }
    /// Roots for rustls clients: only the test CA.
    pub fn roots(&self) -> Arc<RootCertStore> {
        self.roots.clone()
    }
}
