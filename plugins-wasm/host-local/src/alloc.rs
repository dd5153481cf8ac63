//! The reference allocator: round-robin from the IP after the last one
//! reserved in the range set, skipping the gateway, giving up after a lap.

use std::net::IpAddr;

use multus_plugin_sdk::ip::next;
use multus_plugin_sdk::store::Transaction;
use multus_plugin_sdk::{Attachment, CniError};

use crate::config::{set_string, RangeSet};

const LAST_RESERVED: &str = "last_reserved_ip.";

/// host-local's reservations in the store: key = IP, value = `id\r\nifname`.
pub struct Reservations<'a> {
    txn: &'a Transaction,
}

fn owner(value: &str) -> (&str, Option<&str>) {
    let v = value.trim();
    match v.split_once("\r\n") {
        Some((id, ifname)) => (id.trim(), Some(ifname.trim())),
        None => (v, None),
    }
}

impl<'a> Reservations<'a> {
    pub fn new(txn: &'a Transaction) -> Self {
        Self { txn }
    }

    /// Every (ip, value) pair; other keys (the round-robin markers) skipped.
    fn all(&self) -> Result<Vec<(IpAddr, String)>, CniError> {
        let mut out = Vec::new();
        for k in self.txn.keys()? {
            if let Ok(ip) = k.parse::<IpAddr>() {
                if let Some(v) = self.txn.get(&k)? {
                    out.push((ip, v));
                }
            }
        }
        Ok(out)
    }

    pub fn get_by_id(&self, id: &str, ifname: &str) -> Result<Vec<IpAddr>, CniError> {
        Ok(self
            .all()?
            .into_iter()
            .filter(|(_, v)| owner(v) == (id.trim(), Some(ifname)))
            .map(|(ip, _)| ip)
            .collect())
    }

    /// Releases what (id, ifname) holds; files from before ifnames were
    /// recorded (holding only the id) are released when nothing else matched.
    pub fn release_by_id(&mut self, id: &str, ifname: &str) -> Result<usize, CniError> {
        let all = self.all()?;
        let mut n = 0;
        for (ip, v) in &all {
            if owner(v) == (id.trim(), Some(ifname)) && self.txn.remove(&ip.to_string())? {
                n += 1;
            }
        }
        if n == 0 {
            for (ip, v) in &all {
                if owner(v) == (id.trim(), None) && self.txn.remove(&ip.to_string())? {
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// GC: releases every reservation not held by a valid attachment.
    pub fn release_unless(&mut self, valid: &[Attachment]) -> Result<usize, CniError> {
        let mut n = 0;
        for (ip, v) in self.all()? {
            let (id, ifname) = owner(&v);
            let keep = valid
                .iter()
                .any(|a| a.container_id == id && ifname.is_none_or(|i| i == a.ifname));
            if !keep && self.txn.remove(&ip.to_string())? {
                n += 1;
            }
        }
        Ok(n)
    }

    fn reserve(
        &mut self,
        id: &str,
        ifname: &str,
        ip: IpAddr,
        range_id: usize,
    ) -> Result<bool, CniError> {
        if !self
            .txn
            .insert(&ip.to_string(), &format!("{}\r\n{ifname}", id.trim()))?
        {
            return Ok(false);
        }
        self.txn
            .put(&format!("{LAST_RESERVED}{range_id}"), &ip.to_string())?;
        Ok(true)
    }

    fn last_reserved(&self, range_id: usize) -> Result<Option<IpAddr>, CniError> {
        Ok(self
            .txn
            .get(&format!("{LAST_RESERVED}{range_id}"))?
            .and_then(|s| s.trim().parse().ok()))
    }
}

pub struct Allocator<'a> {
    pub set: &'a RangeSet,
    pub range_id: usize,
}

impl Allocator<'_> {
    /// Reserves `requested`, or the next free IP; returns (ip, gateway, prefix).
    pub fn get(
        &self,
        res: &mut Reservations<'_>,
        id: &str,
        ifname: &str,
        requested: Option<IpAddr>,
    ) -> Result<(IpAddr, IpAddr, u8), String> {
        let e = |e: CniError| e.msg;
        if let Some(ip) = requested {
            let r = self
                .set
                .iter()
                .find(|r| r.contains(ip))
                .ok_or_else(|| format!("{ip} not in range set {}", set_string(self.set)))?;
            if ip == r.gateway {
                return Err(format!("requested ip {ip} is subnet's gateway"));
            }
            if !res.reserve(id, ifname, ip, self.range_id).map_err(e)? {
                return Err(format!(
                    "requested IP address {ip} is not available in range set {}",
                    set_string(self.set)
                ));
            }
            return Ok((ip, r.gateway, r.subnet.prefix));
        }
        for held in res.get_by_id(id, ifname).map_err(e)? {
            if self.set.iter().any(|r| r.contains(held)) {
                return Err(format!(
                    "{held} has been allocated to {id}, duplicate allocation is not allowed"
                ));
            }
        }
        let mut iter = RangeIter::new(self.set, res.last_reserved(self.range_id).map_err(e)?);
        while let Some((ip, idx)) = iter.next() {
            if res.reserve(id, ifname, ip, self.range_id).map_err(e)? {
                let r = &self.set[idx];
                return Ok((ip, r.gateway, r.subnet.prefix));
            }
        }
        Err(format!(
            "no IP addresses available in range set: {}",
            set_string(self.set)
        ))
    }
}

/// Walks the set from after `last` (or from the first range's start) until
/// it comes back around.
struct RangeIter<'a> {
    set: &'a RangeSet,
    idx: usize,
    cur: Option<IpAddr>,
    start: Option<IpAddr>,
}

impl<'a> RangeIter<'a> {
    fn new(set: &'a RangeSet, last: Option<IpAddr>) -> Self {
        match last.and_then(|ip| set.iter().position(|r| r.contains(ip)).map(|i| (ip, i))) {
            Some((ip, idx)) => Self {
                set,
                idx,
                cur: Some(ip),
                start: None,
            },
            None => Self {
                set,
                idx: 0,
                cur: None,
                start: Some(set[0].start),
            },
        }
    }

    fn next(&mut self) -> Option<(IpAddr, usize)> {
        loop {
            let r = &self.set[self.idx];
            let Some(cur) = self.cur else {
                self.cur = Some(r.start);
                self.start = Some(r.start);
                if r.start == r.gateway {
                    continue;
                }
                return Some((r.start, self.idx));
            };
            let r = if cur == r.end {
                self.idx = (self.idx + 1) % self.set.len();
                let r = &self.set[self.idx];
                self.cur = Some(r.start);
                r
            } else {
                self.cur = Some(next(cur));
                r
            };
            let cur = self.cur.expect("set above");
            match self.start {
                None => self.start = Some(cur),
                Some(s) if s == cur => return None,
                Some(_) => {}
            }
            if cur == r.gateway {
                continue;
            }
            return Some((cur, self.idx));
        }
    }
}
