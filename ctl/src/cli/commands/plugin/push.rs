//! `multusctl plugin push MODULE`: a built module as a WasmPlugin object
//! and the ConfigMap holding its bytes (or, with `--image`, an OCI
//! artifact pushed to a registry), created or updated. The type is
//! the file's stem (or `--name`), the role what `plugin inspect` finds, the
//! grants `--grant key=value` (the keys of `wasmPlugins.<type>`). A module
//! no role accepts, or grants multus would refuse, are refused here, before
//! anything is written.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use kube::api::{ApiResource, DynamicObject};
use multus::k8s::client::{Kind, Kube};
use serde_json::{json, Map, Value};

use crate::objects::registry::Registries;
use crate::objects::{configmap_resource, resource, valid_type, ConfigMapSource, Source, Spec};
use crate::{compile, inspect};

/// What a ConfigMap holds at most (etcd's object limit, with room for
/// the metadata).
const MAX_MODULE: usize = 1000 * 1024;

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// The built component.
    #[arg(value_name = "MODULE")]
    pub module: PathBuf,
    /// The plugin type (the object's name; `<type>.wasm` on the nodes);
    /// default the file's stem.
    #[arg(long, value_name = "TYPE")]
    pub name: Option<String>,
    /// A grant or limit, `key=value` with the keys of
    /// `wasmPlugins.<type>` but `sha256` (e.g. `hostNetns=true`,
    /// `memoryLimitMib=16`, `clusterGroups=["whereabouts.cni.cncf.io"]`).
    #[arg(long = "grant", value_name = "KEY=VALUE")]
    pub grants: Vec<String>,
    /// The multus namespace, where the ConfigMap goes.
    #[arg(long, value_name = "NS", default_value = "kube-system")]
    pub namespace: String,
    #[arg(long, value_name = "FILE", env = "KUBECONFIG")]
    pub kubeconfig: PathBuf,
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Push the module to this image reference (`registry/repository:tag`)
    /// instead of a ConfigMap; the object's source is the image.
    #[arg(long, value_name = "REF")]
    pub image: Option<String>,
    /// The image's registry speaks plain HTTP.
    #[arg(long, requires = "image")]
    pub insecure_registry: bool,
    /// A docker config with credentials for the image's registry.
    #[arg(long, value_name = "FILE", requires = "image")]
    pub registry_auth: Option<PathBuf>,
    /// CA certificates (PEM) to trust besides the system's for the
    /// image's registry (a private CA's).
    #[arg(
        long,
        value_name = "FILE",
        requires = "image",
        conflicts_with = "insecure_registry"
    )]
    pub registry_ca: Option<PathBuf>,
}

/// `key=value` pairs as JSON: a value that parses as JSON is that (true,
/// 16, a list), anything else a string.
fn grants(pairs: &[String]) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| format!("--grant {p:?}: expected KEY=VALUE"))?;
        let v = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.into()));
        out.insert(k.trim().into(), v);
    }
    Ok(out)
}

/// Creates `obj`, or replaces what is there with its resourceVersion.
/// Creates `obj` or replaces the one of its name. Every node writes a
/// WasmPlugin's status, which moves its resourceVersion, so a replace
/// races them: a conflict (or a create racing another push) reads again
/// and retries.
fn upsert(kube: &Kube, res: &ApiResource, ns: &str, mut obj: DynamicObject) -> Result<(), String> {
    const ATTEMPTS: usize = 10;
    let name = obj.metadata.name.clone().unwrap_or_default();
    let mut last = String::new();
    for _ in 0..ATTEMPTS {
        let written = match kube.get_object(res, ns, &name) {
            Ok(old) => {
                obj.metadata.resource_version = old.metadata.resource_version;
                kube.replace_object(res, ns, &name, &obj).map(drop)
            }
            Err(e) if e.kind == Kind::NotFound => {
                obj.metadata.resource_version = None;
                kube.create_object(res, ns, &obj).map(drop)
            }
            Err(e) => return Err(e.to_string()),
        };
        match written {
            Ok(()) => return Ok(()),
            Err(e) if e.kind == Kind::Conflict => last = e.to_string(),
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(format!("{last} ({ATTEMPTS} attempts)"))
}

fn object(res: &ApiResource, ns: Option<&str>, name: &str, body: Value) -> DynamicObject {
    let mut v = json!({"apiVersion": res.api_version, "kind": res.kind,
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "multusctl"}}});
    if let Some(ns) = ns {
        v["metadata"]["namespace"] = ns.into();
    }
    for (k, val) in body.as_object().into_iter().flatten() {
        v[k] = val.clone();
    }
    serde_json::from_value(v).expect("a valid object")
}

