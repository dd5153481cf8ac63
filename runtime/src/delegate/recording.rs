//! A recording plugin runner for unit tests: records every call, answers with
//! scripted outputs, changes nothing.

use std::cell::RefCell;
use std::collections::HashMap;

use super::{PluginCall, PluginError, PluginRunner};
use crate::cni::{CniError, Command};

#[derive(Debug, Clone)]
pub struct RecordedCall {
    pub plugin_type: String,
    pub command: Command,
    pub ifname: String,
    pub stdin: Vec<u8>,
}

#[derive(Default)]
pub struct Recording {
    calls: RefCell<Vec<RecordedCall>>,
    outputs: RefCell<HashMap<String, Vec<u8>>>,
    failures: RefCell<HashMap<String, (Option<Command>, CniError)>>,
}

impl Recording {
    pub fn respond(&self, plugin: &str, out: &str) {
        self.outputs
            .borrow_mut()
            .insert(plugin.into(), out.as_bytes().to_vec());
    }

    /// Every call of `plugin` fails with this CNI error.
    pub fn fail(&self, plugin: &str, code: u32, msg: &str) {
        let e = CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        };
        self.failures.borrow_mut().insert(plugin.into(), (None, e));
    }

    /// Only `command` calls of `plugin` fail.
    pub fn fail_on(&self, plugin: &str, command: Command, code: u32, msg: &str) {
        let e = CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        };
        self.failures
            .borrow_mut()
            .insert(plugin.into(), (Some(command), e));
    }

    pub fn calls(&self) -> Vec<RecordedCall> {
        self.calls.borrow().clone()
    }

    /// The calls as "COMMAND type", in order.
    pub fn sequence(&self) -> Vec<String> {
        self.calls
            .borrow()
            .iter()
            .map(|c| format!("{} {}", c.command, c.plugin_type))
            .collect()
    }
}

impl PluginRunner for Recording {
    fn run(&self, call: &PluginCall<'_>) -> Result<Vec<u8>, PluginError> {
        self.calls.borrow_mut().push(RecordedCall {
            plugin_type: call.plugin_type.to_string(),
            command: call.command,
            ifname: call.ifname.into(),
            stdin: call.stdin.to_vec(),
        });
        if let Some((only, e)) = self.failures.borrow().get(call.plugin_type.as_str()) {
            if only.is_none_or(|c| c == call.command) {
                return Err(PluginError::Cni(e.clone()));
            }
        }
        match self.outputs.borrow().get(call.plugin_type.as_str()) {
            Some(out) if call.command == Command::Add => Ok(out.clone()),
            _ => Ok(Vec::new()),
        }
    }
}
