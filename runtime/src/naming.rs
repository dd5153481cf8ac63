//! Interface names of a pod's attachments, decided before anything runs.
//!
//! Upstream's rule: a requested name wins; the cluster network (position 0)
//! takes CNI_IFNAME; every other attachment is `net<position>`, position
//! counted over the whole list. Upstream finds a duplicate only when the
//! second ADD fails inside the pod; here it is refused up front.

use crate::cni::env::validate_ifname;
use crate::cni::{CniError, Code};

/// `requests[i]` is the interface asked for by attachment `i`, if any.
pub fn assign(requests: &[Option<String>], master_ifname: &str) -> Result<Vec<String>, CniError> {
    let names: Vec<String> = requests
        .iter()
        .enumerate()
        .map(|(i, req)| match req {
            Some(name) => name.clone(),
            None if i == 0 => master_ifname.to_string(),
            None => format!("net{i}"),
        })
        .collect();
    for (i, name) in names.iter().enumerate() {
        validate_ifname(name).map_err(|m| {
            CniError::new(
                Code::InvalidConfig,
                format!("attachment {i}: interface: {m}"),
            )
        })?;
        if let Some(j) = names[..i].iter().position(|n| n == name) {
            return Err(CniError::new(
                Code::InvalidConfig,
                format!("attachments {j} and {i} both use interface {name:?}"),
            ));
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_positions() {
        let n = assign(&[None, None, Some("sriov0".into()), None], "eth0").unwrap();
        assert_eq!(n, vec!["eth0", "net1", "sriov0", "net3"]);
    }

    #[test]
    fn duplicates_and_bad_names_refused() {
        let e = assign(&[None, Some("net2".into()), None], "eth0").unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("net2"), "{}", e.msg);
        assert!(assign(&[None, Some("x".repeat(16))], "eth0").is_err());
        assert!(assign(&[None, Some("eth0".into())], "eth0").is_err());
    }
}
