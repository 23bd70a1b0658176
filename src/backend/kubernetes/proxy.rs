//! Which proxy the Kubernetes client goes through, decided as kubectl (Go's
//! `http.ProxyFromEnvironment`) does: the kubeconfig cluster's `proxy-url`
//! wins; otherwise `HTTPS_PROXY` for an https server (`HTTP_PROXY` for an
//! http one) unless `NO_PROXY` names the server; loopback servers are never
//! proxied.

use std::net::IpAddr;

use crate::config::Env;

/// The proxy for `server`, or `None` to connect directly.
///
/// # Errors
/// A proxy URL that does not parse, naming where it came from.
pub fn choose(server: &http::Uri, kubeconfig_proxy: Option<&str>, env: &dyn Env) -> Result<Option<http::Uri>, String> {
    let parse = |url: &str, origin: &str| {
        url.parse::<http::Uri>()
            .map_err(|e| format!("the proxy URL {url:?} from {origin} is not valid: {e}"))
            .map(Some)
    };
    if let Some(p) = kubeconfig_proxy.filter(|p| !p.is_empty()) {
        return parse(p, "the kubeconfig's proxy-url");
    }
    let host = server.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    let https = server.scheme_str() != Some("http");
    let port = server.port_u16().unwrap_or(if https { 443 } else { 80 });
    if is_loopback(&host) {
        return Ok(None);
    }
    let names: &[&str] = if https { &["HTTPS_PROXY", "https_proxy"] } else { &["HTTP_PROXY", "http_proxy"] };
    let Some((name, proxy)) = names.iter().find_map(|n| env.var(n).map(|v| (*n, v))) else {
        return Ok(None);
    };
    let no_proxy = env.var("NO_PROXY").or_else(|| env.var("no_proxy")).unwrap_or_default();
    if no_proxy_matches(&no_proxy, &host, port) {
        return Ok(None);
    }
    // Go accepts a bare host:port and assumes http://.
    let proxy = if proxy.contains("://") { proxy } else { format!("http://{proxy}") };
    parse(&proxy, name)
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether a `NO_PROXY` list names `host:port`: `*`, IP addresses, CIDR
/// ranges, `host[:port]` (the host and its subdomains), `.domain` and
/// `*.domain` (subdomains only).
pub fn no_proxy_matches(list: &str, host: &str, port: u16) -> bool {
    let ip = host.parse::<IpAddr>().ok();
    list.split(',').map(|e| e.trim().to_ascii_lowercase()).filter(|e| !e.is_empty()).any(|entry| {
        if entry == "*" {
            return true;
        }
        if let Ok(net) = entry.parse::<ipnet::IpNet>() {
            return ip.is_some_and(|ip| net.contains(&ip));
        }
        if let Ok(e) = entry.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            return ip == Some(e);
        }
        let (name, entry_port) = match entry.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => match p.parse::<u16>() {
                Ok(p) => (h.to_string(), Some(p)),
                Err(_) => return false,
            },
            _ => (entry.clone(), None),
        };
        if entry_port.is_some_and(|p| p != port) {
            return false;
        }
        let name = name.strip_prefix('*').unwrap_or(&name);
        match name.strip_prefix('.') {
            Some(domain) => host.ends_with(&format!(".{domain}")),
            None => host == name || host.ends_with(&format!(".{name}")),
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn uri(s: &str) -> http::Uri {
        s.parse().unwrap()
    }

    #[test]
    fn no_proxy_entries_match_like_go() {
        assert!(no_proxy_matches("*", "api.example.com", 443));
        assert!(no_proxy_matches("example.com", "example.com", 443));
        assert!(no_proxy_matches("example.com", "api.example.com", 443));
        assert!(!no_proxy_matches("example.com", "notexample.com", 443));
        assert!(no_proxy_matches(".example.com", "api.example.com", 443));
        assert!(!no_proxy_matches(".example.com", "example.com", 443));
        assert!(no_proxy_matches("*.example.com", "api.example.com", 443));
        assert!(no_proxy_matches("api.example.com:6443", "api.example.com", 6443));
        assert!(!no_proxy_matches("api.example.com:6443", "api.example.com", 443));
        assert!(no_proxy_matches("10.0.0.0/8, other", "10.1.2.3", 443));
        assert!(!no_proxy_matches("10.0.0.0/8", "11.1.2.3", 443));
        assert!(no_proxy_matches("192.168.1.5", "192.168.1.5", 443));
        assert!(!no_proxy_matches("", "example.com", 443));
        assert!(no_proxy_matches(" , EXAMPLE.com ", "example.com", 443));
    }

    #[test]
    fn the_kubeconfig_proxy_wins_and_the_environment_follows_the_scheme() {
        let e = env(&[("HTTPS_PROXY", "http://proxy:3128"), ("HTTP_PROXY", "http://plain:3128")]);
        let server = uri("https://api.example.com:6443");
        assert_eq!(choose(&server, Some("http://kc:8080"), &e).unwrap(), Some(uri("http://kc:8080")));
        assert_eq!(choose(&server, None, &e).unwrap(), Some(uri("http://proxy:3128")));
        assert_eq!(choose(&uri("http://api.example.com:8080"), None, &e).unwrap(), Some(uri("http://plain:3128")));
        let lower = env(&[("https_proxy", "proxy:3128")]);
        assert_eq!(choose(&server, None, &lower).unwrap(), Some(uri("http://proxy:3128")));
    }

    #[test]
    fn no_proxy_and_loopback_servers_go_direct() {
        let e = env(&[("HTTPS_PROXY", "http://proxy:3128"), ("NO_PROXY", ".example.com")]);
        assert_eq!(choose(&uri("https://api.example.com"), None, &e).unwrap(), None);
        assert_eq!(choose(&uri("https://api.other.org"), None, &e).unwrap(), Some(uri("http://proxy:3128")));
        assert_eq!(choose(&uri("https://127.0.0.1:6443"), None, &e).unwrap(), None);
        assert_eq!(choose(&uri("https://localhost:6443"), None, &e).unwrap(), None);
        assert_eq!(choose(&uri("https://[::1]:6443"), None, &e).unwrap(), None);
        assert_eq!(choose(&uri("https://api.other.org"), None, &env(&[])).unwrap(), None);
    }

    #[test]
    fn a_bad_proxy_url_names_its_origin() {
        let e = env(&[("HTTPS_PROXY", "http://bad host")]);
        let err = choose(&uri("https://api.example.com"), None, &e).unwrap_err();
        assert!(err.contains("HTTPS_PROXY"), "{err}");
    }
}
