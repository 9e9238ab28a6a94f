// Drives Gatehouse's identity-provider API with FusionAuth's official npm client
// (@fusionauth/typescript-client 1.69.0), unchanged: the port of
// tests/python/identity_provider_client.py, plus the call shapes only this client produces
// (see "TS-client call shapes" below).
//
// Run by tests/it/node_client.rs against a running gateway. Everything comes from the
// environment, as for the Python script:
//
//   GATEHOUSE_URL        base URL of the gateway, e.g. http://127.0.0.1:9011
//   GATEHOUSE_API_KEY    a global API key
//   GATEHOUSE_APP_ID     the application logins are for (default role "user")
//
// The external provider signs with an HMAC secret made here (HS256 with node:crypto, so nothing
// beyond the client is needed). Prints `all checks passed` when every check passes; otherwise
// prints every failed check (each with the request the client sent and the gateway's answer),
// the first one first, and exits 1.
//
// The TS client resolves 2xx answers to a ClientResponse ({statusCode, response}) and throws one
// ({statusCode, exception}) for any other status; `call()` (tests/node/harness.mjs) turns both
// into one value.

import { createHmac, randomBytes, randomUUID } from 'node:crypto';
import {
  call, check, claimsOf, describe, env, expectStatus, finish, fusionAuthClient, json, section,
} from './harness.mjs';

const baseUrl = env('GATEHOUSE_URL');
const apiKey = env('GATEHOUSE_API_KEY');
const appId = env('GATEHOUSE_APP_ID');

const client = fusionAuthClient(apiKey, baseUrl);
const anonymous = fusionAuthClient(null, baseUrl);
const secret = randomBytes(32).toString('base64url');
const now = Math.floor(Date.now() / 1000);

const b64url = (data) => Buffer.from(data).toString('base64url');

function hs256(key, kid, claims) {
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT', kid }));
  const payload = b64url(JSON.stringify(claims));
  const signature = createHmac('sha256', key).update(`${header}.${payload}`).digest('base64url');
  return `${header}.${payload}.${signature}`;
}

function token(sub, email, extra = {}) {
  const claims = { sub, iat: now, exp: now + 600 };
  if (email) claims.email = email;
  return hs256(secret, 'node', { ...claims, ...extra });
}

// Shared between sections.
let idp;
let pendingIdp;
let userId;
let pendingId;
let lambdaId;

