//! Image references as users write them, normalised the way Docker does
//! (`python:3.11-slim` is `docker.io/library/python:3.11-slim`), rewritten by
//! the mirror map, and platforms (`linux/amd64`).

use std::collections::BTreeMap;
use std::fmt;

use super::error::ImageError;

/// The registry Docker Hub references are normalised to.
pub const DOCKER_HUB: &str = "docker.io";

/// A parsed `registry/repository[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// `host[:port]`, `docker.io` for Docker Hub.
    pub registry: String,
    /// `library/python`, `team/app`.
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:…`.
    pub digest: Option<String>,
    /// The reference named `http://` explicitly.
    pub plain_http: bool,
}

impl ImageRef {
    /// Parses a reference; a missing registry means Docker Hub, a missing tag
    /// and digest means `latest`.
    ///
    /// # Errors
    /// Empty components, upper-case repository names, a bad digest.
    pub fn parse(reference: &str) -> Result<ImageRef, ImageError> {
        let bad = |why: &str| ImageError::Reference { reference: reference.to_string(), why: why.to_string() };
        let mut rest = reference.trim();
        let mut plain_http = false;
        if let Some(r) = rest.strip_prefix("http://") {
            plain_http = true;
            rest = r;
        } else if let Some(r) = rest.strip_prefix("https://") {
            rest = r;
        } else if rest.contains("://") {
            return Err(bad("only http:// and https:// are understood"));
        }
        if rest.is_empty() {
            return Err(bad("it is empty"));
        }
        let (name, digest) = match rest.split_once('@') {
            Some((n, d)) => {
                let hex = d.strip_prefix("sha256:").ok_or_else(|| bad("the digest must be sha256:<64 hex digits>"))?;
                if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)) {
                    return Err(bad("the digest must be sha256:<64 lower-case hex digits>"));
                }
                (n, Some(d.to_string()))
            }
            None => (rest, None),
        };
        let (name, tag) = match name.rfind(':') {
            Some(i) if !name[i + 1..].contains('/') => (&name[..i], Some(name[i + 1..].to_string())),
            _ => (name, None),
        };
        if let Some(t) = &tag
            && (t.is_empty()
                || t.len() > 128
                || !t.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
                || t.starts_with(['.', '-']))
        {
            return Err(bad("a tag is up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'"));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => (first.to_string(), rest.to_string()),
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = normalise_registry(&registry).to_string();
        let repository =
            if registry == DOCKER_HUB && !repository.contains('/') { format!("library/{repository}") } else { repository };
        if repository.is_empty() || repository.split('/').any(str::is_empty) {
            return Err(bad("a repository path has no empty components"));
        }
        if !repository.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '/' | '.' | '_' | '-')) {
            return Err(bad("repository names are lower-case letters, digits and . _ - /"));
        }
        let tag = if tag.is_none() && digest.is_none() { Some("latest".to_string()) } else { tag };
        Ok(ImageRef { registry, repository, tag, digest, plain_http })
    }

    /// The same repository under another tag, without a digest.
    pub fn with_tag(&self, tag: &str) -> ImageRef {
        ImageRef { tag: Some(tag.to_string()), digest: None, ..self.clone() }
    }

    /// The same repository pinned to `digest`.
    pub fn with_digest(&self, digest: &str) -> ImageRef {
        ImageRef { digest: Some(digest.to_string()), ..self.clone() }
    }

    /// `registry/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// What to ask the registry for: the digest if pinned, else the tag.
    pub fn reference(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or("latest")
    }

    /// The host the registry API answers on (Docker Hub's is not `docker.io`).
    pub fn api_host(&self) -> &str {
        api_host(&self.registry)
    }

    /// Applies the mirror map: the longest key that is this reference's
    /// registry or a `registry/path` prefix of its name is replaced by its
    /// value. Returns `None` when no key matches.
    pub fn mirrored(&self, mirrors: &BTreeMap<String, String>) -> Option<ImageRef> {
        let name = self.name();
        let (from, to) = mirrors
            .iter()
            .map(|(k, v)| (normalise_key(k), v))
            .filter(|(k, _)| name == *k || name.starts_with(&format!("{k}/")))
            .max_by_key(|(k, _)| k.len())?;
        let rest = name[from.len()..].trim_start_matches('/');
        let to = to.trim_end_matches('/');
        let (registry, prefix) = match to.split_once('/') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (to.to_string(), None),
        };
        let repository = match (prefix, rest.is_empty()) {
            (Some(p), false) => format!("{p}/{rest}"),
            (Some(p), true) => p.to_string(),
            (None, _) => rest.to_string(),
        };
        Some(ImageRef { registry: normalise_registry(&registry).to_string(), repository, ..self.clone() })
    }

    /// The reference as oci-client wants it.
    pub fn to_oci(&self) -> oci_client::Reference {
        let registry = self.api_host().to_string();
        match (&self.tag, &self.digest) {
            (Some(t), Some(d)) => oci_client::Reference::with_tag_and_digest(registry, self.repository.clone(), t.clone(), d.clone()),
            (_, Some(d)) => oci_client::Reference::with_digest(registry, self.repository.clone(), d.clone()),
            (t, None) => oci_client::Reference::with_tag(
                registry,
                self.repository.clone(),
                t.clone().unwrap_or_else(|| "latest".into()),
            ),
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// `index.docker.io` and `registry-1.docker.io` are `docker.io`.
pub fn normalise_registry(registry: &str) -> &str {
    match registry {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB,
        r => r,
    }
}

/// The API host of a registry name.
pub fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB { "index.docker.io" } else { registry }
}

fn normalise_key(key: &str) -> String {
    let key = key.trim_end_matches('/');
    match key.split_once('/') {
        Some((h, rest)) => format!("{}/{rest}", normalise_registry(h)),
        None => normalise_registry(key).to_string(),
    }
}

/// A platform: `os/architecture[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `linux/amd64`, `linux/arm64/v8`.
    ///
    /// # Errors
    /// Fewer than two components.
    pub fn parse(s: &str) -> Result<Platform, ImageError> {
        let mut parts = s.split('/');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(os), Some(arch), variant, None) if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: variant.filter(|v| !v.is_empty()).map(String::from),
            }),
            _ => Err(ImageError::Reference {
                reference: s.to_string(),
                why: "a platform looks like os/arch or os/arch/variant, e.g. linux/amd64".into(),
            }),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_short_names_are_normalised() {
        let r = ImageRef::parse("python:3.11-slim").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/python:3.11-slim");
        assert_eq!(r.api_host(), "index.docker.io");
        assert_eq!(ImageRef::parse("docker.io/library/python:3.11-slim").unwrap(), r);
        assert_eq!(ImageRef::parse("index.docker.io/library/python:3.11-slim").unwrap(), r);
        assert_eq!(ImageRef::parse("tensorflow/tensorflow").unwrap().to_string(), "docker.io/tensorflow/tensorflow:latest");
    }

    #[test]
    fn hosts_with_ports_tags_and_digests() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("127.0.0.1:5000/team/app:v1@{d}")).unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()), ("127.0.0.1:5000", "team/app", Some("v1")));
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        assert_eq!(r.reference(), d);
        let r = ImageRef::parse("localhost/app").unwrap();
        assert_eq!((r.registry.as_str(), r.tag.as_deref()), ("localhost", Some("latest")));
        assert!(ImageRef::parse("http://127.0.0.1:5000/a:b").unwrap().plain_http);
    }

    #[test]
    fn bad_references_say_why() {
        for (r, why) in [
            ("", "empty"),
            ("r.example/Team/app", "lower-case"),
            ("r.example//app", "empty components"),
            ("r.example/app@sha256:xyz", "digest"),
            ("r.example/app:-x", "tag"),
            ("ftp://r.example/app", "http"),
        ] {
            let e = ImageRef::parse(r).unwrap_err().to_string();
            assert!(e.contains(why), "{r}: {e}");
        }
    }

    #[test]
    fn the_mirror_map_rewrites_registries_and_prefixes() {
        let mut m = BTreeMap::new();
        m.insert("docker.io".to_string(), "registry.local:5000/mirror".to_string());
        m.insert("quay.io/org".to_string(), "registry.local:5000".to_string());
        let r = ImageRef::parse("python:3.11-slim").unwrap().mirrored(&m).unwrap();
        assert_eq!(r.to_string(), "registry.local:5000/mirror/library/python:3.11-slim");
        let r = ImageRef::parse("quay.io/org/app:1").unwrap().mirrored(&m).unwrap();
        assert_eq!(r.to_string(), "registry.local:5000/app:1");
        assert!(ImageRef::parse("quay.io/other/app:1").unwrap().mirrored(&m).is_none());
        let mut m2 = BTreeMap::new();
        m2.insert("index.docker.io".to_string(), "m.local".to_string());
        assert_eq!(ImageRef::parse("busybox").unwrap().mirrored(&m2).unwrap().to_string(), "m.local/library/busybox:latest");
    }

    #[test]
    fn platforms_parse_with_an_optional_variant() {
        assert_eq!(Platform::parse("linux/amd64").unwrap().to_string(), "linux/amd64");
        assert_eq!(Platform::parse("linux/arm64/v8").unwrap().variant.as_deref(), Some("v8"));
        assert!(Platform::parse("linux").is_err());
    }
}
