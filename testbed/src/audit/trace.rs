//! Parses `strace -f -y` output (one `-o` file, every thread's lines
//! interleaved) into whole calls: `<unfinished ...>` halves are joined to
//! their `<... resumed>` halves, strings are unescaped to bytes, and the
//! `-y` decorations (`3</path>`, `AT_FDCWD</cwd>`) are kept as paths.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

/// One syscall of one thread.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The line number (1-based) where the call started: order in the trace.
    pub line: usize,
    pub pid: u32,
    pub name: String,
    /// The top-level arguments, as strace printed them.
    pub args: Vec<String>,
    pub ret: Ret,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Ret {
    /// A non-negative return, with the path of a returned fd (`-y`).
    Ok(i64, Option<PathBuf>),
    /// `-1 ENOENT (...)`: the errno's name.
    Err(String),
    /// `= ?`, or the call never returned (the thread was killed in it, or
    /// the trace ends there): it may have had its effect.
    Unknown,
}

impl Ret {
    /// The call succeeded or may have (judged as an effect).
    pub fn maybe_done(&self) -> bool {
        !matches!(self, Ret::Err(_))
    }
}

/// A file descriptor argument: its number (`AT_FDCWD` is -100) and the path
/// `-y` printed for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Fd {
    pub num: i64,
    pub path: Option<PathBuf>,
}

pub const AT_FDCWD: i64 = -100;

impl Call {
    /// Argument `i` as an unescaped string literal (`None`: not a string,
    /// e.g. `NULL`).
    pub fn str_arg(&self, i: usize) -> Option<Vec<u8>> {
        unquote(self.args.get(i)?)
    }

    pub fn path_arg(&self, i: usize) -> Option<PathBuf> {
        self.str_arg(i)
            .map(|b| PathBuf::from(OsString::from_vec(b)))
    }

    /// Argument `i` as a file descriptor.
    pub fn fd_arg(&self, i: usize) -> Option<Fd> {
        parse_fd(self.args.get(i)?)
    }

    /// Argument `i` as `|`-separated flag names (`O_RDONLY|O_CLOEXEC`).
    pub fn flags_arg(&self, i: usize) -> Vec<String> {
        self.args.get(i).map(|a| flag_names(a)).unwrap_or_default()
    }

    /// A field of a struct argument (`{flags=O_RDONLY, ...}`, `{sa_family=AF_UNIX, sun_path="/x"}`).
    pub fn field(&self, i: usize, key: &str) -> Option<String> {
        let a = self.args.get(i)?.trim();
        let inner = a.strip_prefix('{')?.strip_suffix('}')?;
        split_top(inner)
            .into_iter()
            .find_map(|f| f.strip_prefix(&format!("{key}=")).map(String::from))
    }
}

/// The names in a flags expression, ignoring numbers and `0`.
pub fn flag_names(s: &str) -> Vec<String> {
    s.split('|')
        .map(|f| f.trim().to_string())
        .filter(|f| f.starts_with(|c: char| c.is_ascii_alphabetic()))
        .collect()
}

/// `3</path>`, `AT_FDCWD</cwd>`, `3`, `AT_FDCWD`.
pub fn parse_fd(s: &str) -> Option<Fd> {
    let s = s.trim();
    let (head, path) = match s.find('<') {
        Some(i) if s.ends_with('>') => (&s[..i], Some(unescape(&s[i + 1..s.len() - 1]))),
        _ => (s, None),
    };
    let num = if head == "AT_FDCWD" {
        AT_FDCWD
    } else {
        head.parse().ok()?
    };
    Some(Fd {
        num,
        path: path.map(|b| PathBuf::from(OsString::from_vec(b))),
    })
}

/// A quoted strace string (`"a\"b\x41"`, maybe followed by `...` when cut
/// by `-s`) as bytes; `None` if `s` is not one.
pub fn unquote(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    let s = s.strip_suffix("...").unwrap_or(s);
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    Some(unescape(inner))
}