// --- providers -------------------------------------------------------------------------------
await section('providers', async () => {
  // createIdentityProvider(identityProviderId, request): the id is "(Optional)"; null leaves the
  // path segment out (DefaultRESTClient.withUriSegment skips null and undefined).
  expectStatus('createIdentityProvider without an API key',
    await call(anonymous.createIdentityProvider(null, { identityProvider: {} })), 401);
  let r = expectStatus('createIdentityProvider (invalid)',
    await call(client.createIdentityProvider(null, { identityProvider: { type: 'ExternalJWT' } })), 400);
  check('validation names the missing name',
    'identityProvider.name' in ((r.exception || {}).fieldErrors || {}), describe(r));

  r = expectStatus('createIdentityProvider', await call(client.createIdentityProvider(null, { identityProvider: {
    name: 'Node ADFS', type: 'ExternalJWT', enabled: true, headerKeyParameter: 'kid',
    keys: { node: secret }, linkingStrategy: 'LinkByEmail',
    claimMap: { given_name: 'firstName' },
    applicationConfiguration: { [appId]: { enabled: true, createRegistration: true } },
    oauth2: { token_endpoint: 'https://node.example/token' },
  } })), 200);
  idp = r.response.identityProvider.id;
  check('the secret is not returned', r.response.identityProvider.keys.node === '********', describe(r));

  pendingIdp = randomUUID();
  r = expectStatus('createIdentityProvider(id)', await call(client.createIdentityProvider(pendingIdp, { identityProvider: {
    name: 'Node pending', type: 'ExternalJWT', enabled: true, headerKeyParameter: 'kid',
    keys: { node: secret }, linkingStrategy: 'CreatePendingLink',
    applicationConfiguration: { [appId]: { enabled: true } },
  } })), 200);
  check('the given id is used', r.response.identityProvider.id === pendingIdp, describe(r));

  r = expectStatus('retrieveIdentityProvider', await call(client.retrieveIdentityProvider(idp)), 200);
  check('retrieveIdentityProvider name', r.response.identityProvider.name === 'Node ADFS', describe(r));
  r = expectStatus('retrieveIdentityProviders', await call(client.retrieveIdentityProviders()), 200);
  check('retrieveIdentityProviders lists both', r.response.identityProviders.length === 2, describe(r));
  r = expectStatus('retrieveIdentityProviderByType',
    await call(client.retrieveIdentityProviderByType('ExternalJWT')), 200);
  check('by type lists both', r.response.identityProviders.length === 2, describe(r));

  r = expectStatus('patchIdentityProvider', await call(client.patchIdentityProvider(idp, { identityProvider: {
    debug: true, domains: ['node.example'] } })), 200);
  let p = r.response.identityProvider;
  check('patch merged', p.debug === true && json(p.domains) === json(['node.example'])
    && json(p.claimMap) === json({ given_name: 'firstName' }), describe(r));
  r = expectStatus('patchIdentityProvider appends arrays', await call(client.patchIdentityProvider(idp, {
    identityProvider: { domains: ['node2.example'] } })), 200);
  p = r.response.identityProvider;
  check('domains appended', json(p.domains) === json(['node.example', 'node2.example']), describe(r));

  const current = (await call(client.retrieveIdentityProvider(idp))).response;
  current.identityProvider.name = 'Node ADFS (updated)';
  r = expectStatus('updateIdentityProvider', await call(client.updateIdentityProvider(idp, current)), 200);
  check('updateIdentityProvider renamed', r.response.identityProvider.name === 'Node ADFS (updated)', describe(r));

  r = expectStatus('searchIdentityProviders', await call(client.searchIdentityProviders({ search: {
    name: 'node*', type: 'ExternalJWT', applicationId: appId, orderBy: 'name DESC', numberOfResults: 1 } })), 200);
  const found = r.response.identityProviders;
  check('search pages and orders', r.response.total === 2 && found.length === 1
    && found[0].name === 'Node pending', describe(r));
  check('search redacts secrets', found[0].keys.node === '********', describe(r));
  r = expectStatus('searchIdentityProviders (start row)', await call(client.searchIdentityProviders({ search: {
    name: 'ADFS', startRow: 0 } })), 200);
  check('search by part of the name', json(r.response.identityProviders.map((x) => x.id)) === json([idp]), describe(r));
  expectStatus('searchIdentityProviders (bad orderBy)', await call(client.searchIdentityProviders({ search: {
    orderBy: 'keys ASC' } })), 400);

  r = expectStatus('lookupIdentityProvider', await call(client.lookupIdentityProvider('ann@node.example')), 200);
  check('lookup finds the provider', r.response.identityProvider.id === idp, describe(r));
  expectStatus('lookupIdentityProvider (unmanaged)', await call(client.lookupIdentityProvider('nobody.example')), 404);
});

