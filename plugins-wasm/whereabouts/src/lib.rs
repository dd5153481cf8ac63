//! whereabouts as a sandboxed IPAM module (`cluster-ipam` world): one IP pool
//! per range for the whole cluster, kept where and as whereabouts keeps it
//! (`IPPool` and `OverlappingRangeIPReservation` objects), so either can
//! allocate from the same pool.
//!
//! Unlike whereabouts there is no cluster-wide Lease: every pool write is a
//! replace guarded by the pool's resourceVersion, retried with jittered
//! backoff on conflict; the overlapping reservation is created before the
//! pool write and deleted if that write fails, so the two never disagree;
//! offsets are 128-bit; DEL reports its failures. On one node, the calls
//! writing one pool take turns (`cluster.take-turn`), so a node's pods
//! started at once queue for it instead of racing each other into 409s.

mod conf;
mod pool;
mod slices;

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::time::Duration;

use multus_plugin_sdk::cluster::{self, ClusterError};
use multus_plugin_sdk::conf::NetConf;
use multus_plugin_sdk::{
    code, debug, error, Attachment, CniError, CniResult, Dns, IpConfig, Plugin, Request, Route,
};

use conf::{Conf, IpRange};
use pool::{lowest_free, pools, reservation_name, reservations, Owner, Pool};

/// Attempts per range before giving up with "try again later"; the jittered
/// backoff keeps their sum within a few seconds.
pub(crate) const ATTEMPTS: u32 = 200;

pub(crate) fn cluster_error(what: &str, e: ClusterError) -> CniError {
    match e {
        ClusterError::Unavailable(m) => error(
            code::TRY_AGAIN_LATER,
            format!("whereabouts: {what}: the API server is unavailable: {m}"),
        ),
        ClusterError::Invalid(m) | ClusterError::Denied(m) => {
            error(code::INVALID_CONFIG, format!("whereabouts: {what}: {m}"))
        }
        ClusterError::NotFound(m) | ClusterError::Conflict(m) => {
            error(code::INTERNAL, format!("whereabouts: {what}: {m}"))
        }
    }
}

/// Sleeps before attempt `n` again: exponential from 2 ms, capped at 100
/// ms, times a random factor in [0.5, 1.5) so racing nodes spread out.
pub(crate) fn backoff(n: u32) {
    let base = 2u64 << n.min(6);
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let jitter = base / 2 + random % base.max(1);
    std::thread::sleep(Duration::from_millis(jitter.min(100)));
}

/// Tries of a read or a create the API server did not answer. Under load
/// (500 nodes' pods at once) an answer can outlast one call's budget; a
/// read is safe to send again, and so is a create (one that landed is
/// refused the second time, a conflict its caller reads as such), and
/// once more costs the API server one request where the kubelet's retry
/// of the whole ADD costs it a rollback and every request again (upstream
/// whereabouts tries each request up to 100 times). A refused connection
/// fails as fast, so a dead API server is still reported at once. Other
/// writes are never sent again blindly: one unanswered may have landed
/// (see [`UNANSWERED_WRITES`]; a delete is not sent again at all: landed,
/// its name may be another's by then).
const TRIES: u32 = 3;

/// Pool writes left unanswered that an allocation or a free survives: the
/// write is guarded by the pool's resourceVersion, so reading the pool
/// again tells whether it landed (the allocation is there) or not (then
/// it is written again, as after a conflict).
const UNANSWERED_WRITES: u32 = 2;

/// `f`, a read or a create, sent again (up to [`TRIES`] in all) while the
/// API server leaves it unanswered.
pub(crate) fn patiently<T>(
    what: &str,
    mut f: impl FnMut() -> Result<T, ClusterError>,
) -> Result<T, ClusterError> {
    let mut tried = 1;
    loop {
        match f() {
            Err(ClusterError::Unavailable(m)) if tried < TRIES => {
                debug(&format!("whereabouts: {what}: {m}; sending it again"));
                backoff(tried);
                tried += 1;
            }
            other => return other,
        }
    }
}

/// This node's turn on pool `name` for as long as it lives: a node's pods
/// started at once then write the pool one after another, each write
/// landing at the first try, where racing they lost most of them to 409s.
/// Without one (the host's wait spent) the resourceVersion guard alone
/// keeps the pool right.
struct Turn<'a>(&'a str);

