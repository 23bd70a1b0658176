//! What each magic does with its value: the functions the magic table points
//! to. Each checks the value and records it in the job parameters, or returns
//! a sentence saying what is wrong with it.

use crate::frameworks::Frameworks;

use super::params::{
    BackendKind, CleanPolicy, JobCommand, JobParams, OnInterrupt, Provider, Resources, SecretEnv, Toleration, Volume,
};
use super::quantity;
use super::validate;

/// The job parameters being built from a cell's magics.
#[derive(Debug)]
pub(crate) struct Builder<'f> {
    pub frameworks: &'f Frameworks,
    pub params: JobParams,
}

/// A magic's effect, or why its value is wrong.
pub(crate) type Applied = Result<(), String>;

pub(crate) const CLEAN_POLICIES: &[&str] = &["all", "running", "none"];
pub(crate) const BACKENDS: &[&str] = &["local", "kubernetes"];
pub(crate) const PROVIDERS: &[&str] = &["image", "configmap"];
pub(crate) const ON_INTERRUPT: &[&str] = &["delete", "detach"];
pub(crate) const EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// A whole number (replicas, GPUs, nodes).
pub(crate) fn count(v: &str) -> Result<u32, String> {
    if !v.bytes().all(|b| b.is_ascii_digit()) || v.is_empty() {
        return Err(format!("{v:?} is not a whole number"));
    }
    v.parse().map_err(|_| format!("{v} is too large"))
}

/// `v` as one of `values`, compared without case; returns the table's spelling.
pub(crate) fn choice(v: &str, values: &[&'static str]) -> Result<&'static str, String> {
    values
        .iter()
        .find(|c| c.eq_ignore_ascii_case(v))
        .copied()
        .ok_or_else(|| format!("{v:?} is not one of {}", values.join(", ")))
}

/// `KEY=VALUE`, split on the first `=`.
fn pair<'v>(v: &'v str, what: &str) -> Result<(&'v str, &'v str), String> {
    v.split_once('=').map(|(k, v)| (k.trim(), v.trim())).ok_or_else(|| format!("{v:?} has no '=': write {what}"))
}

/// Adds `(key, value)` unless the key is there already: the same value again
/// is fine, another one is a contradiction.
fn put(list: &mut Vec<(String, String)>, key: &str, value: &str, what: &str) -> Applied {
    match list.iter().find(|(k, _)| k == key) {
        Some((_, old)) if old == value => Ok(()),
        Some((_, old)) => Err(format!("{what} {key} is already set to {old:?}; give each {what} once")),
        None => {
            list.push((key.to_string(), value.to_string()));
            Ok(())
        }
    }
}

pub(crate) fn framework(b: &mut Builder<'_>, v: &str) -> Applied {
    let name = v.to_ascii_lowercase();
    if b.frameworks.get(&name).is_none() {
        let names: Vec<&str> = b.frameworks.names().collect();
        let hint = super::magics::nearest(&name, names.iter().copied())
            .map(|n| format!("did you mean {n}? "))
            .unwrap_or_default();
        return Err(format!("unknown framework {v:?}; {hint}valid frameworks: {}", names.join(", ")));
    }
    b.params.framework = Some(name);
    Ok(())
}

pub(crate) fn cpu(r: &mut Resources, v: &str) -> Applied {
    r.cpu = Some(quantity::parse(v)?);
    Ok(())
}

pub(crate) fn memory(r: &mut Resources, v: &str) -> Applied {
    r.memory = Some(quantity::parse(v)?);
    Ok(())
}

pub(crate) fn gpu(r: &mut Resources, v: &str) -> Applied {
    r.gpu = Some(count(v)?);
    Ok(())
}

pub(crate) fn nodes(b: &mut Builder<'_>, v: &str) -> Applied {
    match count(v)? {
        0 => Err("a TrainJob needs at least one node".into()),
        n => {
            b.params.nodes = Some(n);
            Ok(())
        }
    }
}

pub(crate) fn runtime(b: &mut Builder<'_>, v: &str) -> Applied {
    validate::dns_subdomain(v, "runtime name")?;
    b.params.runtime = Some(v.to_string());
    Ok(())
}

pub(crate) fn clean_policy(b: &mut Builder<'_>, v: &str) -> Applied {
    b.params.clean_policy = Some(match choice(v, CLEAN_POLICIES)? {
        "all" => CleanPolicy::All,
        "running" => CleanPolicy::Running,
        _ => CleanPolicy::None,
    });
    Ok(())
}

pub(crate) fn backend(b: &mut Builder<'_>, v: &str) -> Applied {
    b.params.backend =
        Some(if choice(v, BACKENDS)? == "local" { BackendKind::Local } else { BackendKind::Kubernetes });
    Ok(())
}

pub(crate) fn provider(b: &mut Builder<'_>, v: &str) -> Applied {
    b.params.provider = Some(if choice(v, PROVIDERS)? == "image" { Provider::Image } else { Provider::ConfigMap });
    Ok(())
}

pub(crate) fn on_interrupt(b: &mut Builder<'_>, v: &str) -> Applied {
    b.params.on_interrupt =
        Some(if choice(v, ON_INTERRUPT)? == "delete" { OnInterrupt::Delete } else { OnInterrupt::Detach });
    Ok(())
}

pub(crate) fn dryrun(p: &mut JobParams) {
    p.dryrun = true;
}

pub(crate) fn base(b: &mut Builder<'_>, v: &str) -> Applied {
    validate::image_reference(v)?;
    b.params.base = Some(v.to_string());
    Ok(())
}

pub(crate) fn image(b: &mut Builder<'_>, v: &str) -> Applied {
    let r = validate::image_reference(v)?;
    if r.digest().is_some() {
        return Err(format!("{v:?} names a digest; the image is pushed by tag: write REPOSITORY[:TAG]"));
    }
    b.params.image = Some(v.to_string());
    Ok(())
}

pub(crate) fn namespace(b: &mut Builder<'_>, v: &str) -> Applied {
    validate::dns_label(v, "namespace", 63)?;
    b.params.namespace = Some(v.to_string());
    Ok(())
}

pub(crate) fn name(b: &mut Builder<'_>, v: &str) -> Applied {
    validate::dns_label(v, "job name prefix", validate::NAME_PREFIX_MAX)?;
    b.params.name = Some(v.to_string());
    Ok(())
}

pub(crate) fn env(b: &mut Builder<'_>, v: &str) -> Applied {
    let (key, value) = pair(v, "%env=KEY=VALUE")?;
    validate::env_name(key)?;
    if b.params.secret_env.iter().any(|s| s.var == key) {
        return Err(format!("{key} is already set from a secret by %secretEnv; give each variable once"));
    }
    put(&mut b.params.env, key, value, "environment variable")
}

pub(crate) fn packages(b: &mut Builder<'_>, v: &str) -> Applied {
    for spec in v.split(',') {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(format!("{v:?} has an empty entry: separate package names with single commas"));
        }
        validate::requirement(spec)?;
        if !b.params.packages.iter().any(|p| p == spec) {
            b.params.packages.push(spec.to_string());
        }
    }
    Ok(())
}

