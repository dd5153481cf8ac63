//! Where one ADD's time goes, read from multus's own debug log (the thin
//! binary's `logFile`, the daemon's): the API client's setup, each
//! connection (TCP, TLS), each kind of API call (calls made at once count
//! once: the span from the first's start to the last's end), each
//! delegate, module loads. A row a log lacks is 0 for that ADD.

use std::collections::BTreeMap;
use std::time::SystemTime;

/// One ADD's rows: (row, ms, count).
pub type Rows = BTreeMap<String, (f64, usize)>;

/// `key=value` or `key="value"` of a tracing fmt line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[at..];
    match rest.strip_prefix('"') {
        Some(q) => q.find('"').map(|end| &q[..end]),
        None => Some(rest.split(' ').next().unwrap_or(rest)),
    }
}

fn ms(line: &str) -> Option<f64> {
    field(line, "duration_ms")
        .and_then(|v| v.parse().ok())
        .or_else(|| field(line, "duration_us").and_then(|v| v.parse::<f64>().ok().map(|u| u / 1e3)))
}

fn time(line: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(line.split(' ').next()?).ok()
}

/// The kind of an API call: its verb and resource, without the object's
/// name (`GET pod default/x` → `GET pod`; `PUT pod default/x status` →
/// `PUT pod status`).
fn call_kind(call: &str) -> String {
    let words: Vec<&str> = call.split(' ').collect();
    match words.as_slice() {
        [verb, kind, _, rest @ ..] if !rest.is_empty() => {
            format!("{verb} {kind} {}", rest.join(" "))
        }
        [verb, kind, ..] => format!("{verb} {kind}"),
        _ => call.to_string(),
    }
}

/// The rows of one ADD's log lines.
pub fn rows(log: &str) -> Rows {
    let mut out = Rows::new();
    let mut add = |row: String, ms: f64| {
        let e = out.entry(row).or_insert((0.0, 0));
        e.0 += ms;
        e.1 += 1;
    };
    // (first start, last end, count) of each kind of API call.
    let mut spans: BTreeMap<String, (f64, f64, usize)> = BTreeMap::new();
    let (mut first, mut last) = (None::<SystemTime>, None::<SystemTime>);
    for line in log.lines() {
        let Some(t) = time(line) else { continue };
        first = first.or(Some(t));
        last = Some(t);
        let d = ms(line);
        if line.contains(" API client built") {
            add(
                "API client built (kubeconfig, TLS config)".into(),
                d.unwrap_or(0.0),
            );
        } else if line.contains(" API connection") {
            match field(line, "stage") {
                Some("tcp") => add("API connections: TCP connect".into(), d.unwrap_or(0.0)),
                _ => add(
                    "API connections: TCP connect + TLS handshake".into(),
                    d.unwrap_or(0.0),
                ),
            }
        } else if line.contains(" API request") {
            let (Some(call), Some(d)) = (field(line, "call"), d) else {
                continue;
            };
            let end = t
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|x| x.as_secs_f64() * 1e3)
                .unwrap_or(0.0);
            let e = spans.entry(call_kind(call)).or_insert((f64::MAX, 0.0, 0));
            e.0 = e.0.min(end - d);
            e.1 = e.1.max(end);
            e.2 += 1;
        } else if line.contains(" delegate ok") {
            if let (Some(net), Some(d)) = (field(line, "network"), d) {
                add(format!("delegate {net} (all its plugins)"), d);
            }
        } else if let Some(load) = field(line, "load_us").and_then(|v| v.parse::<f64>().ok()) {
            add(
                "module loads (artifact, in the delegates)".into(),
                load / 1e3,
            );
        }
    }
    for (kind, (start, end, n)) in spans {
        out.insert(format!("API {kind}"), (end - start, n));
    }
    if let (Some(a), Some(b)) = (first, last) {
        let span = b
            .duration_since(a)
            .map(|d| d.as_secs_f64() * 1e3)
            .unwrap_or(0.0);
        out.insert("first to last log line".into(), (span, 1));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_a_thin_add() {
        let log = r#"2026-12-06T05:40:01.000000Z DEBUG multus::k8s::client: API client built duration_ms="1.50"
2026-12-06T05:40:01.004000Z DEBUG multus::k8s::transport: API connection stage=tcp duration_ms="0.20" h2=true
2026-12-06T05:40:01.005000Z DEBUG multus::k8s::transport: API connection stage=tcp+tls duration_ms="3.00" h2=true
2026-12-06T05:40:01.006000Z DEBUG multus::k8s::client: API request call="GET pod default/p" duration_ms="5.00" ok=true
2026-12-06T05:40:01.010000Z DEBUG multus::k8s::client: API request call="GET network-attachment-definition default/a" duration_ms="3.00" ok=true
2026-12-06T05:40:01.011000Z DEBUG multus::k8s::client: API request call="GET network-attachment-definition default/b" duration_ms="2.00" ok=true
2026-12-06T05:40:01.020000Z DEBUG multus::delegate::wasm: add module="bridge" load_us=500 instantiate_us=200 call_us=3000 compiled=false
2026-12-06T05:40:01.030000Z  INFO multus::invoke: delegate ok pod=default/p network=cluster ifname=eth0 command=ADD duration_ms="9.00"
2026-12-06T05:40:01.040000Z DEBUG multus::k8s::client: API request call="PUT pod default/p status" duration_ms="4.00" ok=true
"#;
        let r = rows(log);
        assert_eq!(r["API GET pod"], (5.0, 1));
        // Two at once: from the first's start (7 ms) to the last's end (11 ms).
        let (nads, n) = r["API GET network-attachment-definition"];
        assert!((nads - 4.0).abs() < 1e-6 && n == 2, "{nads} {n}");
        assert_eq!(r["API PUT pod status"].1, 1);
        assert_eq!(r["API connections: TCP connect + TLS handshake"], (3.0, 1));
        assert_eq!(r["delegate cluster (all its plugins)"], (9.0, 1));
        assert_eq!(r["module loads (artifact, in the delegates)"], (0.5, 1));
        assert!((r["first to last log line"].0 - 40.0).abs() < 1e-6);
    }
}