impl<'a> Turn<'a> {
    fn take(name: &'a str) -> Self {
        if !cluster::take_turn(&pools(), name) {
            debug(&format!(
                "whereabouts: IPPool {name}: writing without this node's turn"
            ));
        }
        Self(name)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        cluster::end_turn(&pools(), self.0);
    }
}

fn owner(req: &Request) -> Owner {
    let podref = match (req.arg("K8S_POD_NAMESPACE"), req.arg("K8S_POD_NAME")) {
        (Some(ns), Some(name)) if !name.is_empty() => format!("{ns}/{name}"),
        _ => String::new(),
    };
    Owner {
        container_id: req.container_id.clone(),
        podref,
        ifname: req.ifname.clone(),
    }
}

/// The pool of `range` as it is, or a new empty one when it does not exist
/// yet (then `false`: the allocation creates it, so a node's first one
/// costs a create, not a create and a replace, and nodes racing to create
/// one pool are told apart by the create's 409 like any other write).
fn pool(name: &str, range: &IpRange) -> Result<(Pool, bool), CniError> {
    match read_pool(name)? {
        Some(p) => Ok((p, true)),
        None => Pool::parse(&Pool::new_object(name, range).to_string())
            .map(|p| (p, false))
            .map_err(|e| error(code::INTERNAL, e)),
    }
}

/// Reserves `ip` across overlapping ranges. `Ok(false)` when another
/// attachment holds it. One this attachment holds under an earlier
/// container becomes this container's (a replace guarded by its
/// resourceVersion; lost to a racing writer, it is tried on the next
/// round).
fn reserve(conf: &Conf, owner: &Owner, ip: IpAddr) -> Result<bool, CniError> {
    let name = reservation_name(&conf.network_name, ip);
    let object = owner.reservation(&name).to_string();
    // One that landed unanswered is refused when sent again, and the
    // reservation read below is found to be ours.
    let created = patiently(&format!("reserving {ip}"), || {
        cluster::create(&reservations(), &object)
    });
    match created {
        Ok(_) => Ok(true),
        Err(ClusterError::Conflict(_)) => match patiently("reading a reservation", || {
            cluster::get(&reservations(), &name)
        }) {
            Ok(text) if owner.holds(&text) => match owner.take_over(&text) {
                None => Ok(true),
                Some(mine) => match cluster::replace(&reservations(), &name, &mine.to_string()) {
                    Ok(_) => Ok(true),
                    Err(ClusterError::Conflict(_) | ClusterError::NotFound(_)) => Ok(false),
                    Err(e) => Err(cluster_error(&format!("taking over reservation {name}"), e)),
                },
            },
            Ok(_) => Ok(false),
            // Freed meanwhile: try again on the next round.
            Err(ClusterError::NotFound(_)) => Ok(false),
            Err(e) => Err(cluster_error(&format!("reading reservation {name}"), e)),
        },
        Err(e) => Err(cluster_error(&format!("reserving {ip}"), e)),
    }
}

/// Deletes the reservations this container's interface made: those
/// labeled as its (a reservation made by a module before 0.1.6 has no
/// label; `multusctl ipam reconcile` frees it once its pod is gone).
/// Listed by label, so a DEL costs the API server what its own
/// reservations do: 1000 DELs each listing all 1000 reservations asked it
/// for 400 MB at once.
fn drop_claims(owner: &Owner) -> Result<(), CniError> {
    let selector = format!("{}={}", pool::OWNER_LABEL, owner.label());
    let text = patiently("listing reservations", || {
        cluster::list_labeled(&reservations(), &selector)
    })
    .map_err(|e| cluster_error("listing reservations", e))?;
    // A list that cannot be read is an error, never "nothing to free": a
    // DEL that reported success on it would leak this pod's reservations.
    let unreadable = |why: String| {
        error(
            code::DECODE,
            format!(
                "whereabouts: listing reservations: the answer is not a reservation list ({why})"
            ),
        )
    };
    let list: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| unreadable(e.to_string()))?;
    let items = list["items"]
        .as_array()
        .ok_or_else(|| unreadable("no items".into()))?;
    for item in items {
        let spec = &item["spec"];
        if spec["containerid"] != owner.container_id.as_str()
            || spec["ifname"] != owner.ifname.as_str()
        {
            continue;
        }
        let name = item["metadata"]["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| unreadable("a reservation of this pod has no name".into()))?;
        match cluster::delete(&reservations(), name) {
            Ok(()) | Err(ClusterError::NotFound(_)) => {}
            Err(e) => return Err(cluster_error(&format!("freeing reservation {name}"), e)),
        }
    }
    Ok(())
}

