//! Lists and watches as the apiserver serves them: a list carries the
//! collection's `resourceVersion`; a watch from that version streams every
//! later change as one JSON event per line (`ADDED`, `MODIFIED`, `DELETED`),
//! until `timeoutSeconds` or the client goes; a version older than the
//! retained history gets a `410 Gone` `ERROR` event, so clients relist.
//! A watch with `sendInitialEvents=true` (client-go's streaming list, on by
//! default since Kubernetes 1.34) first gets every object as `ADDED`, then
//! a `BOOKMARK` annotated `k8s.io/initial-events-end`.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::StreamBody;
use hyper::body::{Bytes, Frame};
use hyper::StatusCode;
use serde_json::{json, Value};

use super::{status, State};

/// The collections that can be listed and watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Collection {
    Pods,
    Nads,
    Nodes,
    /// Stored with the other custom objects (custom.rs records their
    /// changes); only watched here, listed by custom.rs.
    WasmPlugins,
    WasmPluginNodes,
}

impl Collection {
    /// The kind and apiVersion of one object.
    fn kind(self) -> (&'static str, &'static str) {
        match self {
            Collection::Pods => ("Pod", "v1"),
            Collection::Nads => ("NetworkAttachmentDefinition", "k8s.cni.cncf.io/v1"),
            Collection::Nodes => ("Node", "v1"),
            Collection::WasmPlugins => ("WasmPlugin", "multus-wasm.io/v1alpha1"),
            Collection::WasmPluginNodes => ("WasmPluginNode", "multus-wasm.io/v1alpha1"),
        }
    }

    /// The plural of a kind custom.rs stores.
    pub fn custom(self) -> Option<&'static str> {
        match self {
            Collection::WasmPlugins => Some("wasmplugins"),
            Collection::WasmPluginNodes => Some("wasmpluginnodes"),
            Collection::Pods | Collection::Nads | Collection::Nodes => None,
        }
    }

    /// The custom kind of `plural` that watches are served for.
    pub fn of_custom(plural: &str) -> Option<Self> {
        [Collection::WasmPlugins, Collection::WasmPluginNodes]
            .into_iter()
            .find(|c| c.custom() == Some(plural))
    }
}

/// One change, as a watch sends it.
pub(super) struct Change {
    pub rv: u64,
    pub collection: Collection,
    pub kind: &'static str,
    pub object: Value,
}

/// The query parameters of a list or watch that this server honours.
pub(super) struct Query {
    pub watch: bool,
    resource_version: Option<u64>,
    node_name: Option<String>,
    timeout: Duration,
    send_initial_events: bool,
    /// A list's page size, and where the page starts (the last page's
    /// `continue`: here, the count of items already sent).
    limit: Option<usize>,
    continue_from: usize,
}

