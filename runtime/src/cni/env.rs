//! The CNI_* environment: parsing and the spec's validation rules.

use std::path::PathBuf;

use super::error::{CniError, Code};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
    Version,
}

impl Command {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ADD" => Self::Add,
            "DEL" => Self::Del,
            "CHECK" => Self::Check,
            "STATUS" => Self::Status,
            "GC" => Self::Gc,
            "VERSION" => Self::Version,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Del => "DEL",
            Self::Check => "CHECK",
            Self::Status => "STATUS",
            Self::Gc => "GC",
            Self::Version => "VERSION",
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `CNI_ARGS` as ordered `K=V` pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs(pub Vec<(String, String)>);

impl CniArgs {
    pub fn parse(s: &str) -> Result<Self, CniError> {
        let mut pairs = Vec::new();
        for part in s.split(';').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| {
                CniError::new(
                    Code::InvalidEnv,
                    format!(
                        "CNI_ARGS: invalid pair {:?}, want KEY=VALUE",
                        multus_host_functions::text::quoted(part)
                    ),
                )
            })?;
            pairs.push((k.to_string(), v.to_string()));
        }
        Ok(Self(pairs))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The args handed to delegates: the runtime's pairs with `IgnoreUnknown`
    /// guaranteed, since reference plugins reject keys they do not know otherwise.
    pub fn for_delegate(&self) -> String {
        let mut out: Vec<String> = Vec::with_capacity(self.0.len() + 1);
        if self.get("IgnoreUnknown").is_none() {
            out.push("IgnoreUnknown=1".to_string());
        }
        out.extend(self.0.iter().map(|(k, v)| format!("{k}={v}")));
        out.join(";")
    }
}

/// The validated invocation environment.
#[derive(Debug, Clone)]
pub struct CniEnv {
    pub command: Command,
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: CniArgs,
    pub path: Vec<PathBuf>,
}

/// Which variables a command cannot run without (spec table "Parameters").
fn required(cmd: Command) -> &'static [&'static str] {
    match cmd {
        Command::Add | Command::Check => &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
        Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME"],
        Command::Status | Command::Gc | Command::Version => &[],
    }
}

impl CniEnv {
    /// Reads and validates the environment through `get`, so tests need no
    /// process environment.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, CniError> {
        let var = |k: &str| get(k).filter(|v| !v.is_empty());
        let command = match var("CNI_COMMAND") {
            None => {
                return Err(CniError::new(
                    Code::InvalidEnv,
                    "required env variables [CNI_COMMAND] missing",
                ))
            }
            Some(c) => Command::parse(&c).ok_or_else(|| {
                CniError::new(
                    Code::InvalidEnv,
                    format!("CNI_COMMAND: unknown command {c:?}"),
                )
            })?,
        };
        let missing: Vec<&str> = required(command)
            .iter()
            .copied()
            .filter(|k| var(k).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(CniError::new(
                Code::InvalidEnv,
                format!("required env variables [{}] missing", missing.join(",")),
            ));
        }
        let container_id = var("CNI_CONTAINERID").unwrap_or_default();
        if !container_id.is_empty() {
            validate_id(&container_id, "CNI_CONTAINERID", Code::InvalidEnv)?;
        }
        let ifname = var("CNI_IFNAME").unwrap_or_default();
        if !ifname.is_empty() {
            validate_ifname(&ifname)
                .map_err(|m| CniError::new(Code::InvalidEnv, format!("CNI_IFNAME: {m}")))?;
        }
        let args = CniArgs::parse(&var("CNI_ARGS").unwrap_or_default())?;
        let path = var("CNI_PATH")
            .map(|p| {
                p.split(':')
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            command,
            container_id,
            netns: var("CNI_NETNS").unwrap_or_default(),
            ifname,
            args,
            path,
        })
    }
}