fn push(a: &PushArgs) -> Result<String, (i32, String)> {
    let bad = |e: String| (2, e);
    let ty = match &a.name {
        Some(n) => n.clone(),
        None => a
            .module
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    valid_type(&ty).map_err(|e| bad(format!("--name: {e}")))?;
    let bytes =
        std::fs::read(&a.module).map_err(|e| bad(format!("{}: {e}", a.module.display())))?;
    if a.image.is_none() && bytes.len() > MAX_MODULE {
        return Err(bad(format!(
            "{} is {} bytes; a ConfigMap holds at most {MAX_MODULE} (push it to a registry: --image)",
            a.module.display(),
            bytes.len()
        )));
    }
    let engine = compile::engine().map_err(bad)?;
    let report = inspect::inspect(&engine, &a.module).map_err(bad)?;
    if !report.accepted {
        return Err((
            1,
            format!(
                "{}: no role accepts it (multusctl plugin inspect says why)",
                a.module.display()
            ),
        ));
    }
    let cm_name = format!("wasm-plugin-{ty}");
    let source = match &a.image {
        Some(image) => Source {
            config_map: None,
            image: Some(image.clone()),
        },
        None => Source {
            config_map: Some(ConfigMapSource {
                name: cm_name.clone(),
                key: "module.wasm".into(),
            }),
            image: None,
        },
    };
    let spec = Spec {
        sha256: report.sha256.clone(),
        source,
        role: Some(report.world.to_string()),
        grants: grants(&a.grants).map_err(bad)?,
    };
    spec.settings().map_err(|e| bad(format!("--grant: {e}")))?;
    let kube = Kube::new(&a.kubeconfig, a.timeout).map_err(|e| bad(e.to_string()))?;
    // The bytes first: an object never names bytes that are not there.
    let whereto = match &a.image {
        Some(image) => {
            let registries = Registries::for_image(
                image,
                a.insecure_registry,
                a.registry_auth.as_deref(),
                "--registry-auth",
            )
            .map_err(|e| bad(format!("--image: {e}")))?
            .with_ca(a.registry_ca.as_deref(), "--registry-ca")
            .map_err(bad)?;
            let url = registries
                .push(image, bytes)
                .map_err(|e| (1, format!("--image: {e}")))?;
            format!("image {image} ({url})")
        }
        None => {
            let data = base64::engine::general_purpose::STANDARD.encode(&bytes);
            let cm = object(
                &configmap_resource(),
                Some(&a.namespace),
                &cm_name,
                json!({"binaryData": {"module.wasm": data}}),
            );
            upsert(&kube, &configmap_resource(), &a.namespace, cm).map_err(|e| (1, e))?;
            format!("ConfigMap {}/{cm_name}", a.namespace)
        }
    };
    let wp = object(&resource(), None, &ty, json!({"spec": spec}));
    upsert(&kube, &resource(), "", wp).map_err(|e| (1, e))?;
    Ok(format!(
        "pushed {ty}: sha256 {}, role {}, {whereto}",
        report.sha256, report.world
    ))
}

pub fn run(a: &PushArgs) -> i32 {
    match push(a) {
        Ok(line) => {
            println!("{line}");
            0
        }
        Err((code, e)) => {
            eprintln!("multusctl plugin push: {e}");
            code
        }
    }
}
