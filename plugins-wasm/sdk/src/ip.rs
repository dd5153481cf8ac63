//! IP arithmetic for IPAM plugins, on std types only.

use std::net::IpAddr;

/// An address with its prefix length, as CNI writes them ("10.1.0.5/24").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Self, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not in CIDR notation"))?;
        let addr: IpAddr = a.parse().map_err(|e| format!("{s:?}: {e}"))?;
        let prefix: u8 = p.parse().map_err(|e| format!("{s:?}: {e}"))?;
        if prefix > bits(addr) {
            return Err(format!("{s:?}: prefix longer than the address"));
        }
        Ok(Self { addr, prefix })
    }

    pub fn network(&self) -> IpAddr {
        from_u128(to_u128(self.addr) & mask(self.addr, self.prefix), self.addr)
    }

    /// The last address of the subnet (the broadcast address for IPv4).
    pub fn last(&self) -> IpAddr {
        from_u128(
            to_u128(self.addr) | !mask(self.addr, self.prefix) & max(self.addr),
            self.addr,
        )
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4()
            && to_u128(ip) & mask(ip, self.prefix)
                == to_u128(self.addr) & mask(self.addr, self.prefix)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

pub fn bits(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

fn max(ip: IpAddr) -> u128 {
    if ip.is_ipv4() {
        u32::MAX as u128
    } else {
        u128::MAX
    }
}

fn mask(ip: IpAddr, prefix: u8) -> u128 {
    let b = bits(ip) as u32;
    if prefix == 0 {
        0
    } else {
        (max(ip) >> (b - prefix as u32) << (b - prefix as u32)) & max(ip)
    }
}

pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

/// `v` as an address of the same family as `like`.
pub fn from_u128(v: u128, like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4((v as u32).into()),
        IpAddr::V6(_) => IpAddr::V6(v.into()),
    }
}

/// The next address, wrapping at the family's end.
pub fn next(ip: IpAddr) -> IpAddr {
    from_u128(to_u128(ip).wrapping_add(1) & max(ip), ip)
}

pub fn prev(ip: IpAddr) -> IpAddr {
    from_u128(to_u128(ip).wrapping_sub(1) & max(ip), ip)
}

/// Parses "10.0.0.2" or "10.0.0.2/24" (the prefix ignored).
pub fn parse_ip(s: &str) -> Result<IpAddr, String> {
    let a = s.split('/').next().unwrap_or_default();
    a.parse().map_err(|e| format!("{s:?}: {e}"))
}
