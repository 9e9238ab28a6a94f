//! The store as one node's plugins and transparent refreshes read it: users, registrations and
//! refresh tokens from the shared backend, tenants and applications from this node's own
//! configuration.
//!
//! Every node writes what its file declares into the store, so in a cluster the store holds the
//! tenants of whichever node started or reloaded last. A node that signed with them would, in
//! the middle of a rolling change of keys or issuers, sign with a key it does not hold (every
//! login and refresh failing) or mint tokens of an issuer its own proxy refuses. Read from the
//! node's configuration, the settings a node signs and checks with are always one and the same:
//! each node is consistent with itself while a change rolls through the cluster.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use gatehouse_plugin_api::model::{Application, RefreshToken, Registration, Tenant, User};
use gatehouse_plugin_api::store::{
    Directory, RefreshSubject, RefreshTokenStore, RevokeScope, Revoked, Rotation, StoreResult,
    UserStore,
};
use gatehouse_plugin_api::tokens::RevocationScope;
use uuid::Uuid;

use super::GatewayStore;

/// The backend, with tenants and applications answered from a configuration.
pub struct ConfiguredStore {
    backend: Arc<dyn GatewayStore>,
    /// The configured tenants, in the file's order.
    tenants: Vec<Tenant>,
    /// The configured applications, in the file's order.
    applications: Vec<Application>,
    /// Index into `tenants` by id.
    tenant_index: HashMap<Uuid, usize>,
    /// Index into `applications` by id.
    application_index: HashMap<Uuid, usize>,
}

impl ConfiguredStore {
    /// `backend`, read with `tenants` and `applications` as the directory.
    pub fn new(
        backend: Arc<dyn GatewayStore>,
        tenants: &[Tenant],
        applications: &[Application],
    ) -> ConfiguredStore {
        ConfiguredStore {
            backend,
            tenant_index: tenants.iter().enumerate().map(|(i, t)| (t.id, i)).collect(),
            application_index: (applications.iter().enumerate())
                .map(|(i, a)| (a.id, i))
                .collect(),
            tenants: tenants.to_vec(),
            applications: applications.to_vec(),
        }
    }

    fn tenant(&self, id: Uuid) -> Option<Tenant> {
        self.tenant_index.get(&id).map(|&i| self.tenants[i].clone())
    }

    fn application(&self, id: Uuid) -> Option<Application> {
        (self.application_index.get(&id)).map(|&i| self.applications[i].clone())
    }
}

#[async_trait]
impl Directory for ConfiguredStore {
    async fn get_tenant(&self, id: Uuid) -> StoreResult<Option<Tenant>> {
        Ok(self.tenant(id))
    }

    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        Ok(self.tenants.clone())
    }

    async fn get_application(&self, id: Uuid) -> StoreResult<Option<Application>> {
        Ok(self.application(id))
    }

    async fn list_applications(&self) -> StoreResult<Vec<Application>> {
        Ok(self.applications.clone())
    }
}

#[async_trait]
impl UserStore for ConfiguredStore {
    async fn create_user(&self, user: &User) -> StoreResult<()> {
        self.backend.create_user(user).await
    }

    async fn update_user(&self, user: &User) -> StoreResult<()> {
        self.backend.update_user(user).await
    }

    async fn get_user(&self, id: Uuid) -> StoreResult<Option<User>> {
        self.backend.get_user(id).await
    }

    async fn find_users_by_email_any_tenant(&self, email: &str) -> StoreResult<Vec<User>> {
        self.backend.find_users_by_email_any_tenant(email).await
    }

    async fn find_user_by_email(&self, tenant_id: Uuid, email: &str) -> StoreResult<Option<User>> {
        self.backend.find_user_by_email(tenant_id, email).await
    }

    async fn find_user_by_username(
        &self,
        tenant_id: Uuid,
        username: &str,
    ) -> StoreResult<Option<User>> {
        self.backend
            .find_user_by_username(tenant_id, username)
            .await
    }

    async fn upsert_registration(&self, registration: &Registration) -> StoreResult<()> {
        self.backend.upsert_registration(registration).await
    }

    async fn get_registration(
        &self,
        user_id: Uuid,
        application_id: Uuid,
    ) -> StoreResult<Option<Registration>> {
        self.backend.get_registration(user_id, application_id).await
    }

    async fn list_registrations(&self, user_id: Uuid) -> StoreResult<Vec<Registration>> {
        self.backend.list_registrations(user_id).await
    }
}

#[async_trait]
impl RefreshTokenStore for ConfiguredStore {
    async fn insert_refresh_token(&self, token: &RefreshToken) -> StoreResult<()> {
        self.backend.insert_refresh_token(token).await
    }

    async fn insert_refresh_token_beside(
        &self,
        token: &RefreshToken,
        source_id: Uuid,
    ) -> StoreResult<bool> {
        self.backend
            .insert_refresh_token_beside(token, source_id)
            .await
    }

    async fn find_refresh_token(&self, value: &str) -> StoreResult<Option<RefreshToken>> {
        self.backend.find_refresh_token(value).await
    }

    /// The backend's combined read, its tenant and application this node's.
    async fn find_refresh_subject(&self, value: &str) -> StoreResult<Option<RefreshSubject>> {
        let Some(mut subject) = self.backend.find_refresh_subject(value).await? else {
            return Ok(None);
        };
        subject.tenant = (subject.user.as_ref()).and_then(|u| self.tenant(u.tenant_id));
        subject.application = subject
            .token
            .application_id
            .and_then(|a| self.application(a));
        Ok(Some(subject))
    }

    async fn get_refresh_token(&self, id: Uuid) -> StoreResult<Option<RefreshToken>> {
        self.backend.get_refresh_token(id).await
    }

    async fn list_refresh_tokens(&self, user_id: Uuid) -> StoreResult<Vec<RefreshToken>> {
        self.backend.list_refresh_tokens(user_id).await
    }

    async fn touch_refresh_token(&self, token: &RefreshToken) -> StoreResult<()> {
        self.backend.touch_refresh_token(token).await
    }

    async fn rotate_refresh_token(
        &self,
        old_value: &str,
        next: &RefreshToken,
        outcome: Option<(&str, i64)>,
    ) -> StoreResult<Rotation> {
        (self.backend)
            .rotate_refresh_token(old_value, next, outcome)
            .await
    }

    async fn prune_rotations(&self, now_ms: i64) -> StoreResult<u64> {
        self.backend.prune_rotations(now_ms).await
    }

    async fn find_rotated_refresh_token(&self, old_value: &str) -> StoreResult<Option<Rotation>> {
        self.backend.find_rotated_refresh_token(old_value).await
    }

    async fn revoke_refresh_tokens(&self, scope: &RevokeScope) -> StoreResult<Revoked> {
        self.backend.revoke_refresh_tokens(scope).await
    }

    async fn add_revocation(
        &self,
        scope: &RevocationScope,
        instant_seconds: i64,
    ) -> StoreResult<()> {
        self.backend.add_revocation(scope, instant_seconds).await
    }

    async fn list_revocations(
        &self,
        since_seconds: i64,
    ) -> StoreResult<Vec<(RevocationScope, i64)>> {
        self.backend.list_revocations(since_seconds).await
    }
}