/// strace's escapes: `\\ \" \n \t \r \v \f \xHH` and octal `\ooo`.
pub fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' || i + 1 == b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        i += 1;
        match b[i] {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'v' => out.push(0x0b),
            b'f' => out.push(0x0c),
            b'x' => {
                let hex: String = b[i + 1..]
                    .iter()
                    .take(2)
                    .take_while(|c| c.is_ascii_hexdigit())
                    .map(|&c| c as char)
                    .collect();
                if hex.is_empty() {
                    out.push(b'x');
                } else {
                    out.push(u8::from_str_radix(&hex, 16).unwrap_or(0));
                    i += hex.len();
                }
            }
            b'0'..=b'7' => {
                let oct: String = b[i..]
                    .iter()
                    .take(3)
                    .take_while(|c| (b'0'..=b'7').contains(c))
                    .map(|&c| c as char)
                    .collect();
                out.push(u8::from_str_radix(&oct, 8).unwrap_or(0));
                i += oct.len() - 1;
            }
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// Splits `s` at its top-level commas: not inside a string, a `[...]`,
/// `{...}`, `(...)`, a `-y` decoration `<...>` or a `/* ... */` comment.
pub fn split_top(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0i32;
    let mut chars = s.chars().peekable();
    let mut prev: char = ' ';
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                cur.push(c);
                while let Some(d) = chars.next() {
                    cur.push(d);
                    if d == '\\' {
                        if let Some(e) = chars.next() {
                            cur.push(e);
                        }
                    } else if d == '"' {
                        break;
                    }
                }
                prev = '"';
                continue;
            }
            '<' if prev.is_ascii_alphanumeric() => {
                // A decoration: `3</path>`, `AT_FDCWD</cwd>`, `socket:[1]`.
                cur.push(c);
                while let Some(d) = chars.next() {
                    cur.push(d);
                    if d == '\\' {
                        if let Some(e) = chars.next() {
                            cur.push(e);
                        }
                    } else if d == '>' {
                        break;
                    }
                }
                prev = '>';
                continue;
            }
            '/' if chars.peek() == Some(&'*') => {
                cur.push(c);
                let mut last = ' ';
                for d in chars.by_ref() {
                    cur.push(d);
                    if last == '*' && d == '/' {
                        break;
                    }
                    last = d;
                }
                prev = '/';
                continue;
            }
            '[' | '{' | '(' => depth += 1,
            ']' | '}' | ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(cur.trim().to_string());
                cur.clear();
                prev = ',';
                continue;
            }
            _ => {}
        }
        cur.push(c);
        prev = c;
    }
    // (A call cut after a comma leaves an empty last argument: dropped.)
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// The index of the `)` closing the argument list that starts at `open`
/// (the `(`), skipping strings, decorations and comments; `None` if the
/// text ends first.
fn closing_paren(s: &str, open: usize) -> Option<usize> {
    let b = s.as_bytes();
    let mut depth = 0i32;
    let mut i = open;
    let mut prev = b' ';
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'<' if prev.is_ascii_alphanumeric() => {
                i += 1;
                while i < b.len() && b[i] != b'>' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth -= 1;
                if depth == 0 && c == b')' {
                    return Some(i);
                }
            }
            _ => {}
        }
        prev = c;
        i += 1;
    }
    None
}

/// `name(args) = ret` (the pid already stripped) as a call.
fn parse_call(line: usize, pid: u32, text: &str) -> Option<Call> {
    let open = text.find('(')?;
    let name = text[..open].trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    let (args, ret) = match closing_paren(text, open) {
        Some(close) => (
            &text[open + 1..close],
            parse_ret(text[close + 1..].trim_start()),
        ),
        // Cut off (the thread never came back from the call).
        None => (&text[open + 1..], Ret::Unknown),
    };
    Some(Call {
        line,
        pid,
        name: name.to_string(),
        args: split_top(args),
        ret,
    })
}

/// ` = 3</p>`, `= -1 ENOENT (No such file)`, `= ?`, `= 0x7f00 ...`.
fn parse_ret(s: &str) -> Ret {
    let Some(v) = s.strip_prefix('=') else {
        return Ret::Unknown;
    };
    let v = v.trim();
    if let Some(rest) = v.strip_prefix("-1 ") {
        let errno = rest.split_whitespace().next().unwrap_or_default();
        if errno.starts_with('E') {
            return Ret::Err(errno.to_string());
        }
    }
    let end = v
        .find(|c: char| c == '<' || c.is_whitespace())
        .unwrap_or(v.len());
    let num = &v[..end];
    let n = if let Some(h) = num.strip_prefix("0x") {
        i64::from_str_radix(h, 16).ok()
    } else {
        num.parse::<i64>().ok()
    };
    let Some(n) = n else {
        return Ret::Unknown;
    };
    let path = v[end..]
        .strip_prefix('<')
        .and_then(|p| p.rfind('>').map(|e| &p[..e]))
        .map(|p| PathBuf::from(OsString::from_vec(unescape(p))));
    if n < 0 {
        return Ret::Err(format!("{n}"));
    }
    Ret::Ok(n, path)
}

