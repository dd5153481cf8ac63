//! The documentation's relative links point at files that exist: every
//! Markdown file of the repository (the READMEs, `docs/`), each link
//! resolved from its own directory. And the scripts the docs name stand
//! alone: each builds what the binaries it runs need.

use std::path::{Path, PathBuf};

fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() {
            if !["target", ".git", "corpus", "regressions"].contains(&name.as_str()) {
                markdown_files(&p, out);
            }
        } else if name.ends_with(".md") {
            out.push(p);
        }
    }
}

/// The targets of `[text](target)` links that stay in the repository.
fn relative_links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = rest[..end].split_whitespace().next().unwrap_or_default();
        let external = target.contains("://") || target.starts_with("mailto:");
        if !external && !target.starts_with('#') && !target.is_empty() {
            out.push(target.split('#').next().unwrap_or_default().to_string());
        }
    }
    out
}

#[test]
fn every_relative_link_in_the_docs_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    markdown_files(root, &mut files);
    assert!(files.iter().any(|f| f.ends_with("README.md")), "{files:?}");
    let mut broken = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for link in relative_links(&text) {
            if !f.parent().unwrap().join(&link).exists() {
                broken.push(format!(
                    "{}: {link}",
                    f.strip_prefix(root).unwrap().display()
                ));
            }
        }
    }
    assert!(broken.is_empty(), "links to nothing: {broken:#?}");
}

#[test]
fn links_are_found_and_external_ones_skipped() {
    let md = "see [a](docs/a.md#x), [b](https://x.io/y), [c](#top), [d](../d.md \"t\")";
    assert_eq!(relative_links(md), ["docs/a.md", "../d.md"]);
}

/// `multus` compiles a module it has no artifact for by running the
/// `multusctl` beside it, so a script that builds `multus` and runs it
/// must build `multusctl` in the same profile (the soak did not: on a
/// fresh checkout every wasm call failed "cannot run multusctl").
#[test]
fn every_script_that_builds_multus_builds_multusctl() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    for e in std::fs::read_dir(root.join("scripts")).unwrap().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        let builds = |bin: &str, release: bool| {
            text.lines()
                .filter(|l| {
                    let words: Vec<&str> = l.split_whitespace().collect();
                    l.contains("cargo build") && words.windows(2).any(|w| w == ["--bin", bin])
                })
                .any(|l| l.contains("--release") == release || l.contains("${flags[@]}"))
        };
        for release in [false, true] {
            if builds("multus", release) {
                assert!(
                    builds("multusctl", release),
                    "{} builds multus ({}) but not multusctl",
                    e.path().display(),
                    if release { "release" } else { "debug" }
                );
            }
        }
    }
}
