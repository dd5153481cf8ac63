//! Where a traced path lands: resolved against the file system as it is
//! when the audit runs (after the traced process is gone, before the case's
//! fixtures are removed), symlink by symlink, tolerating names that no
//! longer (or never did) exist.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// `path` made absolute against `base` (the call's directory: its `dirfd`
/// or the thread's cwd) when relative.
pub fn absolute(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// `/proc/...` names another process's view (`/proc/self`, `/proc/<pid>`,
/// `/proc/sys/net` in its netns): resolving them here would name the
/// auditor's, so they are only cleaned lexically.
pub fn is_proc(p: &Path) -> bool {
    p.starts_with("/proc")
}

/// The lexical clean of an absolute path: `.` dropped, `..` pops.
pub fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
        }
    }
    out
}

/// The file `path` (absolute) names, as the kernel resolves it: every
/// symlink followed, the last component only when `follow_last`. Names
/// past a missing directory are appended as they are.
pub fn resolve(path: &Path, follow_last: bool) -> PathBuf {
    if is_proc(path) {
        return lexical(path);
    }
    // The components still to walk, last first.
    let mut todo: Vec<OsString> = Vec::new();
    push_components(&mut todo, path);
    let mut cur = PathBuf::from("/");
    let mut links = 0;
    while let Some(c) = todo.pop() {
        match c.to_str() {
            Some(".") => continue,
            Some("..") => {
                cur.pop();
                continue;
            }
            _ => {}
        }
        let next = cur.join(&c);
        let last = todo.is_empty();
        if last && !follow_last {
            cur = next;
            continue;
        }
        match std::fs::symlink_metadata(&next) {
            Ok(m) if m.file_type().is_symlink() && links < 40 => {
                links += 1;
                let Ok(target) = std::fs::read_link(&next) else {
                    cur = next;
                    continue;
                };
                if target.is_absolute() {
                    cur = PathBuf::from("/");
                }
                push_components(&mut todo, &target);
            }
            _ => cur = next,
        }
    }
    cur
}

/// Pushes `p`'s components onto `todo` so that the first is popped first.
fn push_components(todo: &mut Vec<OsString>, p: &Path) {
    let parts: Vec<OsString> = p
        .components()
        .filter_map(|c| match c {
            Component::RootDir | Component::Prefix(_) => None,
            Component::CurDir => Some(".".into()),
            Component::ParentDir => Some("..".into()),
            Component::Normal(n) => Some(n.to_os_string()),
        })
        .collect();
    todo.extend(parts.into_iter().rev());
}

/// `p` is `root` or beneath it.
pub fn within(p: &Path, root: &Path) -> bool {
    p.starts_with(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_clean() {
        assert_eq!(
            lexical(Path::new("/usr/lib/cni/../../../../bin/sh")),
            PathBuf::from("/bin/sh")
        );
        assert_eq!(lexical(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
    }

    #[test]
    fn resolves_symlinks_in_the_middle_and_at_the_end() {
        let d = tempfile::tempdir().unwrap();
        let d = d.path().canonicalize().unwrap();
        std::fs::create_dir_all(d.join("real/sub")).unwrap();
        std::fs::create_dir_all(d.join("other")).unwrap();
        std::os::unix::fs::symlink(d.join("real"), d.join("link")).unwrap();
        std::os::unix::fs::symlink("../other", d.join("real/up")).unwrap();
        // A middle link, then `..` from where it points (the kernel's way).
        assert_eq!(resolve(&d.join("link/sub/../x"), true), d.join("real/x"));
        // A relative link at the end, followed or not.
        assert_eq!(resolve(&d.join("link/up"), true), d.join("other"));
        assert_eq!(resolve(&d.join("link/up"), false), d.join("real/up"));
        // Past a missing directory.
        assert_eq!(
            resolve(&d.join("link/none/a/../b"), true),
            d.join("real/none/b")
        );
        // /proc is lexical only.
        assert_eq!(
            resolve(Path::new("/proc/self/fd/../ns/net"), true),
            PathBuf::from("/proc/self/ns/net")
        );
    }

    #[test]
    fn dot_dot_above_root_stays_at_root() {
        assert_eq!(
            resolve(Path::new("/../../tmp/x/evil"), false),
            PathBuf::from("/tmp/x/evil")
        );
    }
}
