//! Input nested far deeper than any config (what a fuzzer or a hostile
//! writer of a NAD, an annotation or a cache file produces) is refused as
//! bad input by every parser, never a stack overflow.

use multus::config::multus::MultusConf;
use multus::config::NetworkConfig;

/// `depth` arrays, and a conf with a key `depth` objects deep.
fn deep(depth: usize) -> (String, String) {
    let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let objects = format!(
        "{{\"cniVersion\":\"1.0.0\",\"name\":\"n\",\"type\":\"bridge\",\"x\":{}1{}}}",
        "{\"a\":".repeat(depth),
        "}".repeat(depth)
    );
    (arrays, objects)
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    for depth in [200, 100_000] {
        let (arrays, objects) = deep(depth);
        for text in [&arrays, &objects] {
            assert!(MultusConf::parse(text.as_bytes()).is_err());
            assert!(NetworkConfig::from_bytes(text.as_bytes(), "deep").is_err());
            assert!(multus::k8s::selection::parse(text, "default").is_err());
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(multus::cache::path(dir.path(), "c"), text).unwrap();
            let Err(err) = multus::cache::read(dir.path(), "c", "eth0") else {
                panic!("a {} deep cache was read", text.len());
            };
            assert!(err.msg.contains("corrupt"), "{}", err.msg);
        }
    }
}