pub(crate) fn pip_index_url(b: &mut Builder<'_>, v: &str) -> Applied {
    validate::http_url(v)?;
    b.params.pip_index_url = Some(v.to_string());
    Ok(())
}

pub(crate) fn files(b: &mut Builder<'_>, v: &str) -> Applied {
    for path in v.split(',') {
        let path = path.trim();
        if path.is_empty() {
            return Err(format!("{v:?} has an empty entry: separate paths with single commas"));
        }
        validate::relative_path(path)?;
        if !b.params.files.iter().any(|p| p == path) {
            b.params.files.push(path.to_string());
        }
    }
    Ok(())
}

pub(crate) fn volume(b: &mut Builder<'_>, v: &str) -> Applied {
    let (claim, path) =
        v.split_once(':').map(|(c, p)| (c.trim(), p.trim())).ok_or_else(|| format!("{v:?} has no ':': write CLAIM:/path"))?;
    validate::dns_subdomain(claim, "PersistentVolumeClaim name")?;
    validate::mount_path(path)?;
    match b.params.volumes.iter().find(|m| m.path == path) {
        Some(m) if m.claim == claim => Ok(()),
        Some(m) => Err(format!("{path} is already the mount path of claim {}; give each path once", m.claim)),
        None => {
            b.params.volumes.push(Volume { claim: claim.into(), path: path.into() });
            Ok(())
        }
    }
}

pub(crate) fn secret_env(b: &mut Builder<'_>, v: &str) -> Applied {
    let (var, from) = pair(v, "%secretEnv=VAR=SECRET:KEY")?;
    let (secret, key) = from
        .split_once(':')
        .map(|(s, k)| (s.trim(), k.trim()))
        .ok_or_else(|| format!("{from:?} has no ':': write %secretEnv=VAR=SECRET:KEY"))?;
    validate::env_name(var)?;
    validate::dns_subdomain(secret, "secret name")?;
    validate::secret_key(key)?;
    if b.params.env.iter().any(|(k, _)| k == var) {
        return Err(format!("{var} is already set by %env; give each variable once"));
    }
    let new = SecretEnv { var: var.into(), secret: secret.into(), key: key.into() };
    match b.params.secret_env.iter().find(|s| s.var == var) {
        Some(old) if *old == new => Ok(()),
        Some(old) => Err(format!("{var} is already taken from secret {}:{}; give each variable once", old.secret, old.key)),
        None => {
            b.params.secret_env.push(new);
            Ok(())
        }
    }
}

