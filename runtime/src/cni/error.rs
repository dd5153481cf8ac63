//! The CNI error object (spec section "Error") and its well-known codes.

use serde::Serialize;

/// Error codes of the CNI spec 1.1.0, plus the Go-only ones that plugins in the
/// wild return and that multus passes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Code {
    IncompatibleVersion = 1,
    UnsupportedField = 2,
    UnknownContainer = 3,
    InvalidEnv = 4,
    Io = 5,
    Decode = 6,
    InvalidConfig = 7,
    TryAgainLater = 11,
    NotAvailable = 50,
    NotAvailableLimited = 51,
    Internal = 999,
}

/// A CNI error as printed on stdout. `code` stays a plain number because
/// delegates may return any plugin-specific code (100+), which we pass through.
/// Printed (on stdout or in a log line), its message and its details are
/// each at most [`PRINTED_BYTES`]: a config value or a native delegate's
/// output may be quoted in them, and the kubelet makes the error an event
/// and retries the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{}{}", head(msg), if details.is_empty() { String::new() } else { format!(": {}", head(details)) })]
pub struct CniError {
    pub code: u32,
    #[serde(serialize_with = "printed")]
    pub msg: String,
    #[serde(skip_serializing_if = "String::is_empty", serialize_with = "printed")]
    pub details: String,
}

/// The most of an error's message, and of its details, that is printed.
pub const PRINTED_BYTES: usize = 4096;

fn head(s: &str) -> &str {
    multus_host_functions::text::head(s, PRINTED_BYTES)
}

fn printed<S: serde::Serializer>(s: &str, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(head(s))
}

impl CniError {
    pub fn new(code: Code, msg: impl Into<String>) -> Self {
        Self {
            code: code as u32,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// Prefixes the message with where it happened, keeping the code.
    pub fn context(mut self, ctx: impl std::fmt::Display) -> Self {
        self.msg = format!("{ctx}: {}", self.msg);
        self
    }

    /// The JSON document printed on stdout.
    pub fn to_json(&self, cni_version: &str) -> String {
        #[derive(Serialize)]
        struct Doc<'a> {
            #[serde(rename = "cniVersion")]
            cni_version: &'a str,
            #[serde(flatten)]
            err: &'a CniError,
        }
        serde_json::to_string(&Doc {
            cni_version,
            err: self,
        })
        .expect("error document serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_has_spec_shape() {
        let e = CniError::new(
            Code::InvalidEnv,
            "required env variables [CNI_NETNS] missing",
        );
        let v: serde_json::Value = serde_json::from_str(&e.to_json("1.1.0")).unwrap();
        assert_eq!(v["cniVersion"], "1.1.0");
        assert_eq!(v["code"], 4);
        assert_eq!(v["msg"], "required env variables [CNI_NETNS] missing");
        assert!(v.get("details").is_none());
        let d = e.with_details("x");
        let v: serde_json::Value = serde_json::from_str(&d.to_json("0.4.0")).unwrap();
        assert_eq!(v["details"], "x");
    }

    /// However long the message a config value made, the printed error and
    /// its log line are bounded.
    #[test]
    fn printed_errors_are_bounded() {
        let e =
            CniError::new(Code::InvalidConfig, "é".repeat(10_000)).with_details("d".repeat(9_000));
        let v: serde_json::Value = serde_json::from_str(&e.to_json("1.1.0")).unwrap();
        assert_eq!(v["msg"].as_str().unwrap().len(), PRINTED_BYTES);
        assert_eq!(v["details"].as_str().unwrap().len(), PRINTED_BYTES);
        assert_eq!(e.to_string().len(), 2 * PRINTED_BYTES + 2);
        assert_eq!(e.msg.len(), 20_000, "kept whole for the caller");
    }

    #[test]
    fn context_keeps_code() {
        let e = CniError::new(Code::TryAgainLater, "busy").context("delegate \"a\"");
        assert_eq!(e.code, 11);
        assert_eq!(e.msg, "delegate \"a\": busy");
    }
}
