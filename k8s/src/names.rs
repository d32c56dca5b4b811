//! The event names and attribute keys of Kubernetes signals (docs/signals.md, "Kubernetes").

/// A node condition turned bad: Ready is not True, or any other condition (MemoryPressure,
/// DiskPressure, PIDPressure, NetworkUnavailable, a node-problem-detector type) is True.
pub const NODE_CONDITION: &str = "daytwo.k8s.node.condition";
/// A node condition that was bad is good again.
pub const NODE_CONDITION_CLEARED: &str = "daytwo.k8s.node.condition_cleared";
/// A container waits for a bad reason (CrashLoopBackOff, ImagePullBackOff, …).
pub const CONTAINER_WAITING: &str = "daytwo.k8s.container.waiting";
/// A container terminated with a failure or was restarted (OOMKilled, Error, …).
pub const CONTAINER_TERMINATED: &str = "daytwo.k8s.container.terminated";
/// A liveness, readiness or startup probe failed (an `Unhealthy` event), or a running
/// container stopped being ready.
pub const CONTAINER_PROBE_FAILED: &str = "daytwo.k8s.container.probe_failed";
/// The kubelet evicted a pod (node pressure).
pub const POD_EVICTED: &str = "daytwo.k8s.pod.evicted";
/// The scheduler found no node for a pod.
pub const POD_UNSCHEDULABLE: &str = "daytwo.k8s.pod.unschedulable";
/// A pod's volume could not be attached or mounted.
pub const POD_VOLUME_FAILED: &str = "daytwo.k8s.pod.volume_failed";
/// A pod's sandbox (network namespace, CNI) could not be created.
pub const POD_SANDBOX_FAILED: &str = "daytwo.k8s.pod.sandbox_failed";
/// A spec change: rollout, scale, config (ConfigMap/Secret), cordon.
pub const CHANGE: &str = "daytwo.k8s.change";
/// A Deployment exceeded its progress deadline.
pub const ROLLOUT_STUCK: &str = "daytwo.k8s.workload.rollout_stuck";
/// A controller could not create pods (quota, admission webhook, security policy).
pub const REPLICA_FAILURE: &str = "daytwo.k8s.workload.replica_failure";
/// A Job failed (BackoffLimitExceeded, DeadlineExceeded, PodFailurePolicy).
pub const JOB_FAILED: &str = "daytwo.k8s.job.failed";
/// A HorizontalPodAutoscaler cannot scale (no metrics, missing target).
pub const HPA_UNABLE_TO_SCALE: &str = "daytwo.k8s.hpa.unable_to_scale";
/// A PersistentVolumeClaim cannot be bound or provisioned, or lost its volume.
pub const VOLUME_CLAIM_FAILED: &str = "daytwo.k8s.volume.claim_failed";
/// A Service has no ready endpoint left.
pub const SERVICE_NO_ENDPOINTS: &str = "daytwo.k8s.service.no_endpoints";
/// A Service that had no ready endpoint has one again.
pub const SERVICE_ENDPOINTS_RESTORED: &str = "daytwo.k8s.service.endpoints_restored";
/// A Deployment has had fewer ready replicas than it wants for longer than the grace period.
pub const REPLICAS_NOT_READY: &str = "daytwo.k8s.workload.replicas_not_ready";
/// A Deployment that had too few ready replicas has them all again (or is gone).
pub const REPLICAS_READY: &str = "daytwo.k8s.workload.replicas_ready";
/// A configuration finding about an object (k8sgpt's analyzers): `daytwo.k8s.finding` says
/// which (`ingress.backend_service_not_found`, `cronjob.invalid_schedule`, …).
pub const MISCONFIGURATION: &str = "daytwo.k8s.misconfiguration";
/// A configuration finding went away (fixed, or the object was deleted).
pub const MISCONFIGURATION_CLEARED: &str = "daytwo.k8s.misconfiguration_cleared";
/// Any other Warning event.
pub const WARNING_EVENT: &str = "daytwo.k8s.event";

