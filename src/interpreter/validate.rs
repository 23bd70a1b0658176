//! Syntax checks for the values magics carry: Kubernetes names, label keys
//! and values, environment variable names, image references, URLs, pip
//! requirement specs. Each returns `Err(reason)` with a sentence that says
//! what a valid value looks like.

/// Longest `%name=` prefix: a job name is `PREFIX-` plus a generated suffix
/// and must stay a 63-character DNS label.
pub const NAME_PREFIX_MAX: usize = 40;

fn is_label_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

/// A DNS-1123 label: lowercase letters, digits and `-`, starting and ending
/// with a letter or digit, at most `max` (≤ 63) characters.
pub fn dns_label(s: &str, what: &str, max: usize) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= max
        && s.chars().all(is_label_char)
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a valid {what}: use lowercase letters, digits and '-', starting and ending with a letter or digit, at most {max} characters"
        ))
    }
}

/// A DNS-1123 subdomain: dot-separated DNS labels, at most 253 characters.
pub fn dns_subdomain(s: &str, what: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| !l.is_empty() && l.chars().all(is_label_char) && !l.starts_with('-') && !l.ends_with('-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a valid {what}: use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
        ))
    }
}

/// The name part of a label key or a label value: alphanumerics, `-`, `_`,
/// `.`, starting and ending with an alphanumeric, at most 63 characters.
fn is_label_name(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    s.len() <= 63
        && s.chars().next().is_some_and(alnum)
        && s.chars().last().is_some_and(alnum)
        && s.chars().all(|c| alnum(c) || matches!(c, '-' | '_' | '.'))
}

/// A label (or annotation, node selector, taint) key: `[PREFIX/]NAME`, the
/// prefix a DNS subdomain.
pub fn label_key(s: &str) -> Result<(), String> {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    let prefix_ok = prefix.is_none_or(|p| dns_subdomain(p, "").is_ok());
    if prefix_ok && is_label_name(name) {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a valid key: write [PREFIX/]NAME, NAME being letters, digits, '-', '_' and '.' (at most 63, starting and ending with a letter or digit) and PREFIX a DNS subdomain like example.com"
        ))
    }
}

/// A label value: empty, or like a label key's name part.
pub fn label_value(s: &str) -> Result<(), String> {
    if s.is_empty() || is_label_name(s) {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a valid label value: use letters, digits, '-', '_' and '.', starting and ending with a letter or digit, at most 63 characters"
        ))
    }
}

/// An environment variable name: a letter or `_`, then letters, digits, `_`.
pub fn env_name(s: &str) -> Result<(), String> {
    let mut chars = s.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a valid environment variable name: start with a letter or '_', then letters, digits or '_'"
        ))
    }
}

/// A key in a Secret: letters, digits, `-`, `_`, `.`.
pub fn secret_key(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s != "."
        && s != ".."
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!("{s:?} is not a valid secret key: use letters, digits, '-', '_' and '.'"))
    }
}

/// A Python identifier usable as a module name (ASCII, not a keyword).
pub fn module_name(s: &str) -> Result<(), String> {
    const KEYWORDS: &[&str] = &[
        "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue", "def", "del",
        "elif", "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is", "lambda", "nonlocal",
        "not", "or", "pass", "raise", "return", "try", "while", "with", "yield",
    ];
    let mut chars = s.chars();
    let ident = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ident {
        return Err(format!(
            "{s:?} is not a Python module name: use letters, digits and '_', not starting with a digit"
        ));
    }
    if KEYWORDS.contains(&s) {
        return Err(format!("{s:?} is a Python keyword and cannot be imported; choose another name"));
    }
    Ok(())
}

/// An image reference (`python:3.11-slim`, `registry:5000/team/img@sha256:…`).
pub fn image_reference(s: &str) -> Result<oci_client::Reference, String> {
    if s.chars().any(|c| c.is_ascii_uppercase()) && !s.contains('@') {
        // The parser says only "invalid format"; this is the usual mistake.
        let repo = s.rsplit_once(':').filter(|(_, t)| !t.contains('/')).map_or(s, |(r, _)| r);
        if repo.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(format!("{s:?} is not a valid image reference: repository names are lowercase"));
        }
    }
    s.parse::<oci_client::Reference>().map_err(|e| {
        format!("{s:?} is not a valid image reference ({e}): write [REGISTRY/]REPOSITORY[:TAG], e.g. python:3.11-slim")
    })
}

/// An `http://` or `https://` URL with a host.
pub fn http_url(s: &str) -> Result<(), String> {
    match url::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        Ok(u) => Err(format!("{s:?} is not an http(s) URL (scheme {:?}): write https://HOST/PATH", u.scheme())),
        Err(e) => Err(format!("{s:?} is not a valid URL ({e}): write https://HOST/PATH")),
    }
}

/// One pip requirement spec (PEP 508 without environment markers, which
/// would need the `;` that separates magics): `NAME[extras] [SPECIFIER]` or
/// `NAME @ URL`.
pub fn requirement(s: &str) -> Result<(), String> {
    if s.starts_with('-') {
        return Err(format!(
            "{s:?} is a pip option, not a package: list package names (pip options are not supported; use %pipIndexUrl= for the index)"
        ));
    }
    let name_len = s.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))).unwrap_or(s.len());
    let name = &s[..name_len];
    let name_ok = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().last().is_some_and(|c| c.is_ascii_alphanumeric());
    let mut rest = s[name_len..].trim_start();
    if let Some(after) = rest.strip_prefix('[') {
        match after.split_once(']') {
            Some((extras, tail))
                if extras.split(',').all(|e| {
                    let e = e.trim();
                    !e.is_empty() && e.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                }) =>
            {
                rest = tail.trim_start();
            }
            _ => return Err(format!("{s:?} has malformed extras: write NAME[extra1,extra2]")),
        }
    }
    let rest_ok = rest.is_empty()
        || rest.starts_with('@')
        || (rest.starts_with(['<', '>', '=', '!', '~'])
            && rest.chars().all(|c| c.is_ascii_alphanumeric() || " <>=!~.*+,_-".contains(c)));
    if name_ok && rest_ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a pip requirement: write NAME, NAME==VERSION, NAME>=VERSION or NAME[extra]"
        ))
    }
}