fn unreserve(conf: &Conf, ip: IpAddr) -> Result<(), CniError> {
    let name = reservation_name(&conf.network_name, ip);
    match cluster::delete(&reservations(), &name) {
        Ok(()) | Err(ClusterError::NotFound(_)) => Ok(()),
        Err(e) => Err(cluster_error(&format!("freeing reservation {name}"), e)),
    }
}

/// Allocates from `range` for `owner`: its old address if it has one, else
/// the lowest free one.
///
/// With overlapping ranges on (the default) the IP's reservation is taken
/// before the pool write, which makes it a claim: racing attachments see
/// it and move on to the next address instead of all retrying the same
/// one. The claim is kept across pool-write conflicts and deleted when the
/// allocation fails for good, so reservations and pools never disagree
/// (whereabouts #712).
fn allocate(
    conf: &Conf,
    range: &IpRange,
    name: &str,
    owner: &Owner,
) -> Result<Option<IpAddr>, CniError> {
    let mut claimed: Option<u128> = None;
    let give_up = |claimed: Option<u128>, e: CniError| -> CniError {
        if let Some(o) = claimed {
            if let Err(undo) = unreserve(conf, range.ip(o)) {
                debug(&format!(
                    "whereabouts: releasing the claim on {}: {}",
                    range.ip(o),
                    undo.msg
                ));
            }
        }
        e
    };
    let _turn = Turn::take(name);
    let mut unanswered = 0;
    for attempt in 0..ATTEMPTS {
        let (mut pool, exists) = pool(name, range).map_err(|e| give_up(claimed, e))?;
        let held = pool.held_by(owner);
        let mut refused = std::collections::BTreeSet::new();
        let offset = loop {
            let free = |o: u128| !pool.allocations.contains_key(&o) && !refused.contains(&o);
            let candidate = held
                .or(claimed.filter(|o| free(*o)))
                .or_else(|| lowest_free(range, |o| !free(o)));
            let Some(o) = candidate else {
                if let Some(o) = claimed {
                    unreserve(conf, range.ip(o))?;
                }
                return Ok(None);
            };
            if !conf.overlapping || claimed == Some(o) {
                break o;
            }
            match reserve(conf, owner, range.ip(o)) {
                // An address of ours in the pool stays ours regardless.
                Ok(_) if held.is_some() => break o,
                Ok(true) => {
                    if let Some(old) = claimed.replace(o) {
                        unreserve(conf, range.ip(old))?;
                    }
                    break o;
                }
                // Claimed in an overlapping range, or by a racing attachment.
                Ok(false) => {
                    refused.insert(o);
                }
                Err(e) => return Err(give_up(claimed, e)),
            }
        };
        let ip = range.ip(offset);
        if held.is_some_and(|o| pool.allocations[&o].id == owner.container_id) {
            return Ok(Some(ip));
        }
        pool.allocations.insert(offset, owner.allocation());
        let written = if exists {
            cluster::replace(&pools(), pool.name(), &pool.to_json())
        } else {
            cluster::create(&pools(), &pool.to_json())
        };
        match written {
            Ok(_) => return Ok(Some(ip)),
            // Changed, or created by another node meanwhile: read it again.
            Err(ClusterError::Conflict(_)) => {
                debug(&format!("whereabouts: IPPool {name} changed; retrying"));
                backoff(attempt);
            }
            // Landed or not: the next read tells (held: landed).
            Err(ClusterError::Unavailable(m)) if unanswered < UNANSWERED_WRITES => {
                debug(&format!(
                    "whereabouts: writing IPPool {name}: {m}; reading it again"
                ));
                unanswered += 1;
                backoff(attempt);
            }
            Err(e) => {
                let e = cluster_error(&format!("writing IPPool {name}"), e);
                return Err(give_up(claimed, e));
            }
        }
    }
    let e = error(
        code::TRY_AGAIN_LATER,
        format!("whereabouts: IPPool {name}: still conflicting after {ATTEMPTS} attempts"),
    );
    Err(give_up(claimed, e))
}

