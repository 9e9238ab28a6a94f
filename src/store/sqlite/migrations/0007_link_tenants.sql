-- Gatehouse schema, version 7 (SQLite): a link is keyed by its provider, its tenant and the
-- provider's user id. A global provider's user id may be linked in each tenant (to that
-- tenant's user), as the Link API and logins already judged it; keyed without the tenant, a
-- second tenant's link replaced the first's. The tenant is the one the link's body names (its
-- user's when the body names none; a link with neither stops the migration, NOT NULL).
CREATE TABLE identity_provider_links_by_tenant (
    identity_provider_id TEXT NOT NULL REFERENCES identity_providers (id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL,
    identity_provider_user_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (identity_provider_id, identity_provider_user_id, tenant_id)
);
INSERT INTO identity_provider_links_by_tenant
    (identity_provider_id, tenant_id, identity_provider_user_id, user_id, body)
    SELECT identity_provider_id,
           COALESCE(lower(json_extract(body, '$.tenantId')),
                    (SELECT tenant_id FROM users WHERE users.id = identity_provider_links.user_id)),
           identity_provider_user_id, user_id, body
    FROM identity_provider_links;
DROP TABLE identity_provider_links;
ALTER TABLE identity_provider_links_by_tenant RENAME TO identity_provider_links;
CREATE INDEX identity_provider_links_user ON identity_provider_links (user_id);