/// A path relative to the kernel's working directory, not leaving it.
pub fn relative_path(s: &str) -> Result<(), String> {
    if s.starts_with('/') || s.starts_with('\\') || s.get(1..2) == Some(":") {
        return Err(format!("{s:?} is an absolute path: give a path relative to the notebook's directory"));
    }
    if s.split(['/', '\\']).any(|c| c == "..") {
        return Err(format!("{s:?} leaves the notebook's directory ('..'): give a path inside it"));
    }
    if s.chars().any(char::is_control) {
        return Err(format!("{s:?} contains control characters"));
    }
    Ok(())
}

/// A mount path: absolute, no `:`.
pub fn mount_path(s: &str) -> Result<(), String> {
    if !s.starts_with('/') || s.contains(':') || s.chars().any(char::is_control) {
        return Err(format!("{s:?} is not a mount path: write an absolute path like /data"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels_follow_rfc_1123() {
        assert!(dns_label("team-a", "namespace", 63).is_ok());
        assert!(dns_label("a1", "namespace", 63).is_ok());
        for bad in ["", "Team", "-a", "a-", "a_b", "a.b", "é"] {
            assert!(dns_label(bad, "namespace", 63).unwrap_err().contains("not a valid namespace"), "{bad}");
        }
        assert!(dns_label(&"a".repeat(41), "job name prefix", 40).unwrap_err().contains("at most 40"));
        assert!(dns_label(&"a".repeat(40), "job name prefix", 40).is_ok());
    }

    #[test]
    fn subdomains_are_dotted_labels() {
        assert!(dns_subdomain("my.claim-1", "claim").is_ok());
        assert!(dns_subdomain("a..b", "claim").is_err());
        assert!(dns_subdomain(".a", "claim").is_err());
        assert!(dns_subdomain(&"a".repeat(254), "claim").is_err());
    }

    #[test]
    fn label_keys_and_values_follow_kubernetes() {
        for ok in ["app", "example.com/team", "a.b_c-d", "A1"] {
            assert!(label_key(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/a", "a/", "Example.com/a", "-a", "a b", "a/b/c", &"k".repeat(64)] {
            assert!(label_key(bad).is_err(), "{bad}");
        }
        for ok in ["", "v1", "a.b-c_d"] {
            assert!(label_value(ok).is_ok(), "{ok}");
        }
        for bad in ["-v", "v-", "a b", "a/b", &"v".repeat(64)] {
            assert!(label_value(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_names_and_secret_keys() {
        assert!(env_name("HF_HOME").is_ok() && env_name("_x1").is_ok());
        assert!(env_name("1X").is_err() && env_name("A-B").is_err() && env_name("").is_err());
        assert!(secret_key("tls.crt").is_ok() && secret_key("..").is_err() && secret_key("a/b").is_err());
    }

    #[test]
    fn module_names_are_importable_identifiers() {
        assert!(module_name("utils").is_ok() && module_name("_m2").is_ok());
        assert!(module_name("2m").is_err() && module_name("my-mod").is_err());
        assert!(module_name("class").unwrap_err().contains("keyword"));
    }

    #[test]
    fn image_references_use_the_distribution_grammar() {
        assert!(image_reference("python:3.11-slim").is_ok());
        assert!(image_reference("localhost:5000/team/img:v1").is_ok());
        assert!(image_reference("Python:3").unwrap_err().contains("lowercase"));
        assert!(image_reference("a b").unwrap_err().contains("not a valid image reference"));
        assert!(image_reference("img@sha256:abc").is_err());
    }

    #[test]
    fn urls_must_be_http() {
        assert!(http_url("https://pypi.example.com/simple").is_ok());
        assert!(http_url("ftp://x").unwrap_err().contains("not an http(s) URL"));
        assert!(http_url("pypi").unwrap_err().contains("not a valid URL"));
    }

    #[test]
    fn requirements_accept_pep_508_without_markers() {
        for ok in ["numpy", "numpy==1.26.4", "torch>=2,<3", "pkg[extra1,extra2]", "a.b_c-d", "x @ https://h/x.whl", "y ~= 1.0"] {
            assert!(requirement(ok).is_ok(), "{ok}");
        }
        assert!(requirement("-r requirements.txt").unwrap_err().contains("pip option"));
        assert!(requirement("pkg[").unwrap_err().contains("extras"));
        for bad in ["", "numpy 1.0", "(x)", "-", "x$"] {
            assert!(requirement(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_are_relative_and_stay_inside() {
        assert!(relative_path("data/train.csv").is_ok() && relative_path("*.py").is_ok());
        assert!(relative_path("/etc/passwd").unwrap_err().contains("absolute"));
        assert!(relative_path("a/../../b").unwrap_err().contains(".."));
        assert!(mount_path("/data").is_ok() && mount_path("data").is_err());
    }
}
