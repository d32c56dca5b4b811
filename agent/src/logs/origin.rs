//! Who wrote a log file, read from its path.
//!
//! Entry type: [`Origin::from_path`]. Kubernetes pod logs
//! (`…/pods/<namespace>_<pod>_<uid>/<container>/<N>.log`) give `k8s.namespace.name`,
//! `k8s.pod.name`, `k8s.pod.uid` and `k8s.container.name`; Docker json-file logs
//! (`…/containers/<id>/<id>-json.log`) give `container.id`; anything else is a plain file,
//! named after its file name (without rotation suffixes) as a `service`, or the `host` for
//! system logs (syslog, messages, kern.log, …).

use daytwo_model::{Attributes, Entity, EntityKind};
use std::path::Path;

/// The Kubernetes identity in a pod log path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodPath {
    pub namespace: String,
    pub pod: String,
    pub uid: String,
    pub container: String,
}

/// Where a file's lines come from. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub path: String,
    pub pod: Option<PodPath>,
    pub container_id: Option<String>,
}

const SYSTEM_LOGS: &[&str] = &[
    "syslog", "messages", "kern", "auth", "daemon", "secure", "dmesg", "cron", "user", "boot",
];

impl Origin {
    pub fn from_path(path: &Path) -> Origin {
        let comps: Vec<&str> = path
            .components()
            .filter_map(|c| c.as_os_str().to_str())
            .collect();
        let n = comps.len();
        let mut pod = None;
        let mut container_id = None;
        if n >= 4 && comps[n - 4] == "pods" {
            let parts: Vec<&str> = comps[n - 3].splitn(3, '_').collect();
            if let [ns, name, uid] = parts[..]
                && !ns.is_empty()
                && !name.is_empty()
                && !uid.is_empty()
            {
                pod = Some(PodPath {
                    namespace: ns.into(),
                    pod: name.into(),
                    uid: uid.into(),
                    container: comps[n - 2].into(),
                });
            }
        }
        if pod.is_none()
            && n >= 3
            && comps[n - 3] == "containers"
            && comps[n - 1] == format!("{}-json.log", comps[n - 2])
        {
            container_id = Some(comps[n - 2].to_string());
        }
        Origin {
            path: path.to_string_lossy().into_owned(),
            pod,
            container_id,
        }
    }

    /// Resource attributes of raw records: `host.name` plus what the path says.
    pub fn resource(&self, host: &str) -> Attributes {
        let mut r = Attributes::new();
        r.insert("host.name".into(), host.into());
        if let Some(p) = &self.pod {
            r.insert("k8s.namespace.name".into(), p.namespace.clone().into());
            r.insert("k8s.pod.name".into(), p.pod.clone().into());
            r.insert("k8s.pod.uid".into(), p.uid.clone().into());
            r.insert("k8s.container.name".into(), p.container.clone().into());
            // Owner, node and labels from the agent's pod cache (empty without Kubernetes).
            r.extend(crate::kube::pod_resource(&p.uid));
        }
        if let Some(id) = &self.container_id {
            r.insert("container.id".into(), id.clone().into());
        }
        r
    }

    /// The entity log signals are about.
    pub fn entity(&self, host: &str) -> Entity {
        if let Some(p) = &self.pod {
            // The pod, not the container: pods are what topology and OOM cgroups join on;
            // the container is a signal attribute.
            return Entity::new(EntityKind::Pod, format!("{}/{}", p.namespace, p.pod))
                .with_attr("k8s.namespace.name", p.namespace.clone())
                .with_attr("k8s.pod.name", p.pod.clone())
                .with_attr("k8s.pod.uid", p.uid.clone())
                .with_attr("host.name", host);
        }
        if let Some(id) = &self.container_id {
            return Entity::new(EntityKind::Container, id.clone())
                .with_attr("container.id", id.clone())
                .with_attr("host.name", host);
        }
        let name = self.file_stem();
        if SYSTEM_LOGS.contains(&name.as_str()) {
            return Entity::new(EntityKind::Host, host).with_attr("host.name", host);
        }
        Entity::new(EntityKind::Service, name.clone())
            .with_attr("service.name", name)
            .with_attr("host.name", host)
    }

    /// Groups the pods of one owner: `namespace/owner/container`, where the owner is the pod
    /// name without its ReplicaSet and pod suffixes (`web-7d4b9c6f5-x2x8z` → `web`) or its
    /// StatefulSet ordinal; plain files are keyed by path.
    pub fn workload_key(&self) -> String {
        match &self.pod {
            Some(p) => format!("{}/{}/{}", p.namespace, owner_name(&p.pod), p.container),
            None => self.path.clone(),
        }
    }

    /// The file name without directories, `.log` and rotation suffixes (`app.log.1` → `app`).
    pub fn file_stem(&self) -> String {
        let name = Path::new(&self.path)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("unknown");
        let mut parts: Vec<&str> = name.split('.').collect();
        while parts.len() > 1
            && parts
                .last()
                .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()) || *p == "log" || *p == "gz")
        {
            parts.pop();
        }
        parts.join(".")
    }
}

fn owner_name(pod: &str) -> &str {
    let is_suffix = |s: &str, min: usize, max: usize| {
        (min..=max).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    let mut name = pod;
    if let Some((head, tail)) = name.rsplit_once('-') {
        if tail.bytes().all(|b| b.is_ascii_digit()) && !tail.is_empty() {
            return head; // StatefulSet ordinal
        }
        if is_suffix(tail, 5, 5) {
            name = head;
            if let Some((h2, t2)) = name.rsplit_once('-')
                && is_suffix(t2, 6, 10)
                && t2.bytes().any(|b| b.is_ascii_digit())
            {
                name = h2;
            }
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_log_paths() {
        let o = Origin::from_path(Path::new(
            "/var/log/pods/shop_web-7d4b9c6f5-x2x8z_0b9f-11aa/nginx/0.log",
        ));
        let p = o.pod.clone().unwrap();
        assert_eq!(p.namespace, "shop");
        assert_eq!(p.pod, "web-7d4b9c6f5-x2x8z");
        assert_eq!(p.uid, "0b9f-11aa");
        assert_eq!(p.container, "nginx");
        assert_eq!(o.workload_key(), "shop/web/nginx");
        let r = o.resource("n1");
        assert_eq!(r["k8s.pod.uid"], "0b9f-11aa");
        assert_eq!(r["host.name"], "n1");
        assert_eq!(o.entity("n1").kind, EntityKind::Pod);
        assert_eq!(o.entity("n1").name, "shop/web-7d4b9c6f5-x2x8z");
    }

    #[test]
    fn other_paths() {
        let o = Origin::from_path(Path::new("/var/lib/docker/containers/abc/abc-json.log"));
        assert_eq!(o.container_id.as_deref(), Some("abc"));
        assert_eq!(o.entity("h").kind, EntityKind::Container);
        let o = Origin::from_path(Path::new("/var/log/syslog.1"));
        assert_eq!(o.entity("h").kind, EntityKind::Host);
        let o = Origin::from_path(Path::new("/srv/app/checkout.log.2"));
        assert_eq!(o.file_stem(), "checkout");
        assert_eq!(o.entity("h").name, "checkout");
        assert!(o.pod.is_none());
        assert_eq!(owner_name("db-0"), "db");
        assert_eq!(owner_name("job-abcde"), "job");
        assert_eq!(owner_name("plain"), "plain");
    }
}