pub const CLUSTER: &str = "k8s.cluster.name";
pub const NODE: &str = "k8s.node.name";
pub const NAMESPACE: &str = "k8s.namespace.name";
pub const POD_NAME: &str = "k8s.pod.name";
pub const POD_UID: &str = "k8s.pod.uid";
pub const CONTAINER: &str = "k8s.container.name";
pub const DEPLOYMENT: &str = "k8s.deployment.name";
pub const REPLICASET: &str = "k8s.replicaset.name";
pub const STATEFULSET: &str = "k8s.statefulset.name";
pub const DAEMONSET: &str = "k8s.daemonset.name";
pub const JOB: &str = "k8s.job.name";
pub const CRONJOB: &str = "k8s.cronjob.name";
pub const HPA: &str = "k8s.hpa.name";
pub const PVC: &str = "k8s.persistentvolumeclaim.name";
/// The PersistentVolumeClaims a pod mounts (an array of names within its namespace), on the
/// resource of a pod's signals.
pub const POD_CLAIMS: &str = "daytwo.k8s.pod.claims";
pub const CONFIGMAP: &str = "k8s.configmap.name";
pub const SECRET: &str = "k8s.secret.name";
pub const SERVICE: &str = "service.name";
pub const INGRESS: &str = "k8s.ingress.name";
pub const NETWORK_POLICY: &str = "k8s.networkpolicy.name";
pub const PDB: &str = "k8s.poddisruptionbudget.name";
pub const HOST: &str = "host.name";

pub const CONDITION_TYPE: &str = "k8s.node.condition.type";
pub const CONDITION_STATUS: &str = "k8s.node.condition.status";
pub const REASON: &str = "daytwo.k8s.reason";
pub const MESSAGE: &str = "daytwo.k8s.message";
pub const SINCE: &str = "daytwo.k8s.since";
pub const WAITING_REASON: &str = "k8s.container.status.reason";
pub const LAST_TERMINATED_REASON: &str = "k8s.container.status.last_terminated_reason";
pub const EXIT_CODE: &str = "daytwo.k8s.exit_code";
pub const RESTART_COUNT: &str = "k8s.container.restart_count";
pub const PROBE: &str = "daytwo.k8s.probe";
pub const WORKLOAD_KIND: &str = "daytwo.k8s.workload.kind";
pub const OBJECT_KIND: &str = "daytwo.k8s.object.kind";
pub const OBJECT_NAME: &str = "daytwo.k8s.object.name";
pub const EVENT_COUNT: &str = "daytwo.k8s.event.count";
pub const SOURCE: &str = "daytwo.k8s.source";
pub const CONDITION: &str = "daytwo.k8s.condition";
pub const SCALE_TARGET: &str = "daytwo.k8s.scale_target";
pub const READY_ENDPOINTS: &str = "daytwo.k8s.endpoints.ready";
pub const NOT_READY_ENDPOINTS: &str = "daytwo.k8s.endpoints.not_ready";
/// The pods behind a Service (names, in the Service's namespace), ready or not.
pub const ENDPOINT_PODS: &str = "daytwo.k8s.endpoints.pods";
/// Their uids, in the same order (`""` when the endpoint has none).
pub const ENDPOINT_POD_UIDS: &str = "daytwo.k8s.endpoints.pod_uids";
/// Their nodes, in the same order (`""` when unknown).
pub const ENDPOINT_NODES: &str = "daytwo.k8s.endpoints.nodes";
pub const CHANGE_KIND: &str = "daytwo.change.kind";
pub const CHANGE_FIELDS: &str = "daytwo.change.fields";
pub const CHANGE_SUMMARY: &str = "daytwo.change.summary";
pub const IMAGE_BEFORE: &str = "daytwo.change.image.before";
pub const IMAGE_AFTER: &str = "daytwo.change.image.after";
pub const MEMORY_LIMIT_BEFORE: &str = "daytwo.change.memory_limit_bytes.before";
pub const MEMORY_LIMIT_AFTER: &str = "daytwo.change.memory_limit_bytes.after";
pub const REPLICAS_BEFORE: &str = "daytwo.change.replicas.before";
pub const REPLICAS_AFTER: &str = "daytwo.change.replicas.after";
pub const CONTENT_HASH_BEFORE: &str = "daytwo.change.hash.before";
pub const CONTENT_HASH_AFTER: &str = "daytwo.change.hash.after";
pub const GENERATION: &str = "daytwo.k8s.generation";
pub const FINDING: &str = "daytwo.k8s.finding";
pub const FINDING_DETAIL: &str = "daytwo.k8s.finding.detail";
pub const REPLICAS_DESIRED: &str = "daytwo.k8s.replicas.desired";
pub const REPLICAS_READY_COUNT: &str = "daytwo.k8s.replicas.ready";
pub const SELECTOR: &str = "daytwo.k8s.selector";
pub const SCHEDULE: &str = "daytwo.k8s.schedule";
pub const PDB_DISRUPTIONS_ALLOWED: &str = "daytwo.k8s.pdb.disruptions_allowed";
pub const PDB_CURRENT_HEALTHY: &str = "daytwo.k8s.pdb.current_healthy";
pub const PDB_DESIRED_HEALTHY: &str = "daytwo.k8s.pdb.desired_healthy";
pub const PDB_EXPECTED_PODS: &str = "daytwo.k8s.pdb.expected_pods";
