//! `runtimeConfig` for one plugin: the capability args the runtime supplies,
//! limited to the capabilities the plugin declares `true` (libcni's rule).

use serde_json::{Map, Value};

pub fn filter(plugin: &Map<String, Value>, args: &Map<String, Value>) -> Map<String, Value> {
    let Some(Value::Object(caps)) = plugin.get("capabilities") else {
        return Map::new();
    };
    args.iter()
        .filter(|(k, _)| caps.get(k.as_str()).and_then(Value::as_bool) == Some(true))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn only_declared_true_capabilities_pass() {
        let plugin =
            obj(json!({"type":"portmap","capabilities":{"portMappings":true,"bandwidth":false}}));
        let args =
            obj(json!({"portMappings":[{"hostPort":80}],"bandwidth":{"ingressRate":1},"mac":"x"}));
        let rc = filter(&plugin, &args);
        assert_eq!(Value::Object(rc), json!({"portMappings":[{"hostPort":80}]}));
    }

    #[test]
    fn no_capabilities_no_runtime_config() {
        let plugin = obj(json!({"type":"bridge"}));
        let args = obj(json!({"mac":"x"}));
        assert!(filter(&plugin, &args).is_empty());
        let plugin = obj(json!({"type":"bridge","capabilities":"mac"}));
        assert!(filter(&plugin, &args).is_empty());
    }
}
