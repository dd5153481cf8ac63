//! What a `.wasm` plugin is, before anyone runs it: its world, the WIT
//! package and version it was built against, its imports and exports, and
//! whether multus would accept it in each role (the same import audit the
//! runtime applies at load).

use std::path::Path;

use multus::delegate::wasm::artifact::hex;
use multus::delegate::wasm::audit::{refused_names, Role};
use serde::Serialize;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

const PACKAGE: &str = "multus:plugin";

/// One role's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub role: &'static str,
    pub accepted: bool,
    /// Why not: the imports the role does not offer, or the missing export.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub file: String,
    pub size: u64,
    pub sha256: String,
    /// `ipam`, `chained`, `annotation-mapper`, or `none` (exports no
    /// multus interface).
    pub world: &'static str,
    /// `multus:plugin@<version>` as its imports and exports name it.
    pub package: Option<String>,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    pub roles: Vec<Verdict>,
    /// Accepted in at least one role.
    pub accepted: bool,
}

/// The version in `multus:plugin/<iface>@<version>`.
fn package_version(name: &str) -> Option<&str> {
    name.strip_prefix(PACKAGE)?
        .strip_prefix('/')?
        .split_once('@')
        .map(|(_, v)| v)
}

fn exports_iface(exports: &[String], iface: &str) -> bool {
    exports.iter().any(|e| {
        e.strip_prefix(PACKAGE)
            .and_then(|r| r.strip_prefix('/'))
            .is_some_and(|r| r.split('@').next() == Some(iface))
    })
}

/// The world, package and per-role verdicts from import and export names.
pub fn describe(
    imports: &[String],
    exports: &[String],
) -> (&'static str, Option<String>, Vec<Verdict>) {
    let plugin = exports_iface(exports, "plugin");
    let mapper = exports_iface(exports, "mapper");
    let verdict = |role: Role, name: &'static str, exports_it: bool, export: &str| {
        let mut refused = refused_names(role, imports.iter().map(String::as_str));
        if !exports_it {
            refused.push(format!("no export of {PACKAGE}/{export}"));
        }
        Verdict {
            role: name,
            accepted: refused.is_empty(),
            refused,
        }
    };
    let roles = vec![
        verdict(Role::Ipam, "ipam", plugin, "plugin"),
        verdict(Role::Chained, "chained", plugin, "plugin"),
        verdict(Role::Mapper, "annotation-mapper", mapper, "mapper"),
    ];
    let cluster = imports
        .iter()
        .any(|i| i.starts_with(&format!("{PACKAGE}/cluster@")));
    let links = imports
        .iter()
        .any(|i| i.starts_with(&format!("{PACKAGE}/links@")));
    let world = match (mapper, plugin, roles[0].accepted) {
        (true, _, _) => "annotation-mapper",
        (false, true, true) if cluster => "cluster-ipam",
        (false, true, true) => "ipam",
        (false, true, false) if links => "interface-plugin",
        (false, true, false) => "chained",
        (false, false, _) => "none",
    };
    let package = exports
        .iter()
        .chain(imports)
        .find_map(|n| package_version(n))
        .map(|v| format!("{PACKAGE}@{v}"));
    (world, package, roles)
}

/// Reads and validates `path` (compiling it, as the runtime would).
pub fn inspect(engine: &Engine, path: &Path) -> Result<Report, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let component = Component::new(engine, &bytes)
        .map_err(|e| format!("{} is not a valid component: {e}", path.display()))?;
    Ok(report(
        engine,
        path,
        bytes.len() as u64,
        hex(&Sha256::digest(&bytes)),
        &component,
    ))
}

/// The report of `path`, already compiled as `component`.
pub fn report(
    engine: &Engine,
    path: &Path,
    size: u64,
    sha256: String,
    component: &Component,
) -> Report {
    let ty = component.component_type();
    let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    let (world, package, roles) = describe(&imports, &exports);
    Report {
        file: path.display().to_string(),
        size,
        sha256,
        world,
        package,
        accepted: roles.iter().any(|r| r.accepted),
        imports,
        exports,
        roles,
    }
}

impl Report {
    /// The report for a terminal.
    pub fn text(&self) -> String {
        let list = |v: &[String]| {
            if v.is_empty() {
                "-".into()
            } else {
                v.join("\n          ")
            }
        };
        let mut out = format!(
            "file      {}\nsize      {} bytes\nsha256    {}\npackage   {}\nworld     {}\nexports   {}\nimports   {}\n",
            self.file,
            self.size,
            self.sha256,
            self.package.as_deref().unwrap_or("-"),
            self.world,
            list(&self.exports),
            list(&self.imports),
        );
        for r in &self.roles {
            if r.accepted {
                out.push_str(&format!("role      {}: accepted\n", r.role));
            } else {
                out.push_str(&format!(
                    "role      {}: refused ({})\n",
                    r.role,
                    r.refused.join(", ")
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn worlds_from_imports_and_exports() {
        let wasi = "wasi:cli/stdout@0.2.6";
        let (w, p, roles) = describe(
            &names(&[
                "multus:plugin/types@0.1.0",
                "multus:plugin/store@0.1.0",
                wasi,
            ]),
            &names(&["multus:plugin/plugin@0.1.0"]),
        );
        assert_eq!((w, p.as_deref()), ("ipam", Some("multus:plugin@0.1.0")));
        assert!(roles[0].accepted && roles[1].accepted && !roles[2].accepted);
        assert_eq!(
            roles[2].refused,
            [
                "multus:plugin/store@0.1.0",
                "no export of multus:plugin/mapper"
            ]
        );

        let (w, _, roles) = describe(
            &names(&["multus:plugin/netlink@0.1.0"]),
            &names(&["multus:plugin/plugin@0.1.0"]),
        );
        assert_eq!(w, "chained");
        assert_eq!(roles[0].refused, ["multus:plugin/netlink@0.1.0"]);
        assert!(roles[1].accepted);

        let (w, _, _) = describe(&names(&[]), &names(&["multus:plugin/mapper@0.1.0"]));
        assert_eq!(w, "annotation-mapper");

        let (w, p, roles) = describe(
            &names(&["wasi:filesystem/types@0.2.6"]),
            &names(&["multus:plugin/plugin@0.1.0"]),
        );
        assert_eq!((w, p.as_deref()), ("chained", Some("multus:plugin@0.1.0")));
        assert!(roles.iter().all(|r| !r.accepted));
        assert!(roles[1]
            .refused
            .contains(&"wasi:filesystem/types@0.2.6".to_string()));

        let (w, p, _) = describe(&names(&[wasi]), &names(&["wasi:cli/run@0.2.6"]));
        assert_eq!((w, p), ("none", None));
    }
}