// --- login and reconcile ---------------------------------------------------------------------
await section('login and reconcile', async () => {
  let r = expectStatus('identityProviderLogin', await call(anonymous.identityProviderLogin({
    applicationId: appId, identityProviderId: idp, ipAddress: '192.0.2.10',
    encodedJWT: token('node-ext-1', 'ann@node.example', { given_name: 'Ann' }),
    metaData: { device: { name: 'node', type: 'SERVER' } },
  })), 200);
  const login = r.response;
  userId = login.user.id;
  check('login answers the user', login.user.email === 'ann@node.example' && login.user.firstName === 'Ann', describe(r));
  check('login answers tokens', Boolean(login.token && login.refreshToken && login.refreshTokenId), describe(r));
  const claims = claimsOf(login.token);
  check('the token is FEDERATED_JWT', claims.authenticationType === 'FEDERATED_JWT', json(claims));
  check("the token's sid is the refresh token id", claims.sid === login.refreshTokenId, json(claims));
  check('the user is registered with the default role',
    json(login.user.registrations[0].roles) === json(['user']), json(login.user));

  expectStatus('identityProviderLogin (bad signature)', await call(anonymous.identityProviderLogin({
    applicationId: appId, identityProviderId: idp,
    encodedJWT: hs256('wrong-secret', 'node', { sub: 'x', exp: now + 60 }),
  })), 401);
  expectStatus('identityProviderLogin (noLink, no link)', await call(anonymous.identityProviderLogin({
    applicationId: appId, identityProviderId: idp, noLink: true,
    encodedJWT: token('node-unlinked', 'zed@node.example'),
  })), 404);

  r = expectStatus('reconcileJWT', await call(anonymous.reconcileJWT({
    applicationId: appId, identityProviderId: idp,
    data: { token: token('node-ext-1', 'ann@node.example') },
  })), 200);
  check('reconcileJWT finds the same user', r.response.user.id === userId, describe(r));
  r = expectStatus('reconcileJWT (noJWT)', await call(anonymous.reconcileJWT({
    applicationId: appId, identityProviderId: idp, noJWT: true,
    encodedJWT: token('node-ext-1', 'ann@node.example'),
  })), 200);
  check('noJWT issues no token', !('token' in r.response), describe(r));

  r = expectStatus('retrieveUser', await call(client.retrieveUser(userId)), 200);
  check('retrieveUser', r.response.user.email === 'ann@node.example', describe(r));
  r = expectStatus('retrieveUserByEmail', await call(client.retrieveUserByEmail('ann@node.example')), 200);
  check('retrieveUserByEmail', r.response.user.id === userId, describe(r));
});

// --- links -----------------------------------------------------------------------------------
await section('links', async () => {
  let r = expectStatus('createUserLink', await call(client.createUserLink({ identityProviderLink: {
    identityProviderId: idp, identityProviderUserId: 'node-ext-2', userId,
    displayName: 'second identity' } })), 200);
  check('createUserLink', r.response.identityProviderLink.identityProviderUserId === 'node-ext-2', describe(r));
  r = expectStatus('retrieveUserLink', await call(client.retrieveUserLink(idp, 'node-ext-2', userId)), 200);
  check('retrieveUserLink', r.response.identityProviderLink.displayName === 'second identity', describe(r));
  // The Python client's retrieve_user_links_by_user_id(user_id) leaves the optional provider out;
  // in the TS client it is the first argument, so the port passes null
  // (?identityProviderId=null&userId=U).
  r = expectStatus('retrieveUserLinksByUserId(null, userId) [identityProviderId=null&userId=U]',
    await call(client.retrieveUserLinksByUserId(null, userId)), 200);
  check('two links', r.response && (r.response.identityProviderLinks || []).length === 2, describe(r));
  r = expectStatus('retrieveUserLinksByUserId(idp, userId)', await call(client.retrieveUserLinksByUserId(idp, userId)), 200);
  check('two links to the provider', (r.response.identityProviderLinks || []).length === 2, describe(r));

  r = expectStatus('identityProviderLogin (pending)', await call(anonymous.identityProviderLogin({
    applicationId: appId, identityProviderId: pendingIdp,
    encodedJWT: token('node-pending', 'ann@node.example'),
  })), 200);
  pendingId = r.response.pendingIdPLinkId;
  check('a pending link id', Boolean(pendingId), describe(r));
  r = expectStatus('retrievePendingLink', await call(client.retrievePendingLink(pendingId, userId)), 200);
  check('retrievePendingLink', r.response.pendingIdPLink.identityProviderUserId === 'node-pending'
    && r.response.linkCount === 0, describe(r));

  // TS-client shape: retrievePendingLink's userId is documented "The optional userId"; left out,
  // it is sent as ?userId=undefined. Expected: the pending link, as without the parameter.
  r = expectStatus('retrievePendingLink(pendingLinkId) [userId=undefined]',
    await call(client.retrievePendingLink(pendingId)), 200);
  check('retrievePendingLink(pendingLinkId): the pending link',
    r.response && r.response.pendingIdPLink && r.response.pendingIdPLink.identityProviderUserId === 'node-pending',
    describe(r));

  r = expectStatus('createUserLink (pending)', await call(client.createUserLink({
    pendingIdPLinkId: pendingId, identityProviderLink: { userId } })), 200);
  check('the pending link was completed', r.response.identityProviderLink.identityProviderId === pendingIdp, describe(r));
  r = expectStatus('identityProviderLogin (after linking)', await call(anonymous.identityProviderLogin({
    applicationId: appId, identityProviderId: pendingIdp,
    encodedJWT: token('node-pending', 'ann@node.example'),
  })), 200);
  check('the linked user logs in', r.response.user.id === userId, describe(r));

  expectStatus('deleteUserLink', await call(client.deleteUserLink(idp, 'node-ext-2', userId)), 200);
  expectStatus('retrieveUserLink (deleted)', await call(client.retrieveUserLink(idp, 'node-ext-2', userId)), 404);
});

