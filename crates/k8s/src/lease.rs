//! Leader election over a `coordination.k8s.io/v1` Lease, so that of several operator
//! replicas one reconciles at a time.
//!
//! The holder renews the Lease every third of its duration; another replica takes it only
//! once it has not been renewed for a whole duration. A holder that cannot renew in time
//! stops (the process exits and restarts as a candidate) rather than risk two leaders.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::PostParams;

use crate::Error;

/// A Lease this process may hold.
pub struct LeaderLease {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl LeaderLease {
    /// The Lease `name` in `api`'s namespace, held as `identity` (the pod's name).
    pub fn new(api: Api<Lease>, name: &str, identity: &str, duration: Duration) -> Self {
        LeaderLease { api, name: name.to_owned(), identity: identity.to_owned(), duration }
    }

    /// Waits until this process holds the Lease.
    pub async fn acquire(&self) -> Result<(), Error> {
        loop {
            if self.try_acquire().await? {
                tracing::info!(lease = %self.name, identity = %self.identity, "leading");
                return Ok(());
            }
            tokio::time::sleep(self.duration / 3).await;
        }
    }

    /// Renews the Lease until renewing fails or another holder took it; returns why.
    pub async fn hold(&self) -> Error {
        loop {
            tokio::time::sleep(self.duration / 3).await;
            match self.try_acquire().await {
                Ok(true) => {}
                Ok(false) => {
                    return Error::Finalizer(format!("lost the lease {} to another holder", self.name));
                }
                Err(err) => return err,
            }
        }
    }

    /// Takes or renews the Lease when it is free, expired or ours.
    async fn try_acquire(&self) -> Result<bool, Error> {
        let now = Timestamp::now();
        let seconds = i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX);
        let Some(lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() },
                spec: Some(self.spec(now, seconds, now)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(err) => Err(err.into()),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let ours = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        let renewed = spec.renew_time.as_ref().map(|t| t.0).unwrap_or(Timestamp::UNIX_EPOCH);
        let held_for = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(seconds)));
        let expired = renewed.checked_add(held_for).map(|end| end < now).unwrap_or(true);
        if !ours && !expired {
            return Ok(false);
        }
        let acquired = if ours { spec.acquire_time.map(|t| t.0).unwrap_or(now) } else { now };
        // The resourceVersion makes the write conditional: of two candidates, one wins.
        let mut patch = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                resource_version: lease.metadata.resource_version.clone(),
                ..ObjectMeta::default()
            },
            spec: Some(self.spec(acquired, seconds, now)),
        };
        if let Some(spec) = patch.spec.as_mut() {
            let transitions = lease.spec.as_ref().and_then(|s| s.lease_transitions).unwrap_or(0);
            spec.lease_transitions = Some(if ours { transitions } else { transitions.saturating_add(1) });
        }
        match self.api.replace(&self.name, &PostParams::default(), &patch).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    fn spec(&self, acquired: Timestamp, seconds: i32, renewed: Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(seconds),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(renewed)),
            ..LeaseSpec::default()
        }
    }
}