pub(crate) fn node_selector(b: &mut Builder<'_>, v: &str) -> Applied {
    let (key, value) = pair(v, "%nodeSelector=KEY=VALUE")?;
    validate::label_key(key)?;
    validate::label_value(value)?;
    put(&mut b.params.node_selector, key, value, "node selector")
}

pub(crate) fn toleration(b: &mut Builder<'_>, v: &str) -> Applied {
    let (kv, effect) = v
        .rsplit_once(':')
        .map(|(kv, e)| (kv.trim(), e.trim()))
        .ok_or_else(|| format!("{v:?} has no ':EFFECT': write KEY[=VALUE]:EFFECT, EFFECT one of {}", EFFECTS.join(", ")))?;
    let effect = choice(effect, EFFECTS)?;
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k.trim(), Some(v.trim())),
        None => (kv, None),
    };
    validate::label_key(key)?;
    if let Some(value) = value {
        validate::label_value(value)?;
    }
    let t = Toleration { key: key.into(), value: value.map(Into::into), effect: effect.into() };
    if !b.params.tolerations.contains(&t) {
        b.params.tolerations.push(t);
    }
    Ok(())
}

pub(crate) fn service_account(b: &mut Builder<'_>, v: &str) -> Applied {
    validate::dns_subdomain(v, "service account name")?;
    b.params.service_account = Some(v.to_string());
    Ok(())
}

pub(crate) fn queue(b: &mut Builder<'_>, v: &str) -> Applied {
    // A LocalQueue name that is also a label value (it goes in a label).
    validate::dns_subdomain(v, "queue name")?;
    validate::label_value(v)?;
    b.params.queue = Some(v.to_string());
    Ok(())
}

pub(crate) fn label(b: &mut Builder<'_>, v: &str) -> Applied {
    let (key, value) = pair(v, "%label=KEY=VALUE")?;
    validate::label_key(key)?;
    validate::label_value(value)?;
    put(&mut b.params.labels, key, value, "label")
}

pub(crate) fn annotation(b: &mut Builder<'_>, v: &str) -> Applied {
    let (key, value) = pair(v, "%annotation=KEY=VALUE")?;
    validate::label_key(key)?;
    put(&mut b.params.annotations, key, value, "annotation")
}

fn no_args(args: &[&str], cmd: JobCommand, name: &str) -> Result<JobCommand, String> {
    if args.is_empty() { Ok(cmd) } else { Err(format!("%{name} takes no arguments: write %{name}")) }
}

fn job_name<'a>(args: &[&'a str], name: &str, extra: &str) -> Result<&'a str, String> {
    match args {
        [job] => {
            validate::dns_label(job, "job name", 63)?;
            Ok(job)
        }
        [] => Err(format!("%{name} needs the job's name: write %{name} NAME{extra} (%jobs lists them)")),
        _ => Err(format!("%{name} takes one job name: write %{name} NAME{extra}")),
    }
}

pub(crate) fn cmd_jobs(args: &[&str]) -> Result<JobCommand, String> {
    no_args(args, JobCommand::Jobs, "jobs")
}

pub(crate) fn cmd_modules(args: &[&str]) -> Result<JobCommand, String> {
    no_args(args, JobCommand::Modules, "modules")
}

pub(crate) fn cmd_help(args: &[&str]) -> Result<JobCommand, String> {
    match args {
        [] => Ok(JobCommand::Help),
        [name] => {
            let name = name.trim_start_matches('%').split('=').next().unwrap_or_default();
            if name.is_empty() {
                return Err("%help needs a magic's name after it: write %help framework (or %help alone for all)".into());
            }
            Ok(JobCommand::HelpOn(name.to_string()))
        }
        _ => Err("%help takes at most one magic's name: write %help framework (or %help alone for all)".into()),
    }
}

pub(crate) fn cmd_logs(args: &[&str]) -> Result<JobCommand, String> {
    let follow = args.iter().any(|a| matches!(*a, "--follow" | "-f"));
    if let Some(flag) = args.iter().find(|a| a.starts_with('-') && !matches!(**a, "--follow" | "-f")) {
        return Err(format!("%logs has no option {flag}: write %logs NAME [--follow]"));
    }
    let rest: Vec<&str> = args.iter().copied().filter(|a| !a.starts_with('-')).collect();
    let name = job_name(&rest, "logs", " [--follow]")?;
    Ok(JobCommand::Logs { name: name.into(), follow })
}

pub(crate) fn cmd_attach(args: &[&str]) -> Result<JobCommand, String> {
    Ok(JobCommand::Attach { name: job_name(args, "attach", "")?.into() })
}

pub(crate) fn cmd_delete(args: &[&str]) -> Result<JobCommand, String> {
    Ok(JobCommand::Delete { name: job_name(args, "delete", "")?.into() })
}