// --- TS-client call shapes -------------------------------------------------------------------
// The TS client puts every parameter it was given in the query string, so an optional argument
// left out or passed as null arrives as the text `undefined` or `null`
// (DefaultRESTClient.getQueryString). A FusionAuth user expects each call to behave as if the
// argument were not given. At this point the user has two links: one to each provider.
await section('TS-client call shapes', async () => {
  // retrieveUserLinksByUserId(identityProviderId, userId): identityProviderId is documented
  // "(Optional) ... Specify this value to reduce the links returned to those for a particular IdP".
  for (const [what, provider] of [
    ['retrieveUserLinksByUserId(undefined, userId) [identityProviderId=undefined&userId=U]', undefined],
    ['retrieveUserLinksByUserId(null, userId) [identityProviderId=null&userId=U]', null],
  ]) {
    const r = expectStatus(what, await call(client.retrieveUserLinksByUserId(provider, userId)), 200);
    const links = (r.response && r.response.identityProviderLinks) || [];
    check(`${what}: all the user's links (both providers)`,
      json(links.map((l) => l.identityProviderId).sort()) === json([idp, pendingIdp].sort()), describe(r));
  }

  // retrieveIdentityProvider(null): "Retrieves the identity provider for the given Id or all the
  // identity providers if the Id is null" (GET /api/identity-provider: withUriSegment skips null).
  let r = expectStatus('retrieveIdentityProvider(null) [GET /api/identity-provider]',
    await call(client.retrieveIdentityProvider(null)), 200);
  check('retrieveIdentityProvider(null): all the providers',
    ((r.response && r.response.identityProviders) || []).length === 2, describe(r));

  // createIdentityProvider(undefined, request): the optional id left out entirely.
  r = expectStatus('createIdentityProvider(undefined, request)', await call(client.createIdentityProvider(undefined, {
    identityProvider: { name: 'Third provider', type: 'ExternalJWT', enabled: false, headerKeyParameter: 'kid',
      keys: { node: secret } } })), 200);
  const third = r.response && r.response.identityProvider && r.response.identityProvider.id;
  check('createIdentityProvider(undefined, request): a generated id', Boolean(third), describe(r));

  // lookupIdentityProviderByTenantId(domain, tenantId): tenantId "If provided, the API searches for
  // an identity provider scoped to the corresponding tenant"; null sends ?domain=D&tenantId=null
  // and should find the global provider, as lookupIdentityProvider(domain) does.
  r = expectStatus('lookupIdentityProviderByTenantId(domain, null) [domain=D&tenantId=null]',
    await call(client.lookupIdentityProviderByTenantId('ann@node.example', null)), 200);
  check('lookupIdentityProviderByTenantId(domain, null): the provider',
    r.response && r.response.identityProvider && r.response.identityProvider.id === idp, describe(r));

  // searchIdentityProvidersByParameters(applicationId, name, numberOfResults, orderBy, startRow,
  // tenantId, type): GET /api/identity-provider/search, every parameter "(Optional)"; each one
  // not given is sent as `undefined`. Expected: the same answers as the POST search above.
  r = expectStatus('searchIdentityProvidersByParameters(appId, "node*", 1, "name DESC", undefined, undefined, "ExternalJWT")',
    await call(client.searchIdentityProvidersByParameters(appId, 'node*', 1, 'name DESC', undefined, undefined, 'ExternalJWT')), 200);
  let found = (r.response && r.response.identityProviders) || [];
  check('searchIdentityProvidersByParameters: pages and orders',
    r.response && r.response.total === 2 && found.length === 1 && found[0].name === 'Node pending', describe(r));
  r = expectStatus('searchIdentityProvidersByParameters(undefined, "ADFS") [all other parameters undefined]',
    await call(client.searchIdentityProvidersByParameters(undefined, 'ADFS')), 200);
  found = (r.response && r.response.identityProviders) || [];
  check('searchIdentityProvidersByParameters(undefined, "ADFS"): by part of the name',
    json(found.map((x) => x.id)) === json([idp]), describe(r));
  r = expectStatus('searchIdentityProvidersByParameters() [every parameter undefined]',
    await call(client.searchIdentityProvidersByParameters()), 200);
  found = (r.response && r.response.identityProviders) || [];
  check('searchIdentityProvidersByParameters(): every provider',
    r.response && r.response.total === (third ? 3 : 2) && found.length === (third ? 3 : 2), describe(r));

  if (third) {
    expectStatus('deleteIdentityProvider (third)', await call(client.deleteIdentityProvider(third)), 200);
  }
});

