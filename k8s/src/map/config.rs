//! ConfigMaps and Secrets → `daytwo.k8s.change` with `daytwo.change.kind = config`.
//!
//! Only names and hashes leave the mapper: the snapshot keeps one hash per key (of the value
//! for a ConfigMap, of the bytes for a Secret), the signal lists the changed keys as
//! `data[KEY]` fields and the before/after hash of the whole content. Values are never copied.
//! Id: `(uid, resourceVersion)` of the update that changed the content.

use super::{Context, Mapper, content_hash, signal};
use crate::names;
use daytwo_model::{Attributes, EntityKind, Severity, Signal, Timestamp};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;
use std::marker::PhantomData;

/// The parts of a ConfigMap or Secret the mapper reads.
pub trait ConfigObject {
    const KIND: &'static str;
    const KEY: &'static str;
    fn meta(&self) -> &ObjectMeta;
    /// key → hash of its value.
    fn hashes(&self) -> BTreeMap<String, String>;
}

impl ConfigObject for ConfigMap {
    const KIND: &'static str = "ConfigMap";
    const KEY: &'static str = names::CONFIGMAP;
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn hashes(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (k, v) in self.data.iter().flatten() {
            out.insert(k.clone(), content_hash(&["data", v]));
        }
        for (k, v) in self.binary_data.iter().flatten() {
            out.insert(
                k.clone(),
                content_hash(&["binary", &String::from_utf8_lossy(&v.0)]),
            );
        }
        out
    }
}

impl ConfigObject for Secret {
    const KIND: &'static str = "Secret";
    const KEY: &'static str = names::SECRET;
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn hashes(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (k, v) in self.data.iter().flatten() {
            out.insert(
                k.clone(),
                content_hash(&["secret", &String::from_utf8_lossy(&v.0)]),
            );
        }
        for (k, v) in self.string_data.iter().flatten() {
            out.insert(k.clone(), content_hash(&["secret", v]));
        }
        out
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ConfigSnap {
    pub kind: &'static str,
    pub key: &'static str,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
    pub hashes: BTreeMap<String, String>,
    pub hash: String,
}

#[derive(Clone, Debug)]
pub struct ConfigMapper<C> {
    pub ctx: Context,
    _kind: PhantomData<fn() -> C>,
}

pub type ConfigMapMapper = ConfigMapper<ConfigMap>;
pub type SecretMapper = ConfigMapper<Secret>;

impl<C> ConfigMapper<C> {
    pub fn new(ctx: Context) -> Self {
        ConfigMapper {
            ctx,
            _kind: PhantomData,
        }
    }
}

impl<C: ConfigObject> Mapper for ConfigMapper<C> {
    type Object = C;
    type Snapshot = ConfigSnap;

    fn key(&self, c: &C) -> String {
        let m = c.meta();
        m.uid.clone().unwrap_or_else(|| {
            format!(
                "{}/{}",
                m.namespace.as_deref().unwrap_or(""),
                m.name.as_deref().unwrap_or("")
            )
        })
    }

    fn snapshot(&self, c: &C) -> ConfigSnap {
        let m = c.meta();
        let hashes = c.hashes();
        let flat: Vec<String> = hashes.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let flat: Vec<&str> = flat.iter().map(String::as_str).collect();
        ConfigSnap {
            kind: C::KIND,
            key: C::KEY,
            namespace: m.namespace.clone().unwrap_or_default(),
            name: m.name.clone().unwrap_or_default(),
            uid: m.uid.clone().unwrap_or_default(),
            resource_version: m.resource_version.clone().unwrap_or_default(),
            hash: content_hash(&flat),
            hashes,
        }
    }

    fn diff(&mut self, prev: Option<&ConfigSnap>, new: &ConfigSnap, now: Timestamp) -> Vec<Signal> {
        let Some(p) = prev else { return Vec::new() };
        if p.hash == new.hash {
            return Vec::new();
        }
        let keys: std::collections::BTreeSet<&String> =
            p.hashes.keys().chain(new.hashes.keys()).collect();
        let fields: Vec<String> = keys
            .into_iter()
            .filter(|k| p.hashes.get(*k) != new.hashes.get(*k))
            .map(|k| format!("data[{k}]"))
            .collect();
        let summary = format!(
            "{} {}/{} changed: {}",
            new.kind,
            new.namespace,
            new.name,
            fields.join(", ")
        );
        let mut a = Attributes::new();
        a.insert(names::CHANGE_KIND.into(), "config".into());
        a.insert(names::CHANGE_FIELDS.into(), serde_json::json!(fields));
        a.insert(names::CHANGE_SUMMARY.into(), summary.clone().into());
        a.insert(names::CONTENT_HASH_BEFORE.into(), p.hash.clone().into());
        a.insert(names::CONTENT_HASH_AFTER.into(), new.hash.clone().into());
        a.insert(names::OBJECT_KIND.into(), new.kind.into());
        let mut resource = self.ctx.resource();
        resource.insert(names::NAMESPACE.into(), new.namespace.clone().into());
        vec![signal(
            names::CHANGE,
            &[&new.uid, &new.resource_version],
            now,
            Severity::Info,
            self.ctx
                .object_entity(EntityKind::Volume, &new.namespace, new.key, &new.name),
            resource,
            a,
            summary,
        )]
    }
}
