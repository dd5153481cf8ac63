//! `multusctl plugin new`: an out-of-tree plugin crate that builds on its
//! first `cargo build`. The SDK and the WIT package this multusctl speaks
//! are written into the crate (`sdk/`), so it needs nothing but crates.io.

/// The world a new plugin is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum World {
    Ipam,
    Chained,
    AnnotationMapper,
}

const SDK_LIB: &str = include_str!("../../../plugins-wasm/sdk/src/lib.rs");
const SDK_CONF: &str = include_str!("../../../plugins-wasm/sdk/src/conf.rs");
const SDK_IP: &str = include_str!("../../../plugins-wasm/sdk/src/ip.rs");
const SDK_IFACE: &str = include_str!("../../../plugins-wasm/sdk/src/iface.rs");
const WIT_TYPES: &str = include_str!("../../../wit/types.wit");
const WIT_MAPPER: &str = include_str!("../../../wit/mapper.wit");
const WIT_ROUTING: &str = include_str!("../../../wit/routing.wit");
const WIT_CLUSTER: &str = include_str!("../../../wit/cluster.wit");
const WIT_LINKS: &str = include_str!("../../../wit/links.wit");

impl World {
    pub fn as_str(self) -> &'static str {
        match self {
            World::Ipam => "ipam",
            World::Chained => "chained",
            World::AnnotationMapper => "annotation-mapper",
        }
    }
}

/// Whether `name` can be a crate and a plugin type: lowercase letters,
/// digits and dashes, starting with a letter.
pub fn valid_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Every file of the new crate `name`: (path relative to its root, contents).
pub fn files(name: &str, world: World) -> Vec<(&'static str, String)> {
    let (lib, example, prev, how) = match world {
        World::Ipam => (
            include_str!("templates/ipam.rs.tmpl"),
            format!(
                r#"{{"cniVersion": "1.0.0", "name": "example", "type": "bridge", "ipam": {{"type": "{name}", "address": "10.10.0.5/24"}}}}"#
            ),
            None,
            "as the `ipam.type` of a main plugin, or in a conflist",
        ),
        World::Chained => (
            include_str!("templates/chained.rs.tmpl"),
            format!(
                r#"{{"cniVersion": "1.0.0", "name": "example", "type": "{name}", "mtu": 1400}}"#
            ),
            Some(
                r#"{"cniVersion": "1.0.0", "interfaces": [{"name": "net1", "sandbox": "/run/netns/example"}], "ips": [{"address": "10.10.0.5/24", "interface": 0}]}"#,
            ),
            "in a conflist, after an interface plugin",
        ),
        World::AnnotationMapper => (
            include_str!("templates/mapper.rs.tmpl"),
            r#"{"label": "example.com/extra-net", "network": "extra"}"#.to_string(),
            None,
            "listed in the multus conf's `annotationMappers`",
        ),
    };
    let module = format!(
        "target/wasm32-wasip2/release/{}.wasm",
        name.replace('-', "_")
    );
    let try_it = match world {
        World::Ipam => format!(
            "multusctl plugin run {module} --conf example.json --dry-run"
        ),
        World::Chained => format!(
            "multusctl plugin run {module} --conf example.json --prev-result example-prev.json --ifname net1 --dry-run"
        ),
        World::AnnotationMapper => format!("multusctl plugin inspect {module}"),
    };
    let mut out = vec![
        (
            "Cargo.toml",
            format!(
                r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
multus-plugin-sdk = {{ path = "sdk" }}
serde_json = "1"

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true
panic = "abort"

# A crate of its own, never a member of an enclosing workspace.
[workspace]
"#
            ),
        ),
        (
            ".cargo/config.toml",
            "[build]\ntarget = \"wasm32-wasip2\"\n".to_string(),
        ),
        ("src/lib.rs", lib.to_string()),
        ("example.json", format!("{example}\n")),
        (
            "README.md",
            format!(
                "# {name}\n\nA multus wasm plugin (`{}` world), run {how}.\n\n```sh\nrustup target add wasm32-wasip2\ncargo build --release\n{try_it}\ncp {module} /etc/cni/multus/plugins/{name}.wasm   # on each node\n```\n\n`sdk/` is the multus plugin SDK and `sdk/wit/` the WIT package this\nmultusctl speaks (`{}`); keep them with the crate.\n",
                world.as_str(),
                multus_host_functions::WIT_PACKAGE
            ),
        ),
        (
            "sdk/Cargo.toml",
            r#"[package]
name = "multus-plugin-sdk"
version = "0.1.0"
edition = "2021"
publish = false

[dependencies]
serde = { version = "1", features = ["derive"] }
serde_json = "1"
wit-bindgen = { version = "0.61", default-features = false, features = ["macros", "realloc"] }
"#
            .to_string(),
        ),
        // In the tree the WIT files sit two levels up; here, beside the SDK.
        ("sdk/src/lib.rs", SDK_LIB.replace("\"../../wit\"", "\"wit\"")),
        ("sdk/src/conf.rs", SDK_CONF.to_string()),
        ("sdk/src/ip.rs", SDK_IP.to_string()),
        ("sdk/src/iface.rs", SDK_IFACE.to_string()),
        ("sdk/wit/types.wit", WIT_TYPES.to_string()),
        ("sdk/wit/mapper.wit", WIT_MAPPER.to_string()),
        ("sdk/wit/routing.wit", WIT_ROUTING.to_string()),
        ("sdk/wit/cluster.wit", WIT_CLUSTER.to_string()),
        ("sdk/wit/links.wit", WIT_LINKS.to_string()),
    ];
    if let Some(p) = prev {
        out.push(("example-prev.json", format!("{p}\n")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["my-ipam", "a", "route2"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "My", "9lives", "a_b", "a/b", "../x"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn the_sdk_finds_its_wit_beside_it() {
        let f = files("x", World::Ipam);
        let lib = &f.iter().find(|(p, _)| *p == "sdk/src/lib.rs").unwrap().1;
        assert!(lib.contains("path: \"wit\"") && !lib.contains("../../wit"));
        let prev = files("x", World::Chained);
        assert!(prev.iter().any(|(p, _)| *p == "example-prev.json"));
    }
}
