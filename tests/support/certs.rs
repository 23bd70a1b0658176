//! A test CA and a server certificate for `127.0.0.1`/`localhost`, and an
//! RSA key + self-signed certificate that signs registry tokens; made once
//! per test process with openssl.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::{fresh_dir, require};

pub struct Certs {
    pub dir: PathBuf,
    pub ca_crt: PathBuf,
    pub server_crt: PathBuf,
    pub server_key: PathBuf,
    /// A directory holding only `ca.crt` (what `skopeo --cert-dir` wants).
    pub ca_dir: PathBuf,
    /// The token signing key (PKCS#8 DER) and its certificate (PEM, DER).
    pub token_key_der: PathBuf,
    pub token_crt: PathBuf,
    pub token_crt_der: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

impl Certs {
    pub fn get() -> &'static Certs {
        static CERTS: OnceLock<Certs> = OnceLock::new();
        CERTS.get_or_init(|| {
            require("openssl", "openssl");
            let dir = fresh_dir("certs-");
            let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
            let mut ca = vec!["req", "-x509"];
            ca.extend(ec);
            ca.extend(["-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=ciao test CA"]);
            ca.extend(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
            openssl(&dir, &ca);
            let mut csr = vec!["req"];
            csr.extend(ec);
            csr.extend(["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]);
            openssl(&dir, &csr);
            std::fs::write(
                dir.join("ext.cnf"),
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
            )
            .unwrap();
            openssl(
                &dir,
                &["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf"],
            );
            openssl(&dir, &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "token.key"]);
            openssl(&dir, &["pkcs8", "-topk8", "-nocrypt", "-in", "token.key", "-outform", "DER", "-out", "token.key.der"]);
            openssl(&dir, &["req", "-x509", "-new", "-key", "token.key", "-subj", "/CN=ciao test token issuer", "-days", "2", "-out", "token.crt"]);
            openssl(&dir, &["x509", "-in", "token.crt", "-outform", "DER", "-out", "token.crt.der"]);
            let ca_dir = dir.join("ca-only");
            std::fs::create_dir(&ca_dir).unwrap();
            std::fs::copy(dir.join("ca.crt"), ca_dir.join("ca.crt")).unwrap();
            Certs {
                ca_crt: dir.join("ca.crt"),
                server_crt: dir.join("server.crt"),
                server_key: dir.join("server.key"),
                ca_dir,
                token_key_der: dir.join("token.key.der"),
                token_crt: dir.join("token.crt"),
                token_crt_der: dir.join("token.crt.der"),
                dir,
            }
        })
    }
}
