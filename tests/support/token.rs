//! A token endpoint for the registry's token auth: checks the client's
//! basic credentials and grants the requested scopes as an RS256 JWT signed
//! by the test token certificate (sent in the `x5c` header, which the
//! registry checks against its `rootcertbundle`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use serde_json::json;

use super::certs::Certs;

pub struct TokenServer {
    /// `http://127.0.0.1:PORT/token`.
    pub realm: String,
    pub service: String,
    pub issuer: String,
    /// The certificate bundle the registry trusts for tokens.
    pub bundle: std::path::PathBuf,
    state: Arc<State>,
}

struct State {
    users: HashMap<String, String>,
    service: String,
    issuer: String,
    key: aws_lc_rs::signature::RsaKeyPair,
    cert_der: Vec<u8>,
    requests: AtomicUsize,
    scopes: Mutex<Vec<String>>,
    tokens: Mutex<Vec<String>>,
}

impl TokenServer {
    /// Starts the endpoint on a free port, on a thread of its own.
    pub fn start(users: &[(&str, &str)]) -> TokenServer {
        let certs = Certs::get();
        let key = aws_lc_rs::signature::RsaKeyPair::from_pkcs8(&std::fs::read(&certs.token_key_der).unwrap()).expect("RSA key");
        let state = Arc::new(State {
            users: users.iter().map(|(u, p)| (u.to_string(), p.to_string())).collect(),
            service: "ciao-test-registry".into(),
            issuer: "ciao-test-issuer".into(),
            key,
            cert_der: std::fs::read(&certs.token_crt_der).unwrap(),
            requests: AtomicUsize::new(0),
            scopes: Mutex::new(Vec::new()),
            tokens: Mutex::new(Vec::new()),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let st = state.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((stream, _)) = listener.accept().await else { continue };
                    let st = st.clone();
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req| {
                            let st = st.clone();
                            async move { Ok::<_, std::convert::Infallible>(handle(&st, req)) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                            .await;
                    });
                }
            });
        });
        TokenServer {
            realm: format!("http://127.0.0.1:{port}/token"),
            service: state.service.clone(),
            issuer: state.issuer.clone(),
            bundle: certs.token_crt.clone(),
            state,
        }
    }

    /// Token requests answered so far.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Every bearer token issued so far (secrets: they must never be shown).
    pub fn tokens(&self) -> Vec<String> {
        self.state.tokens.lock().unwrap().clone()
    }

    /// The `scope` parameters of every token request, in order (one string per request).
    pub fn scopes(&self) -> Vec<String> {
        self.state.scopes.lock().unwrap().clone()
    }
}

fn handle(st: &State, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    st.requests.fetch_add(1, Ordering::SeqCst);
    let query = req.uri().query().unwrap_or("");
    let mut scopes = Vec::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if k == "scope" {
            scopes.extend(v.split(' ').map(String::from));
        }
    }
    st.scopes.lock().unwrap().push(scopes.join(" "));
    let user = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_string(), p.to_string())))
        .filter(|(u, p)| st.users.get(u) == Some(p))
        .map(|(u, _)| u);
    let Some(user) = user else {
        return Response::builder().status(StatusCode::UNAUTHORIZED).body(Full::new(Bytes::from_static(b"{\"details\":\"bad credentials\"}"))).unwrap();
    };
    let access: Vec<_> = scopes
        .iter()
        .filter_map(|s| {
            let mut p = s.splitn(3, ':');
            let (t, name, actions) = (p.next()?, p.next()?, p.next()?);
            Some(json!({"type": t, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
        })
        .collect();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [STANDARD.encode(&st.cert_der)]});
    let claims = json!({
        "iss": st.issuer, "sub": user, "aud": st.service,
        "exp": now + 300, "nbf": now - 10, "iat": now,
        "jti": uuid::Uuid::new_v4().to_string(), "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap())
    );
    let mut sig = vec![0u8; st.key.public_modulus_len()];
    st.key
        .sign(&aws_lc_rs::signature::RSA_PKCS1_SHA256, &aws_lc_rs::rand::SystemRandom::new(), signing_input.as_bytes(), &mut sig)
        .unwrap();
    let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig));
    super::canary::issued(&token);
    st.tokens.lock().unwrap().push(token.clone());
    let body = json!({"token": token, "access_token": token, "expires_in": 300});
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(&body).unwrap())))
        .unwrap()
}