/// Frees what `owner`'s container holds in pool `name` of `range`;
/// nothing held is fine. True if it held something.
fn release(conf: &Conf, range: &IpRange, name: &str, owner: &Owner) -> Result<bool, CniError> {
    free_where(conf, range, name, &|a| {
        a.id == owner.container_id && a.ifname == owner.ifname
    })
    .map(|ips| !ips.is_empty())
}

/// Frees what `owner` holds of `range` on this node, in every pool it may
/// be in, the first failure reported after trying them all. With node
/// slices, the slices of the addresses the DEL's `prevResult` names
/// (`known`) come first: their pools need no NodeSlicePool read. Then the
/// node's slices from the API server's cache; only when none of them held
/// anything are they read again live (a slice claimed a moment ago may not
/// be cached yet), so a DEL never reports success past an allocation it
/// did not see. A `known` address is a hint only: a pool is freed of this
/// container's allocations alone, whatever names it.
fn release_in(
    conf: &Conf,
    range: &IpRange,
    owner: &Owner,
    known: &[IpAddr],
) -> Result<bool, CniError> {
    let mut freeing = Freeing::default();
    if let Some(prefix) = conf.slice_prefix {
        let node = cluster::node_name();
        for s in known
            .iter()
            .filter_map(|ip| slices::containing(range, prefix, *ip))
        {
            let name = slices::pool_name(conf, &node, &s);
            freeing.pool(conf, owner, &s, name);
        }
    }
    for cached in [true, false] {
        if freeing.done() || (!cached && conf.slice_prefix.is_none()) {
            break;
        }
        for (p, name) in pools_of(conf, range, cached)? {
            freeing.pool(conf, owner, &p, name);
        }
    }
    freeing.first.map_or(Ok(freeing.freed), Err)
}

/// What [`release_in`] has done so far.
#[derive(Default)]
struct Freeing {
    first: Option<CniError>,
    freed: bool,
    tried: Vec<String>,
}

impl Freeing {
    /// Frees `owner`'s allocations in pool `name`, once per pool.
    fn pool(&mut self, conf: &Conf, owner: &Owner, range: &IpRange, name: String) {
        if self.tried.contains(&name) {
            return;
        }
        match release(conf, range, &name, owner) {
            Ok(f) => self.freed |= f,
            Err(e) => {
                self.first.get_or_insert(e);
            }
        }
        self.tried.push(name);
    }

    /// Something freed, or a failure to report: no more pools to look in.
    fn done(&self) -> bool {
        self.freed || self.first.is_some()
    }
}

/// Frees the allocations of pool `name` that `doomed` picks: their
/// reservations first, then the pool with a write guarded by its
/// resourceVersion (re-read on conflict). In that order a failure at either
/// step leaves the allocation in the pool, so a retried DEL finds it and
/// frees both; the other order leaked the reservation whenever its delete
/// failed after the pool write. Returns the addresses freed.
fn free_where(
    conf: &Conf,
    range: &IpRange,
    name: &str,
    doomed: &dyn Fn(&pool::Allocation) -> bool,
) -> Result<Vec<IpAddr>, CniError> {
    let _turn = Turn::take(name);
    let mut unanswered = 0;
    for attempt in 0..ATTEMPTS {
        let Some(mut pool) = read_pool(name)? else {
            return Ok(Vec::new());
        };
        let freed: Vec<u128> = pool
            .allocations
            .iter()
            .filter(|(_, a)| doomed(a))
            .map(|(o, _)| *o)
            .collect();
        if freed.is_empty() {
            return Ok(Vec::new());
        }
        let ips: Vec<IpAddr> = freed.iter().map(|o| range.ip(*o)).collect();
        if conf.overlapping {
            for ip in &ips {
                unreserve(conf, *ip)?;
            }
        }
        for o in &freed {
            pool.allocations.remove(o);
        }
        match cluster::replace(&pools(), pool.name(), &pool.to_json()) {
            Ok(_) => return Ok(ips),
            Err(ClusterError::Conflict(_)) => backoff(attempt),
            // Landed or not: the next read tells (landed: nothing left to
            // free, reported as nothing freed, so a DEL looks further).
            Err(ClusterError::Unavailable(_)) if unanswered < UNANSWERED_WRITES => {
                unanswered += 1;
                backoff(attempt);
            }
            Err(e) => return Err(cluster_error(&format!("writing IPPool {name}"), e)),
        }
    }
    Err(error(
        code::TRY_AGAIN_LATER,
        format!("whereabouts: IPPool {name}: still conflicting after {ATTEMPTS} attempts"),
    ))
}

