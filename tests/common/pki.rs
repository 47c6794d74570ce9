//! Keys and certificates made with `openssl` in a scratch directory, for the TLS
//! tests of the client ports and the replication link.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

/// libfaketime, which `openssl` runs under to make a certificate that has expired.
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// `openssl req` options for a new P-256 key, unencrypted.
const NEW_P256_KEY: [&str; 5] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

/// A scratch directory of keys and certificates made with `openssl`.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("stickless-tls-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Pki { dir }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    fn openssl(&self, args: &[&str], fake_time: Option<&str>) {
        let mut cmd = Command::new("openssl");
        cmd.args(args).current_dir(&self.dir);
        if let Some(offset) = fake_time {
            cmd.env("LD_PRELOAD", LIBFAKETIME).env("FAKETIME", offset).env("DONT_FAKE_MONOTONIC", "1");
        }
        let out = cmd.output().expect("openssl (scripts/test installs it)");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A self-signed CA: `<name>.pem` and `<name>.key`.
    pub fn ca(&self, name: &str) -> &Pki {
        let (key, pem, subject) = (format!("{name}.key"), format!("{name}.pem"), format!("/CN={name}"));
        let rest = ["-keyout", &key, "-out", &pem, "-days", "30", "-subj", &subject];
        self.openssl(&[&["req", "-x509"][..], &NEW_P256_KEY, &rest].concat(), None);
        self
    }

    /// A certificate for `localhost` and 127.0.0.1 signed by `ca`: `<name>.pem`,
    /// `<name>.key`; `fake_time` shifts the clock it is made at (libfaketime's syntax).
    pub fn issue(&self, ca: &str, name: &str, fake_time: Option<&str>) -> &Pki {
        let (key, csr, pem) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
        let ext = format!("{name}.ext");
        let extensions = "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n";
        std::fs::write(self.path(&ext), extensions).unwrap();
        let subject = format!("/CN={name}");
        let rest = ["-keyout", &key, "-out", &csr, "-subj", &subject];
        self.openssl(&[&["req"][..], &NEW_P256_KEY, &rest].concat(), None);
        let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
        let sign = [
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "10",
            "-extfile",
            &ext,
        ];
        self.openssl(&sign, fake_time);
        self
    }

    /// Copies `from`'s certificate and key to `to`'s names (a node's live files).
    pub fn install(&self, from: &str, to: &str) {
        for suffix in ["pem", "key"] {
            std::fs::copy(self.path(&format!("{from}.{suffix}")), self.path(&format!("{to}.{suffix}"))).unwrap();
        }
    }

    /// The usual set: CA `ca` with `server` and `client`, and `other-ca` with
    /// `stranger`, a client certificate no one here trusts.
    pub fn standard(name: &str) -> Pki {
        let pki = Pki::new(name);
        pki.ca("ca").issue("ca", "server", None).issue("ca", "client", None);
        pki.ca("other-ca").issue("other-ca", "stranger", None);
        pki
    }
}

impl Pki {
    /// A client configuration trusting `ca`, showing `identity`'s certificate if given.
    pub fn client_config(&self, ca: &str, identity: Option<&str>) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(self.path(&format!("{ca}.pem"))).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        Arc::new(match identity {
            None => builder.with_no_client_auth(),
            Some(name) => {
                let chain = CertificateDer::pem_file_iter(self.path(&format!("{name}.pem")))
                    .unwrap()
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap();
                let key = PrivateKeyDer::from_pem_file(self.path(&format!("{name}.key"))).unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
        })
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
