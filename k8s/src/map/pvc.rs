//! PersistentVolumeClaims → `daytwo.k8s.volume.claim_failed` when a claim is `Lost` (its
//! volume is gone). A `Pending` claim is normal until its first consumer is scheduled; the
//! Warning events `ProvisioningFailed` and `FailedBinding` (see [`super::event`]) report the
//! pending claims that will not bind. Id: `(uid, phase)`.

use super::{Context, Mapper, signal};
use crate::names;
use daytwo_model::{Attributes, EntityKind, Severity, Signal, Timestamp};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;

#[derive(Clone, Debug, PartialEq)]
pub struct PvcSnap {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub phase: String,
    pub volume: String,
    pub storage_class: String,
}

#[derive(Clone, Debug)]
pub struct PvcMapper {
    pub ctx: Context,
}

impl PvcMapper {
    pub fn new(ctx: Context) -> Self {
        PvcMapper { ctx }
    }
}

impl Mapper for PvcMapper {
    type Object = PersistentVolumeClaim;
    type Snapshot = PvcSnap;

    fn key(&self, p: &PersistentVolumeClaim) -> String {
        p.metadata.uid.clone().unwrap_or_default()
    }

    fn snapshot(&self, p: &PersistentVolumeClaim) -> PvcSnap {
        PvcSnap {
            namespace: p.metadata.namespace.clone().unwrap_or_default(),
            name: p.metadata.name.clone().unwrap_or_default(),
            uid: p.metadata.uid.clone().unwrap_or_default(),
            phase: p
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default(),
            volume: p
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.clone())
                .unwrap_or_default(),
            storage_class: p
                .spec
                .as_ref()
                .and_then(|s| s.storage_class_name.clone())
                .unwrap_or_default(),
        }
    }

    fn diff(&mut self, prev: Option<&PvcSnap>, new: &PvcSnap, now: Timestamp) -> Vec<Signal> {
        if new.phase != "Lost" || prev.is_some_and(|p| p.phase == "Lost") {
            return Vec::new();
        }
        let mut a = Attributes::new();
        a.insert(names::REASON.into(), "Lost".into());
        a.insert(
            names::MESSAGE.into(),
            format!("volume {} of the claim no longer exists", new.volume).into(),
        );
        a.insert("k8s.volume.name".into(), new.volume.clone().into());
        a.insert(
            "daytwo.k8s.storage_class".into(),
            new.storage_class.clone().into(),
        );
        a.insert(names::SOURCE.into(), "status".into());
        let mut resource = self.ctx.resource();
        resource.insert(names::NAMESPACE.into(), new.namespace.clone().into());
        vec![signal(
            names::VOLUME_CLAIM_FAILED,
            &[&new.uid, "Lost"],
            now,
            Severity::Critical,
            self.ctx
                .object_entity(EntityKind::Volume, &new.namespace, names::PVC, &new.name),
            resource,
            a,
            format!(
                "PersistentVolumeClaim {}/{} is Lost: its volume {} is gone.",
                new.namespace, new.name, new.volume
            ),
        )]
    }
}