impl Query {
    pub fn parse(collection: Collection, query: &str) -> Result<Self, (StatusCode, Value)> {
        let mut q = Self {
            watch: false,
            resource_version: None,
            node_name: None,
            timeout: Duration::from_secs(1800),
            send_initial_events: false,
            limit: None,
            continue_from: 0,
        };
        let bad = |msg: String| status(StatusCode::BAD_REQUEST, "BadRequest", msg, Value::Null);
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "watch" => q.watch = v == "true" || v == "1",
                "sendInitialEvents" => q.send_initial_events = v == "true",
                "resourceVersion" if !v.is_empty() => {
                    q.resource_version = Some(
                        v.parse()
                            .map_err(|_| bad(format!("invalid resourceVersion {v:?}")))?,
                    )
                }
                "limit" if !v.is_empty() => {
                    q.limit = Some(v.parse().map_err(|_| bad(format!("invalid limit {v:?}")))?)
                }
                "continue" if !v.is_empty() => {
                    q.continue_from = v
                        .strip_prefix("page-")
                        .and_then(|n| n.parse().ok())
                        .ok_or_else(|| bad(format!("invalid continue token {v:?}")))?
                }
                "timeoutSeconds" => {
                    q.timeout = Duration::from_secs(
                        v.parse()
                            .map_err(|_| bad(format!("invalid timeoutSeconds {v:?}")))?,
                    )
                }
                "fieldSelector" if !v.is_empty() => {
                    for term in v.split(',') {
                        match (collection, term.split_once('=')) {
                            (Collection::Pods, Some(("spec.nodeName", node))) => {
                                q.node_name = Some(node.trim_start_matches('=').to_string())
                            }
                            _ => {
                                return Err(bad(format!(
                                    "\"{term}\" is not a known field selector: only \"spec.nodeName\" for pods"
                                )))
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(q)
    }

    /// Whether `object` passes the field selector.
    fn matches(&self, object: &Value) -> bool {
        self.node_name
            .as_ref()
            .is_none_or(|n| object["spec"]["nodeName"] == n.as_str())
    }

    fn selects(&self, collection: Collection, c: &Change) -> bool {
        c.collection == collection && self.matches(&c.object)
    }
}

/// Items of a list carry no kind for built-in types, as the apiserver sends them.
fn list_item(collection: Collection, object: &Value) -> Value {
    let mut o = object.clone();
    if matches!(collection, Collection::Pods | Collection::Nodes) {
        if let Some(m) = o.as_object_mut() {
            m.remove("kind");
            m.remove("apiVersion");
        }
    }
    o
}

/// The objects of `collection` that `q` selects.
fn selected<'a>(
    st: &'a State,
    collection: Collection,
    q: &'a Query,
) -> Box<dyn Iterator<Item = &'a Value> + 'a> {
    let objects: Box<dyn Iterator<Item = &'a Value>> = match collection {
        Collection::Pods => Box::new(st.pods.values()),
        Collection::Nads => Box::new(st.nads.values()),
        Collection::Nodes => Box::new(st.nodes.values()),
        Collection::WasmPlugins | Collection::WasmPluginNodes => {
            let plural = collection.custom();
            Box::new(
                st.custom
                    .iter()
                    .filter(move |((p, _, _), _)| Some(p.as_str()) == plural)
                    .map(|(_, v)| v),
            )
        }
    };
    Box::new(objects.filter(|o| q.matches(o)))
}

pub(super) fn list(st: &State, collection: Collection, q: &Query) -> (StatusCode, Value) {
    let all: Vec<Value> = selected(st, collection, q)
        .map(|o| list_item(collection, o))
        .collect();
    // Paged as the apiserver pages (`limit`, then `continue`); its token
    // is opaque to clients, here the count of items already sent.
    let end = q
        .limit
        .filter(|&n| n > 0)
        .map_or(all.len(), |n| (q.continue_from + n).min(all.len()));
    let items = all.get(q.continue_from.min(end)..end).unwrap_or_default();
    let mut metadata = json!({"resourceVersion": st.resource_version.to_string()});
    if end < all.len() {
        metadata["continue"] = format!("page-{end}").into();
    }
    let (kind, api_version) = collection.kind();
    (
        StatusCode::OK,
        json!({"kind": format!("{kind}List"), "apiVersion": api_version,
               "metadata": metadata, "items": items}),
    )
}

pub(super) type Body =
    StreamBody<tokio_stream::wrappers::ReceiverStream<Result<Frame<Bytes>, Infallible>>>;

fn line(v: &Value) -> Result<Frame<Bytes>, Infallible> {
    let mut bytes = serde_json::to_vec(v).expect("json");
    bytes.push(b'\n');
    Ok(Frame::data(Bytes::from(bytes)))
}

/// Streams the changes after the query's version until its timeout, the
/// client's disconnect or the server's stop.
pub(super) fn stream(state: Arc<Mutex<State>>, collection: Collection, q: Query) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let mut changed = state.lock().unwrap().changes.subscribe();
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + q.timeout;
        let mut seen = q.resource_version.unwrap_or(0);
        let gone = {
            let st = state.lock().unwrap();
            (seen < st.history_start && !q.send_initial_events).then(|| {
                json!({"type": "ERROR", "object": status(
                    StatusCode::GONE, "Expired",
                    format!("too old resource version: {seen} ({})", st.history_start),
                    Value::Null).1})
            })
        };
        if let Some(e) = gone {
            let _ = tx.send(line(&e)).await;
            return;
        }
        if q.send_initial_events {
            let initial: Vec<Value> = {
                let st = state.lock().unwrap();
                seen = st.resource_version;
                let (kind, api_version) = collection.kind();
                selected(&st, collection, &q)
                    .map(|o| json!({"type": "ADDED", "object": o}))
                    .chain([json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version,
                        "metadata": {"resourceVersion": seen.to_string(),
                                     "annotations": {"k8s.io/initial-events-end": "true"}}}})])
                    .collect()
            };
            for e in &initial {
                if tx.send(line(e)).await.is_err() {
                    return;
                }
            }
        }
        loop {
            let (events, upto) = {
                let st = state.lock().unwrap();
                let upto = *changed.borrow_and_update();
                let events: Vec<Value> = st
                    .history
                    .iter()
                    .filter(|c| c.rv > seen && q.selects(collection, c))
                    .map(|c| json!({"type": c.kind, "object": c.object}))
                    .collect();
                (events, upto)
            };
            for e in &events {
                if tx.send(line(e)).await.is_err() {
                    return;
                }
            }
            // Past the changes of other collections too.
            seen = seen.max(upto);
            tokio::select! {
                r = changed.changed() => if r.is_err() { return },
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tx.closed() => return,
            }
        }
    });
    StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx))
}