/// Every call of a whole trace, in the order the calls started.
pub fn parse(text: &str) -> Vec<Call> {
    let mut calls = Vec::new();
    // pid -> (line, text before "<unfinished ...>")
    let mut pending: HashMap<u32, (usize, String)> = HashMap::new();
    for (n, raw) in text.lines().enumerate() {
        let line = n + 1;
        let raw = raw.trim_end();
        let Some((pid, rest)) = raw.split_once(char::is_whitespace) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        let rest = rest.trim_start();
        if rest.starts_with("---") || rest.starts_with("+++") {
            continue;
        }
        if let Some(resumed) = rest.strip_prefix("<... ") {
            // `<... openat resumed>) = 3</p>`: join with the first half.
            let Some(gt) = resumed.find(" resumed>") else {
                continue;
            };
            let mut tail = resumed[gt + " resumed>".len()..].to_string();
            // Killed in the call: `<... read resumed> <unfinished ...>) = ?`.
            if let Some(rest) = tail.trim_start().strip_prefix("<unfinished ...>") {
                if !rest.is_empty() {
                    tail = rest.to_string();
                }
            }
            let Some((start, head)) = pending.remove(&pid) else {
                continue;
            };
            let joined = format!("{}{tail}", head.trim_end());
            if let Some(head) = joined.strip_suffix("<unfinished ...>") {
                // Resumed and cut again (e.g. `<... read resumed> <unfinished ...>)`).
                pending.insert(pid, (start, head.to_string()));
                continue;
            }
            calls.extend(parse_call(start, pid, &joined));
            continue;
        }
        if let Some(head) = rest.strip_suffix("<unfinished ...>") {
            pending.insert(pid, (line, head.to_string()));
            continue;
        }
        calls.extend(parse_call(line, pid, rest));
    }
    // Calls that never returned (their thread was killed, or is still in them).
    for (pid, (line, head)) in pending {
        if let Some(mut c) = parse_call(line, pid, &head) {
            c.ret = Ret::Unknown;
            calls.push(c);
        }
    }
    calls.sort_by_key(|c| c.line);
    calls
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Call {
        let calls = parse(line);
        assert_eq!(calls.len(), 1, "{line}: {calls:?}");
        calls.into_iter().next().unwrap()
    }

    #[test]
    fn openat_with_decorations() {
        let c = one(
            r#"13099 openat(AT_FDCWD</tmp>, "/etc/hostname", O_RDONLY|O_CLOEXEC) = 3</etc/hostname>"#,
        );
        assert_eq!(c.pid, 13099);
        assert_eq!(c.name, "openat");
        assert_eq!(
            c.fd_arg(0),
            Some(Fd {
                num: AT_FDCWD,
                path: Some("/tmp".into())
            })
        );
        assert_eq!(c.path_arg(1), Some(PathBuf::from("/etc/hostname")));
        assert_eq!(c.flags_arg(2), ["O_RDONLY", "O_CLOEXEC"]);
        assert_eq!(c.ret, Ret::Ok(3, Some("/etc/hostname".into())));
    }

    #[test]
    fn errors_and_alignment_spaces() {
        let c = one(r#"13100 mkdir("/tmp", 0777)               = -1 EEXIST (File exists)"#);
        assert_eq!(c.path_arg(0), Some(PathBuf::from("/tmp")));
        assert_eq!(c.ret, Ret::Err("EEXIST".into()));
        assert!(!c.ret.maybe_done());
    }

    #[test]
    fn unfinished_and_resumed_are_joined() {
        let t = "\
13105 execve(\"/usr/bin/sleep\", [\"sleep\", \"0.3\"], 0x558c89565388 /* 35 vars */ <unfinished ...>
13104 openat(AT_FDCWD</tmp>, \"/dev/null\", O_RDONLY <unfinished ...>
13105 <... execve resumed>)             = 0
13104 <... openat resumed>)             = 0</dev/null>
";
        let calls = parse(t);
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].name, "execve");
        assert_eq!(calls[0].path_arg(0), Some(PathBuf::from("/usr/bin/sleep")));
        assert_eq!(calls[0].ret, Ret::Ok(0, None));
        assert_eq!(calls[1].flags_arg(2), ["O_RDONLY"]);
        assert_eq!(calls[1].ret, Ret::Ok(0, Some("/dev/null".into())));
    }

    #[test]
    fn resumed_with_more_arguments() {
        let t = "\
7 read(3</dev/zero>,  <unfinished ...>
8 getpid() = 8
7 <... read resumed>\"\\0\\0\\0\"..., 65536) = 65536
";
        let calls = parse(t);
        let r = calls.iter().find(|c| c.name == "read").unwrap();
        assert_eq!(r.fd_arg(0).unwrap().path, Some("/dev/zero".into()));
        assert_eq!(r.args.len(), 3);
        assert_eq!(r.ret, Ret::Ok(65536, None));
    }

    /// A FIFO open that blocks forever: the trace ends mid-call, or strace
    /// prints `= ?` when the thread is killed in it.
    #[test]
    fn a_call_that_never_returns() {
        let calls = parse("9 openat(AT_FDCWD</>, \"/x/fifo\", O_RDONLY|O_CLOEXEC <unfinished ...>\n9 +++ killed by SIGKILL +++\n");
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].path_arg(1), Some(PathBuf::from("/x/fifo")));
        assert_eq!(calls[0].ret, Ret::Unknown);
        assert!(calls[0].ret.maybe_done());
    }

    #[test]
    fn killed_inside_a_call() {
        let t = "\
6062  read(18</x/huge>,  <unfinished ...>
6065  +++ killed by SIGKILL +++
6062  <... read resumed> <unfinished ...>) = ?
";
        let calls = parse(t);
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].args, ["18</x/huge>"]);
        assert_eq!(calls[0].fd_arg(0).unwrap().path, Some("/x/huge".into()));
        assert_eq!(calls[0].ret, Ret::Unknown);
    }

    #[test]
    fn a_resumed_half_alone_is_dropped() {
        assert!(parse("9 <... openat resumed>) = ?\n").is_empty());
        let calls = parse("9 openat(AT_FDCWD</>, \"/f\", O_RDONLY <unfinished ...>\n9 <... openat resumed>) = ?\n");
        assert_eq!(calls[0].ret, Ret::Unknown);
    }

    #[test]
    fn escapes_in_strings_and_decorations() {
        let c = one(r#"5 mkdirat(AT_FDCWD</t\x3ey>, "\321\202\320\270\x70 \"q\"\\", 0700) = 0"#);
        assert_eq!(c.str_arg(1).unwrap(), "тиp \"q\"\\".as_bytes());
        assert_eq!(c.fd_arg(0).unwrap().path, Some("/t>y".into()));
        let c = one(
            r#"5 openat(AT_FDCWD</>, "sh\0x", O_RDONLY) = -1 ENOENT (No such file or directory)"#,
        );
        assert_eq!(c.str_arg(1).unwrap(), b"sh\0x");
    }

    #[test]
    fn comments_arrays_and_structs() {
        let c = one(r#"11 execve("/bin/sh", ["sh", "-c", "a, b"...], 0x7ffe /* 35 vars */) = 0"#);
        assert_eq!(c.args.len(), 3);
        assert_eq!(c.path_arg(0), Some(PathBuf::from("/bin/sh")));
        let c = one(
            r#"12 bind(5<socket:[991]>, {sa_family=AF_UNIX, sun_path="/run/m/multus.sock"}, 110) = 0"#,
        );
        assert_eq!(c.field(1, "sa_family").as_deref(), Some("AF_UNIX"));
        assert_eq!(
            c.field(1, "sun_path").and_then(|s| unquote(&s)),
            Some(b"/run/m/multus.sock".to_vec())
        );
        let c = one(
            r#"13 openat2(AT_FDCWD</>, "/etc/x", {flags=O_RDWR|O_CREAT, mode=0600, resolve=RESOLVE_BENEATH}, 24) = 4</etc/x>"#,
        );
        assert_eq!(
            flag_names(&c.field(2, "flags").unwrap()),
            ["O_RDWR", "O_CREAT"]
        );
    }

    #[test]
    fn clone_returns_the_child() {
        let c = one("20 clone3({flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM|CLONE_SETTLS|CLONE_PARENT_SETTID|CLONE_CHILD_CLEARTID, child_tid=0x7f, parent_tid=0x7f, exit_signal=0, stack=0x7f, stack_size=0x1ff000, tls=0x7f} => {parent_tid=[21]}, 88) = 21");
        assert_eq!(c.ret, Ret::Ok(21, None));
        assert!(c.field(0, "flags").unwrap().contains("CLONE_THREAD"));
    }

    #[test]
    fn signals_exits_and_noise_are_skipped() {
        let t = "\
1 --- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED, si_pid=2} ---
1 +++ exited with 0 +++
strace: Process 3 attached
1 exit_group(0) = ?
";
        let calls = parse(t);
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].name, "exit_group");
        assert_eq!(calls[0].ret, Ret::Unknown);
    }

    #[test]
    fn hex_returns_and_deleted_paths() {
        let c = one("3 mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f12a000");
        assert_eq!(c.ret, Ret::Ok(0x7f12a000, None));
        let c = one("3 read(4</tmp/a (deleted)>, \"\", 10) = 0");
        assert_eq!(c.fd_arg(0).unwrap().path, Some("/tmp/a (deleted)".into()));
    }
}
