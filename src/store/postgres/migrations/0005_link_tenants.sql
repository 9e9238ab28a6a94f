-- Gatehouse schema, version 5 (PostgreSQL): a link is keyed by its provider, its tenant and
-- the provider's user id. A global provider's user id may be linked in each tenant (to that
-- tenant's user), as the Link API and logins already judged it; keyed without the tenant, a
-- second tenant's link replaced the first's. The tenant is the one the link's body names (its
-- user's when the body names none; a link with neither stops the migration, NOT NULL).
ALTER TABLE identity_provider_links ADD COLUMN tenant_id uuid;
UPDATE identity_provider_links SET tenant_id = COALESCE(
    (body::json ->> 'tenantId')::uuid,
    (SELECT tenant_id FROM users WHERE users.id = identity_provider_links.user_id));
ALTER TABLE identity_provider_links ALTER COLUMN tenant_id SET NOT NULL;
ALTER TABLE identity_provider_links DROP CONSTRAINT identity_provider_links_pkey;
ALTER TABLE identity_provider_links
    ADD PRIMARY KEY (identity_provider_id, identity_provider_user_id, tenant_id);
