//! A running instance of a service, and how it is written in a store.
//!
//! The layout is a public contract, so that services written in other
//! languages can register beside drpc ones (docs/REGISTRY.md):
//!
//! ```text
//! key:   {root}/{service}/{id}          root is "/drpc/services" by default
//! value: {"id": "...", "addrs": ["tcp://10.0.0.5:9090"], "version": "1.4.2",
//!         "weight": 100, "zone": "eu-1", "meta": {"any": "string"}}
//! ```

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The weight of an instance that gives none: weights are relative, so
/// instances that all leave it are picked alike.
pub const DEFAULT_WEIGHT: u32 = 100;

/// One running instance of a service.
///
/// ```
/// use drpc_cluster::Instance;
///
/// let me = Instance::new("math", "math-1", ["tcp://10.0.0.5:9090"])
///     .version("1.4.2")
///     .zone("eu-1")
///     .weight(200);
/// assert_eq!(me.addrs, ["tcp://10.0.0.5:9090"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// The service's name, as callers ask for it: `math`.
    #[serde(skip)]
    pub service: String,
    /// Unique among the service's instances: a host and port, a pod name.
    pub id: String,
    /// Where to dial it, best first: `tcp://10.0.0.5:9090`, `quic://...`.
    pub addrs: Vec<String>,
    /// The version it runs, if it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Its share of the calls against the other instances' weights.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Where it runs, for selectors that prefer their own zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Anything else, as strings.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
}

fn default_weight() -> u32 {
    DEFAULT_WEIGHT
}

impl Instance {
    /// Instance `id` of `service`, reachable at `addrs`.
    pub fn new<A: Into<String>>(
        service: impl Into<String>,
        id: impl Into<String>,
        addrs: impl IntoIterator<Item = A>,
    ) -> Self {
        Self {
            service: service.into(),
            id: id.into(),
            addrs: addrs.into_iter().map(Into::into).collect(),
            version: None,
            weight: DEFAULT_WEIGHT,
            zone: None,
            meta: BTreeMap::new(),
        }
    }

    /// With `version`.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// With `weight` (relative to the others'; 0 is never picked by a
    /// weighted selector).
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// In `zone`.
    pub fn zone(mut self, zone: impl Into<String>) -> Self {
        self.zone = Some(zone.into());
        self
    }

    /// With the meta pair `key`, `value`.
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.meta.insert(key.into(), value.into());
        self
    }

    /// The stored value: JSON without the service (the key holds it).
    pub fn to_value(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an instance always serializes")
    }

    /// An instance of `service` from a stored value.
    ///
    /// Errors: the value is not an instance's JSON.
    pub fn from_value(service: &str, value: &[u8]) -> Result<Self, serde_json::Error> {
        let mut me: Self = serde_json::from_slice(value)?;
        me.service = service.to_string();
        Ok(me)
    }
}

/// Where instances live in a key-value store: `{root}/{service}/{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLayout {
    root: String,
}

/// The default root of the key layout.
pub const DEFAULT_ROOT: &str = "/drpc/services";

impl Default for KeyLayout {
    fn default() -> Self {
        Self::new(DEFAULT_ROOT)
    }
}

impl KeyLayout {
    /// Keys under `root` (no trailing `/`).
    pub fn new(root: impl Into<String>) -> Self {
        Self {
            root: root.into().trim_end_matches('/').to_string(),
        }
    }

    /// The key of `instance`.
    pub fn key(&self, instance: &Instance) -> String {
        format!("{}/{}/{}", self.root, instance.service, instance.id)
    }

    /// The prefix of every key of `service` (with its trailing `/`, so that
    /// `math` does not list `mathematics`).
    pub fn prefix(&self, service: &str) -> String {
        format!("{}/{}/", self.root, service)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_value_is_the_documented_json() {
        let me = Instance::new("math", "m1", ["tcp://10.0.0.5:9090"])
            .version("1.4.2")
            .zone("eu-1")
            .meta("team", "core");
        let json: serde_json::Value = serde_json::from_slice(&me.to_value()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "id": "m1", "addrs": ["tcp://10.0.0.5:9090"], "version": "1.4.2",
                "weight": 100, "zone": "eu-1", "meta": {"team": "core"}
            })
        );
        assert_eq!(Instance::from_value("math", &me.to_value()).unwrap(), me);
    }

    #[test]
    fn a_value_from_elsewhere_needs_only_id_and_addrs() {
        let v = br#"{"id": "py-1", "addrs": ["tcp://10.0.0.9:7000"], "extra": true}"#;
        let me = Instance::from_value("math", v).unwrap();
        assert_eq!(
            (me.weight, me.version, me.zone),
            (DEFAULT_WEIGHT, None, None)
        );
        assert_eq!(me.service, "math");
        assert!(Instance::from_value("math", b"{}").is_err());
    }

    #[test]
    fn keys_follow_the_layout() {
        let layout = KeyLayout::new("/apps/");
        let me = Instance::new("math", "m1", ["tcp://a:1"]);
        assert_eq!(layout.key(&me), "/apps/math/m1");
        assert_eq!(layout.prefix("math"), "/apps/math/");
    }
}
