//! Records the unit tests of the refresh rules share: a tenant, an application, a token.

use gatehouse_plugin_api::model::{
    Application, JwtConfiguration, LoginConfiguration, RefreshToken, RefreshTokenMetaData, Tenant,
};
use uuid::Uuid;

/// A minute in ms.
pub const MINUTE: i64 = 60_000;

/// A tenant with this JWT configuration.
pub fn tenant(configuration: JwtConfiguration) -> Tenant {
    Tenant {
        id: Uuid::new_v4(),
        name: "t".into(),
        issuer: "acme.com".into(),
        jwt_configuration: configuration,
        data: None,
    }
}

/// An active application of `tenant_id` with this JWT configuration.
pub fn application(tenant_id: Uuid, configuration: JwtConfiguration) -> Application {
    Application {
        id: Uuid::new_v4(),
        tenant_id,
        name: "app".into(),
        roles: vec![],
        login_configuration: LoginConfiguration::default(),
        jwt_configuration: configuration,
        active: true,
        data: None,
    }
}

/// A token whose window starts at `start`, first issued at `first`, stored with this expiration.
pub fn token(start: i64, first: i64, stored_expiration: i64) -> RefreshToken {
    RefreshToken {
        id: Uuid::new_v4(),
        token: "v".into(),
        user_id: Uuid::new_v4(),
        application_id: None,
        tenant_id: Uuid::new_v4(),
        insert_instant: start,
        start_instant: start,
        first_issued_instant: first,
        expiration_instant: stored_expiration,
        meta_data: RefreshTokenMetaData::default(),
    }
}
