//! Names that reach a path, a netlink message or a table, checked by the
//! kernel's own rules before anything uses them.

use crate::HostError;

/// `IFNAMSIZ` less the terminating NUL.
pub const MAX_IFNAME: usize = 15;

/// Whether `name` is one the kernel would accept for an interface
/// (`dev_valid_name`): 1 to 15 bytes, not `.` or `..`, no `/`, `:`, NUL or
/// whitespace. Anything else is no interface, so it must never be joined
/// into a `/proc/sys` path or matched against a grant.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_IFNAME
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
}

/// [`valid_ifname`] as a denial naming `what` the name was for.
pub fn check_ifname(name: &str, what: &str) -> Result<(), HostError> {
    if valid_ifname(name) {
        return Ok(());
    }
    Err(HostError::Denied(format!(
        "{what} {:?} is not a valid interface name (1-{MAX_IFNAME} bytes, not . or .., no /, : or whitespace)",
        crate::text::quoted(name)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_rules() {
        for ok in [
            "eth0",
            "net1",
            "eth0.100",
            "veth0123abcd",
            "a",
            "x-y_z@1",
            "123456789012345",
        ] {
            assert!(valid_ifname(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "/proc/sys/kernel",
            "../kernel",
            "a/b",
            "eth0:1",
            "eth 0",
            "eth0\n",
            "tab\t",
            "nul\0",
            "1234567890123456",
        ] {
            assert!(!valid_ifname(bad), "{bad:?}");
            assert!(check_ifname(bad, "link").is_err());
        }
    }
}
