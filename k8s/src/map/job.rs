//! Jobs → `daytwo.k8s.job.failed` when the `Failed` condition turns True
//! (BackoffLimitExceeded, DeadlineExceeded, PodFailurePolicy). Id: `(uid, reason, since)`.

use super::{Context, Mapper, owner_attributes, rfc3339, signal};
use crate::names;
use daytwo_model::{Attributes, Severity, Signal, Timestamp};
use k8s_openapi::api::batch::v1::Job;

#[derive(Clone, Debug, PartialEq)]
pub struct JobSnap {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub owner: Attributes,
    /// (reason, message, since) of a `Failed=True` condition.
    pub failed: Option<(String, String, String)>,
    pub failed_pods: i32,
    pub backoff_limit: Option<i32>,
}

#[derive(Clone, Debug)]
pub struct JobMapper {
    pub ctx: Context,
}

impl JobMapper {
    pub fn new(ctx: Context) -> Self {
        JobMapper { ctx }
    }
}

impl Mapper for JobMapper {
    type Object = Job;
    type Snapshot = JobSnap;

    fn key(&self, j: &Job) -> String {
        j.metadata.uid.clone().unwrap_or_default()
    }

    fn snapshot(&self, j: &Job) -> JobSnap {
        let st = j.status.as_ref();
        JobSnap {
            namespace: j.metadata.namespace.clone().unwrap_or_default(),
            name: j.metadata.name.clone().unwrap_or_default(),
            uid: j.metadata.uid.clone().unwrap_or_default(),
            owner: owner_attributes(&j.metadata),
            failed: st
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| {
                    cs.iter()
                        .find(|c| c.type_ == "Failed" && c.status == "True")
                })
                .map(|c| {
                    (
                        c.reason.clone().unwrap_or_default(),
                        c.message.clone().unwrap_or_default(),
                        c.last_transition_time
                            .as_ref()
                            .map(rfc3339)
                            .unwrap_or_default(),
                    )
                }),
            failed_pods: st.and_then(|s| s.failed).unwrap_or(0),
            backoff_limit: j.spec.as_ref().and_then(|s| s.backoff_limit),
        }
    }

    fn diff(&mut self, prev: Option<&JobSnap>, new: &JobSnap, now: Timestamp) -> Vec<Signal> {
        let Some((reason, message, since)) = &new.failed else {
            return Vec::new();
        };
        if prev.is_some_and(|p| p.failed == new.failed) {
            return Vec::new();
        }
        let mut a = Attributes::new();
        a.insert(names::REASON.into(), reason.clone().into());
        a.insert(names::MESSAGE.into(), message.clone().into());
        a.insert(names::SINCE.into(), since.clone().into());
        a.insert("daytwo.k8s.job.failed_pods".into(), new.failed_pods.into());
        if let Some(b) = new.backoff_limit {
            a.insert("daytwo.k8s.job.backoff_limit".into(), b.into());
        }
        a.insert(names::SOURCE.into(), "status".into());
        // The entity is the Job alone (as the Job's Warning events name it); its CronJob is
        // in the resource.
        let entity = self.ctx.workload_entity(&new.namespace, "Job", &new.name);
        let mut resource = self.ctx.resource();
        resource.insert(names::NAMESPACE.into(), new.namespace.clone().into());
        resource.insert(names::JOB.into(), new.name.clone().into());
        if let Some(c) = new.owner.get(names::CRONJOB) {
            resource.insert(names::CRONJOB.into(), c.clone());
        }
        vec![signal(
            names::JOB_FAILED,
            &[&new.uid, reason, since],
            now,
            Severity::Critical,
            entity,
            resource,
            a,
            format!(
                "Job {}/{} failed: {reason}: {message}",
                new.namespace, new.name
            ),
        )]
    }
}
