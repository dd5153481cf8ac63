//! A private CA for tests' TLS servers (the in-test API server, a TLS
//! registry): its certificate, and leaf certificates it signs.

use std::io;

fn other(e: impl ToString) -> io::Error {
    io::Error::other(e.to_string())
}

pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> io::Result<Self> {
        let key = rcgen::KeyPair::generate().map_err(other)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(other)?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let issuer = rcgen::CertifiedIssuer::self_signed(params, key).map_err(other)?;
        Ok(Self { issuer })
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    pub fn der(&self) -> &tokio_rustls::rustls::pki_types::CertificateDer<'static> {
        self.issuer.der()
    }

    /// A certificate for `params`, and its key, signed by this CA.
    pub fn sign(
        &self,
        params: rcgen::CertificateParams,
    ) -> io::Result<(rcgen::Certificate, rcgen::KeyPair)> {
        let key = rcgen::KeyPair::generate().map_err(other)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(other)?;
        Ok((cert, key))
    }

    /// A server certificate for `name` (a host name or an IP address).
    pub fn server(&self, name: &str) -> io::Result<(rcgen::Certificate, rcgen::KeyPair)> {
        self.sign(rcgen::CertificateParams::new(vec![name.to_string()]).map_err(other)?)
    }
}