// --- lambdas and debug events ----------------------------------------------------------------
await section('lambdas and debug events', async () => {
  // createLambda(lambdaId, request): the id is "(Optional)".
  let r = expectStatus('createLambda', await call(client.createLambda(null, { lambda: {
    name: 'node reconcile', type: 'ExternalJWTReconcile',
    body: 'function reconcile(user, registration, jwt) { user.data = user.data || {}; user.data.node = true; }' } })), 200);
  lambdaId = r.response.lambda.id;
  expectStatus('retrieveLambda', await call(client.retrieveLambda(lambdaId)), 200);
  r = expectStatus('retrieveLambdasByType', await call(client.retrieveLambdasByType('ExternalJWTReconcile')), 200);
  check('one lambda', r.response.lambdas.length === 1, describe(r));
  expectStatus('patchIdentityProvider (lambda)', await call(client.patchIdentityProvider(idp, {
    identityProvider: { lambdaConfiguration: { reconcileId: lambdaId } } })), 200);
  r = expectStatus('reconcileJWT (lambda)', await call(anonymous.reconcileJWT({
    applicationId: appId, identityProviderId: idp,
    data: { token: token('node-ext-1', 'ann@node.example') } })), 200);
  check('the lambda ran', (r.response.user.data || {}).node === true, json(r.response.user));

  r = expectStatus('searchEventLogs', await call(client.searchEventLogs({ search: {
    message: 'External JWT login', type: 'Debug', numberOfResults: 5 } })), 200);
  check('debug events were written', r.response.total >= 1, describe(r));
  const eventId = r.response.eventLogs[0].id;
  expectStatus('retrieveEventLog', await call(client.retrieveEventLog(eventId)), 200);
});

// --- deletes ---------------------------------------------------------------------------------
await section('deletes', async () => {
  expectStatus('deleteLambda (in use)', await call(client.deleteLambda(lambdaId)), 400);
  expectStatus('deleteIdentityProvider', await call(client.deleteIdentityProvider(idp)), 200);
  expectStatus('retrieveIdentityProvider (deleted)', await call(client.retrieveIdentityProvider(idp)), 404);
  expectStatus('deleteLambda', await call(client.deleteLambda(lambdaId)), 200);
  expectStatus('deleteIdentityProvider (pending)', await call(client.deleteIdentityProvider(pendingIdp)), 200);
  const r = expectStatus('retrieveUserLinksByUserId(null, userId) (after deletes)',
    await call(client.retrieveUserLinksByUserId(null, userId)), 200);
  check('links went with their providers', json(r.response && r.response.identityProviderLinks) === '[]', describe(r));
});

finish();
