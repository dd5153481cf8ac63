//! CNI spec versions: the supported list, ordering and `cniVersions` negotiation.

use super::error::{CniError, Code};

/// Every spec version this implementation reads and writes, oldest first.
pub const SUPPORTED: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// The newest version; what VERSION reports and what an absent version is not.
pub const CURRENT: &str = "1.1.0";

/// A parsed `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    pub fn parse(s: &str) -> Option<Self> {
        let mut it = s.split('.').map(|p| p.parse::<u32>().ok());
        let v = Version(it.next()??, it.next()??, it.next()??);
        it.next().is_none().then_some(v)
    }

    /// The result wire family a version uses.
    pub fn family(self) -> Family {
        if self < Version(0, 3, 0) {
            Family::V02
        } else if self < Version(1, 0, 0) {
            Family::V04
        } else if self < Version(1, 1, 0) {
            Family::V10
        } else {
            Family::V11
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// 0.1.0 and 0.2.0: `ip4`/`ip6` objects.
    V02,
    /// 0.3.x and 0.4.0: `ips[].version`.
    V04,
    /// 1.0.0: no `version`, no 1.1 fields.
    V10,
    /// 1.1.0: route mtu/advmss/priority/table/scope, interface socketPath/pciID/mtu.
    V11,
}

/// Go treats an empty `cniVersion` as 0.1.0; keep that for drop-in compatibility.
pub fn or_legacy(v: Option<&str>) -> &str {
    match v {
        Some(s) if !s.is_empty() => s,
        _ => "0.1.0",
    }
}

/// Fails with code 1 unless `v` is a version we implement.
pub fn check_supported(v: &str, what: &str) -> Result<Version, CniError> {
    if SUPPORTED.contains(&v) {
        return Ok(Version::parse(v).expect("supported versions parse"));
    }
    Err(CniError::new(
        Code::IncompatibleVersion,
        format!(
            "{what}: incompatible CNI version {:?}; supported versions are {}",
            multus_host_functions::text::quoted(v),
            SUPPORTED.join(", ")
        ),
    ))
}

/// The spec's negotiation: the highest version we support out of
/// `cniVersion` and `cniVersions`; entries we do not know are ignored.
pub fn negotiate(
    cni_version: &str,
    cni_versions: &[String],
    what: &str,
) -> Result<String, CniError> {
    let best = std::iter::once(cni_version)
        .chain(cni_versions.iter().map(String::as_str))
        .filter(|v| SUPPORTED.contains(v))
        .max_by_key(|v| Version::parse(v));
    match best {
        Some(v) => Ok(v.to_string()),
        None => check_supported(cni_version, what).map(|_| cni_version.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering_and_family() {
        assert!(Version::parse("0.3.1").unwrap() < Version::parse("0.4.0").unwrap());
        assert!(Version::parse("1.0.0").unwrap() < Version::parse("1.1.0").unwrap());
        assert_eq!(Version::parse("0.2.0").unwrap().family(), Family::V02);
        assert_eq!(Version::parse("0.3.0").unwrap().family(), Family::V04);
        assert_eq!(Version::parse("1.0.0").unwrap().family(), Family::V10);
        assert_eq!(Version::parse("1.1.0").unwrap().family(), Family::V11);
        assert_eq!(Version::parse("1.1"), None);
        assert_eq!(Version::parse("1.1.0.0"), None);
        assert_eq!(Version::parse("a.b.c"), None);
    }

    #[test]
    fn negotiation_picks_highest_known() {
        let list = vec!["1.0.0".to_string(), "1.1.0".into(), "9.9.9".into()];
        assert_eq!(negotiate("0.4.0", &list, "conf").unwrap(), "1.1.0");
        assert_eq!(negotiate("0.3.1", &[], "conf").unwrap(), "0.3.1");
        assert_eq!(
            negotiate("7.0.0", &["0.4.0".into()], "conf").unwrap(),
            "0.4.0"
        );
        let e = negotiate("7.0.0", &[], "conf").unwrap_err();
        assert_eq!(e.code, 1);
        assert!(e.msg.contains("7.0.0"), "{}", e.msg);
    }

    #[test]
    fn empty_version_is_legacy() {
        assert_eq!(or_legacy(None), "0.1.0");
        assert_eq!(or_legacy(Some("")), "0.1.0");
        assert_eq!(or_legacy(Some("1.0.0")), "1.0.0");
    }
}
