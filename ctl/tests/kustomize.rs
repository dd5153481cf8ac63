//! Every kustomization in `deploy/` builds as `kubectl apply -k` builds it
//! (issue 20: `deploy/thick/` named `../crd.yaml`, which kustomize refuses,
//! so thick mode could not be installed at all): under kustomize's load
//! rules by the testbed's builder, and with the real kustomize inside
//! Debian's kubectl (`scripts/deps` installs it).

use std::process::Command;

use multus_testbed::manifests::{build, kustomizations, yaml_documents};

#[test]
fn every_kustomization_builds_under_kustomizes_load_rules() {
    let all = kustomizations();
    assert!(all.len() >= 4, "{all:?}");
    for k in &all {
        let docs = build(k).unwrap_or_else(|e| panic!("{}: {e}", k.display()));
        assert!(!docs.is_empty(), "{}", k.display());
    }
}

#[test]
fn a_file_outside_the_kustomization_is_refused() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("crd.yaml"), "kind: X\n").unwrap();
    let sub = d.path().join("thick");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(
        sub.join("kustomization.yaml"),
        "resources:\n  - ../crd.yaml\n",
    )
    .unwrap();
    let e = build(&sub).unwrap_err();
    assert!(e.contains("is not in or below"), "{e}");
    // The same file as a folder with its own kustomization is allowed.
    let base = d.path().join("crd");
    std::fs::create_dir(&base).unwrap();
    std::fs::rename(d.path().join("crd.yaml"), base.join("crd.yaml")).unwrap();
    std::fs::write(
        base.join("kustomization.yaml"),
        "resources:\n  - crd.yaml\n",
    )
    .unwrap();
    std::fs::write(sub.join("kustomization.yaml"), "resources:\n  - ../crd\n").unwrap();
    assert_eq!(build(&sub).unwrap().len(), 1);
}

/// The real kustomize agrees: `kubectl kustomize` of each folder prints
/// the same kinds and names.
#[test]
fn kubectl_kustomize_builds_each_one() {
    let kubectl = ["/usr/bin/kubectl", "/usr/local/bin/kubectl"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("kubectl (Debian's kubernetes-client, installed by scripts/deps)");
    for k in kustomizations() {
        let out = Command::new(kubectl)
            .arg("kustomize")
            .arg(&k)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl kustomize {}: {}",
            k.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let mut real: Vec<String> = yaml_documents(&text)
            .unwrap()
            .into_iter()
            .map(|v| format!("{} {}", v["kind"], v["metadata"]["name"]))
            .collect();
        let mut ours: Vec<String> = build(&k)
            .unwrap()
            .into_iter()
            .map(|(_, v)| format!("{} {}", v["kind"], v["metadata"]["name"]))
            .collect();
        real.sort();
        ours.sort();
        assert_eq!(real, ours, "{}", k.display());
    }
}