fn result(conf: &Conf, ips: &[(IpAddr, &IpRange)]) -> CniResult {
    let mut r = CniResult::empty();
    for (ip, range) in ips {
        r.ips.push(IpConfig {
            address: format!("{ip}/{}", range.subnet.prefix),
            gateway: conf
                .gateway
                .filter(|g| g.is_ipv4() == ip.is_ipv4())
                .map(|g| g.to_string()),
            interface: None,
        });
    }
    for (addr, gw) in &conf.addresses {
        r.ips.push(IpConfig {
            address: addr.to_string(),
            gateway: gw.map(|g| g.to_string()),
            interface: None,
        });
    }
    r.routes = conf.routes.iter().map(Route::from).collect();
    r.dns = conf.dns.clone().map(Dns::from);
    r
}

fn load(req: &Request) -> Result<Conf, CniError> {
    Conf::load(&NetConf::parse(req)?)
}

/// The pool object `name`, if it exists.
fn read_pool(name: &str) -> Result<Option<Pool>, CniError> {
    match patiently("reading an IPPool", || cluster::get(&pools(), name)) {
        Ok(text) => Pool::parse(&text)
            .map(Some)
            .map_err(|e| error(code::INTERNAL, e)),
        Err(ClusterError::NotFound(_)) => Ok(None),
        Err(e) => Err(cluster_error(&format!("reading IPPool {name}"), e)),
    }
}

/// The pools an attachment of `range` may be in on this node: the range's
/// own, or this node's slices' (`cached`: see [`slices::mine`]).
fn pools_of(
    conf: &Conf,
    range: &IpRange,
    cached: bool,
) -> Result<Vec<(IpRange, String)>, CniError> {
    match conf.slice_prefix {
        None => Ok(vec![(
            range.clone(),
            pool::pool_name(&conf.network_name, range),
        )]),
        Some(prefix) => {
            let node = cluster::node_name();
            Ok(slices::mine(conf, range, prefix, &node, cached)?
                .into_iter()
                .map(|s| {
                    let name = slices::pool_name(conf, &node, &s);
                    (s, name)
                })
                .collect())
        }
    }
}

fn exhausted(range: &IpRange, pools: &str) -> CniError {
    error(
        code::INTERNAL,
        format!("whereabouts: range {} is exhausted ({pools})", range.cidr()),
    )
}

/// One address from `range` for `owner`.
fn allocate_in(conf: &Conf, range: &IpRange, owner: &Owner) -> Result<IpAddr, CniError> {
    let Some(prefix) = conf.slice_prefix else {
        let name = pool::pool_name(&conf.network_name, range);
        return allocate(conf, range, &name, owner)?
            .ok_or_else(|| exhausted(range, &format!("IPPool {name}")));
    };
    let node = cluster::node_name();
    let mut mine = slices::claim(conf, range, prefix, &node, None)?;
    // An address the attachment holds already, in whichever slice. With
    // one slice (most nodes) the allocation below finds it: no read.
    for s in mine.iter().filter(|_| mine.len() > 1) {
        let name = slices::pool_name(conf, &node, s);
        if read_pool(&name)?.is_some_and(|p| p.held_by(owner).is_some()) {
            if let Some(ip) = allocate(conf, s, &name, owner)? {
                return Ok(ip);
            }
        }
    }
    loop {
        for s in &mine {
            if let Some(ip) = allocate(conf, s, &slices::pool_name(conf, &node, s), owner)? {
                return Ok(ip);
            }
        }
        let more = slices::claim(conf, range, prefix, &node, Some(mine.len()))?;
        if more.len() <= mine.len() {
            return Err(exhausted(
                range,
                &format!(
                    "node {node}'s {} slices full, none left to claim",
                    mine.len()
                ),
            ));
        }
        mine = more;
    }
}

struct Whereabouts;