/// Container IDs and network names share the spec's `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`.
pub fn validate_id(s: &str, what: &str, code: Code) -> Result<(), CniError> {
    let mut chars = s.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(CniError::new(
            code,
            format!(
                "{what}: invalid characters in {:?}, want ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$",
                multus_host_functions::text::quoted(s)
            ),
        ))
    }
}

/// The kernel's IFNAMSIZ rules as the spec states them.
pub fn validate_ifname(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("interface name is empty".into());
    }
    if s.len() > 15 {
        return Err(format!(
            "interface name {:?} is longer than 15 bytes",
            multus_host_functions::text::quoted(s)
        ));
    }
    if s == "." || s == ".." {
        return Err(format!("interface name {s:?} is not allowed"));
    }
    if s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
        return Err(format!(
            "interface name {s:?} contains '/', ':' or whitespace"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<CniEnv, CniError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CniEnv::from_vars(|k| m.get(k).cloned())
    }

    const ADD: &[(&str, &str)] = &[
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc"),
        ("CNI_NETNS", "/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin::/usr/lib/cni"),
        ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=p"),
    ];

    #[test]
    fn valid_add() {
        let e = env(ADD).unwrap();
        assert_eq!(e.command, Command::Add);
        assert_eq!(
            e.path,
            vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
        );
        assert_eq!(e.args.get("K8S_POD_NAME"), Some("p"));
    }

    fn without(k: &str) -> Vec<(&'static str, &'static str)> {
        ADD.iter().copied().filter(|(n, _)| *n != k).collect()
    }

    #[test]
    fn missing_variables_are_code_4_and_named() {
        for k in ["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
            let e = env(&without(k)).unwrap_err();
            assert_eq!(e.code, 4, "{k}");
            assert!(e.msg.contains(k), "{k}: {}", e.msg);
        }
    }

    #[test]
    fn del_needs_no_netns_and_status_needs_nothing() {
        let mut del = without("CNI_NETNS");
        del[0] = ("CNI_COMMAND", "DEL");
        assert!(env(&del).is_ok());
        assert!(env(&[("CNI_COMMAND", "STATUS")]).is_ok());
        assert!(env(&[("CNI_COMMAND", "VERSION")]).is_ok());
    }

    #[test]
    fn bad_values() {
        let mut v = ADD.to_vec();
        v[3] = ("CNI_IFNAME", "abcdefghijklmnop");
        let e = env(&v).unwrap_err();
        assert_eq!(e.code, 4);
        assert!(e.msg.contains("CNI_IFNAME"));
        v[3] = ("CNI_IFNAME", "a/b");
        assert_eq!(env(&v).unwrap_err().code, 4);
        let mut v = ADD.to_vec();
        v[1] = ("CNI_CONTAINERID", "-bad");
        assert_eq!(env(&v).unwrap_err().code, 4);
        let mut v = ADD.to_vec();
        v[0] = ("CNI_COMMAND", "FOO");
        assert_eq!(env(&v).unwrap_err().code, 4);
        let mut v = ADD.to_vec();
        v[5] = ("CNI_ARGS", "novalue");
        assert_eq!(env(&v).unwrap_err().code, 4);
    }

    #[test]
    fn ifname_rules() {
        assert!(validate_ifname("123456789012345").is_ok());
        assert!(validate_ifname("1234567890123456").is_err());
        assert!(validate_ifname(".").is_err());
        assert!(validate_ifname("..").is_err());
        assert!(validate_ifname("a b").is_err());
        assert!(validate_ifname("a:b").is_err());
    }

    #[test]
    fn delegate_args_get_ignore_unknown() {
        let a = CniArgs::parse("K8S_POD_NAME=p;IP=10.0.0.2").unwrap();
        assert_eq!(
            a.for_delegate(),
            "IgnoreUnknown=1;K8S_POD_NAME=p;IP=10.0.0.2"
        );
        let a = CniArgs::parse("IgnoreUnknown=true;X=1").unwrap();
        assert_eq!(a.for_delegate(), "IgnoreUnknown=true;X=1");
    }
}
