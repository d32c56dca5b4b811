//! HorizontalPodAutoscalers (autoscaling/v2) → `daytwo.k8s.hpa.unable_to_scale` when
//! `AbleToScale` or `ScalingActive` turns False (FailedGetResourceMetric, FailedGetScale,
//! InvalidSelector, …). Id: `(uid, condition, reason, since)`.

use super::{Context, Mapper, rfc3339, signal};
use crate::names;
use daytwo_model::{Attributes, EntityKind, Severity, Signal, Timestamp};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;

#[derive(Clone, Debug, PartialEq)]
pub struct HpaSnap {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub target: String,
    /// (type, reason, message, since) of each False AbleToScale / ScalingActive condition.
    pub failing: Vec<(String, String, String, String)>,
}

#[derive(Clone, Debug)]
pub struct HpaMapper {
    pub ctx: Context,
}

impl HpaMapper {
    pub fn new(ctx: Context) -> Self {
        HpaMapper { ctx }
    }
}

impl Mapper for HpaMapper {
    type Object = HorizontalPodAutoscaler;
    type Snapshot = HpaSnap;

    fn key(&self, h: &HorizontalPodAutoscaler) -> String {
        h.metadata.uid.clone().unwrap_or_default()
    }

    fn snapshot(&self, h: &HorizontalPodAutoscaler) -> HpaSnap {
        let failing = h
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .map(|cs| {
                cs.iter()
                    .filter(|c| {
                        (c.type_ == "AbleToScale" || c.type_ == "ScalingActive")
                            && c.status == "False"
                            // ScalingDisabled: minReplicas=0 / replicas=0 on purpose.
                            && c.reason.as_deref() != Some("ScalingDisabled")
                    })
                    .map(|c| {
                        (
                            c.type_.clone(),
                            c.reason.clone().unwrap_or_default(),
                            c.message.clone().unwrap_or_default(),
                            c.last_transition_time
                                .as_ref()
                                .map(rfc3339)
                                .unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let target = h
            .spec
            .as_ref()
            .map(|s| format!("{}/{}", s.scale_target_ref.kind, s.scale_target_ref.name))
            .unwrap_or_default();
        HpaSnap {
            namespace: h.metadata.namespace.clone().unwrap_or_default(),
            name: h.metadata.name.clone().unwrap_or_default(),
            uid: h.metadata.uid.clone().unwrap_or_default(),
            target,
            failing,
        }
    }

    fn diff(&mut self, prev: Option<&HpaSnap>, new: &HpaSnap, now: Timestamp) -> Vec<Signal> {
        let mut out = Vec::new();
        for f in &new.failing {
            if prev.is_some_and(|p| p.failing.contains(f)) {
                continue;
            }
            let (type_, reason, message, since) = f;
            let mut a = Attributes::new();
            a.insert(names::CONDITION.into(), type_.clone().into());
            a.insert(names::REASON.into(), reason.clone().into());
            a.insert(names::MESSAGE.into(), message.clone().into());
            a.insert(names::SINCE.into(), since.clone().into());
            a.insert(names::SCALE_TARGET.into(), new.target.clone().into());
            a.insert(names::SOURCE.into(), "status".into());
            let mut resource = self.ctx.resource();
            resource.insert(names::NAMESPACE.into(), new.namespace.clone().into());
            out.push(signal(
                names::HPA_UNABLE_TO_SCALE,
                &[&new.uid, type_, reason, since],
                now,
                Severity::Warning,
                self.ctx
                    .object_entity(EntityKind::Workload, &new.namespace, names::HPA, &new.name),
                resource,
                a,
                format!(
                    "HorizontalPodAutoscaler {}/{} (target {}): {type_}=False ({reason}): {message}",
                    new.namespace, new.name, new.target
                ),
            ));
        }
        out
    }
}