impl Plugin for Whereabouts {
    fn add(req: Request) -> Result<CniResult, CniError> {
        let conf = load(&req)?;
        let owner = owner(&req);
        let mut done: Vec<(IpAddr, &IpRange)> = Vec::new();
        for range in &conf.ranges {
            match allocate_in(&conf, range, &owner) {
                Ok(ip) => done.push((ip, range)),
                Err(e) => {
                    // Nothing half-allocated: free the earlier ranges.
                    for (ip, r) in &done {
                        if let Err(undo) = release_in(&conf, r, &owner, &[*ip]) {
                            debug(&format!(
                                "whereabouts: rollback of {}: {}",
                                r.cidr(),
                                undo.msg
                            ));
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(result(&conf, &done))
    }

    fn del(req: Request) -> Result<(), CniError> {
        let net = NetConf::parse(&req)?;
        let conf = Conf::load(&net)?;
        let owner = owner(&req);
        // Every pool, even after a failure, and the first failure reported.
        let mut failed = None;
        // The addresses the ADD answered, when the runtime passes them.
        let known: Vec<IpAddr> = net
            .prev_result()
            .ok()
            .flatten()
            .map(|r| {
                r.ips
                    .iter()
                    .filter_map(|c| multus_plugin_sdk::ip::parse_ip(&c.address).ok())
                    .collect()
            })
            .unwrap_or_default();
        let mut all_freed = true;
        for range in &conf.ranges {
            match release_in(&conf, range, &owner, &known) {
                Ok(freed) => all_freed &= freed,
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        // An ADD killed between its claim and its pool write leaves a
        // reservation no allocation points at (found by the soak's kills).
        // Its DEL has no result to go by. One with the ADD's result that
        // freed every range lists nothing: that ADD finished, and an
        // allocation that finishes drops every other claim it made (and a
        // runtime DELs a failed ADD before adding that container again).
        let finished = !known.is_empty() && all_freed;
        if conf.overlapping && failed.is_none() && !finished {
            if let Err(e) = drop_claims(&owner) {
                failed = Some(e);
            }
        }
        failed.map_or(Ok(()), Err)
    }

    fn check(req: Request) -> Result<(), CniError> {
        let conf = load(&req)?;
        let owner = owner(&req);
        for range in &conf.ranges {
            let mut found = false;
            for (_, name) in pools_of(&conf, range, false)? {
                found |= read_pool(&name)?.is_some_and(|p| {
                    p.allocations
                        .values()
                        .any(|a| a.id == owner.container_id && a.ifname == owner.ifname)
                });
            }
            if !found {
                return Err(error(
                    code::INTERNAL,
                    format!(
                        "whereabouts: no address of range {} for container {} on {}",
                        range.cidr(),
                        owner.container_id,
                        owner.ifname
                    ),
                ));
            }
        }
        Ok(())
    }

    fn status(req: Request) -> Result<(), CniError> {
        let conf = load(&req)?;
        let range = &conf.ranges[0];
        let name = pool::pool_name(&conf.network_name, range);
        match cluster::get(&pools(), &name) {
            Ok(_) | Err(ClusterError::NotFound(_)) => Ok(()),
            Err(e) => Err(error(
                50,
                format!(
                    "whereabouts: cannot reach the pools: {}",
                    cluster_error("STATUS", e).msg
                ),
            )),
        }
    }

    /// With node slices the pools of this node's slices are this node's
    /// alone: what is in them and not in `valid` is a leak, freed here.
    /// Without, pools do not say which node an allocation is on, so one
    /// node's list cannot tell another node's from a leak: nothing is freed.
    fn gc(req: Request, valid: Vec<Attachment>) -> Result<(), CniError> {
        let conf = load(&req)?;
        if conf.slice_prefix.is_none() {
            debug("whereabouts: GC frees nothing without node slices: IPPools do not record nodes");
            return Ok(());
        }
        let live = |a: &pool::Allocation| {
            valid
                .iter()
                .any(|v| v.container_id == a.id && v.ifname == a.ifname)
        };
        for range in &conf.ranges {
            // A slice claimed a moment ago and not cached yet waits for
            // the next GC: nothing is lost by missing it once.
            for (slice, name) in pools_of(&conf, range, true)? {
                for ip in free_where(&conf, &slice, &name, &|a| !live(a))? {
                    debug(&format!("whereabouts: GC freed {ip} from {name}"));
                }
            }
        }
        Ok(())
    }
}

multus_plugin_sdk::export!(Whereabouts);
