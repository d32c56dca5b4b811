//! A Kubernetes client from `--kube auto|on|off` and `--kubeconfig`.
//!
//! Entry: [`connect`]. `auto` connects when in-cluster configuration (the service account
//! token and `KUBERNETES_SERVICE_HOST`) or a kubeconfig (`--kubeconfig`, `$KUBECONFIG`,
//! `~/.kube/config`) is found, and is quietly off otherwise; `on` fails with the reason when
//! neither works; `off` never connects. Building a client reads files only: no request is
//! made, so an unreachable API server never delays start-up (the watches retry on their own).

use kube::config::{KubeConfigOptions, Kubeconfig};
use std::path::PathBuf;

/// `--kube`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KubeMode {
    /// On when in-cluster configuration or a kubeconfig is found.
    #[default]
    Auto,
    On,
    Off,
}

impl std::str::FromStr for KubeMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(KubeMode::Auto),
            "on" => Ok(KubeMode::On),
            "off" => Ok(KubeMode::Off),
            other => Err(format!("--kube {other:?}: expected auto, on or off")),
        }
    }
}

/// How to reach the API server.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    pub mode: KubeMode,
    /// An explicit kubeconfig file (`--kubeconfig`); implies `auto` → on.
    pub kubeconfig: Option<PathBuf>,
}

/// Why no client could be built.
#[derive(Debug, thiserror::Error)]
pub enum ConnectFailed {
    #[error("cannot read kubeconfig {path}: {source}. Check --kubeconfig.")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error(
        "--kube on, but no Kubernetes configuration was found: {0}. Run inside a pod with a service account, or pass --kubeconfig."
    )]
    NoConfig(String),
    #[error("cannot build a Kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

/// A client and a description of where it points (for the start-up log), or `None` when
/// Kubernetes is off (or `auto` found nothing).
pub async fn connect(
    opts: &ClientOptions,
) -> Result<Option<(kube::Client, String)>, ConnectFailed> {
    if opts.mode == KubeMode::Off {
        return Ok(None);
    }
    let config = if let Some(path) = &opts.kubeconfig {
        let kc = Kubeconfig::read_from(path).map_err(|source| ConnectFailed::Kubeconfig {
            path: path.clone(),
            source,
        })?;
        kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .map_err(|source| ConnectFailed::Kubeconfig {
                path: path.clone(),
                source,
            })?
    } else {
        let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
        let kubeconfig = std::env::var_os("KUBECONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube/config")))
            .filter(|p| p.exists());
        if opts.mode == KubeMode::Auto && !in_cluster && kubeconfig.is_none() {
            return Ok(None);
        }
        match kube::Config::infer().await {
            Ok(c) => c,
            Err(e) if opts.mode == KubeMode::Auto => {
                tracing::warn!(error = %e, "Kubernetes configuration found but unusable; Kubernetes watches are off.");
                return Ok(None);
            }
            Err(e) => return Err(ConnectFailed::NoConfig(e.to_string())),
        }
    };
    let url = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).map_err(ConnectFailed::Client)?;
    Ok(Some((client, url)))
}
