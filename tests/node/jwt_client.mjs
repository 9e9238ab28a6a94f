// Drives Gatehouse's JWT API with FusionAuth's official npm client
// (@fusionauth/typescript-client 1.69.0), unchanged: the port of tests/python/jwt_client.py,
// plus the call shapes only this client produces (see "TS-client call shapes" below).
//
// Run by tests/it/node_client.rs against a running gateway. Everything comes from the
// environment, as for the Python script:
//
//   GATEHOUSE_URL             base URL of the gateway, e.g. http://127.0.0.1:9011
//   GATEHOUSE_API_KEY         a global API key
//   GATEHOUSE_TENANT_API_KEY  an API key locked to GATEHOUSE_OTHER_TENANT_ID
//   GATEHOUSE_TENANT_ID       the tenant of the users
//   GATEHOUSE_OTHER_TENANT_ID another tenant
//   GATEHOUSE_APP_ID          the application the sessions are for
//   GATEHOUSE_OTHER_APP_ID    a second application (the "sso" user is registered to it)
//   GATEHOUSE_ISSUER          the tenant's issuer
//   GATEHOUSE_RSA_KID         the id of an RSA key (published)
//   GATEHOUSE_HMAC_KID        the id of an HMAC key (never published)
//   GATEHOUSE_SESSIONS        JSON: {name: {token, refreshToken, refreshTokenId, userId}} with the
//                             sessions of the Python script (main, second, sso, sso_other,
//                             carol, dave, erin, frank) and those of the TS-only checks (ts_*)
//
// Prints `all checks passed` when every check passes; otherwise prints every failed check (each
// with the request the client sent and the gateway's answer), the first one first, and exits 1.
//
// The TS client resolves 2xx answers to a ClientResponse ({statusCode, response}) and throws one
// ({statusCode, exception}) for any other status; `call()` (tests/node/harness.mjs) turns both
// into one value.

import { randomUUID } from 'node:crypto';
import {
  call, check, claimsOf, describe, env, expectStatus, fieldErrorCode, finish, fusionAuthClient,
  json, section,
} from './harness.mjs';

const baseUrl = env('GATEHOUSE_URL');
const apiKey = env('GATEHOUSE_API_KEY');
const tenantApiKey = env('GATEHOUSE_TENANT_API_KEY');
const tenantId = env('GATEHOUSE_TENANT_ID');
const otherTenantId = env('GATEHOUSE_OTHER_TENANT_ID');
const appId = env('GATEHOUSE_APP_ID');
const otherAppId = env('GATEHOUSE_OTHER_APP_ID');
const issuer = env('GATEHOUSE_ISSUER');
const rsaKid = env('GATEHOUSE_RSA_KID');
const hmacKid = env('GATEHOUSE_HMAC_KID');
const sessions = JSON.parse(env('GATEHOUSE_SESSIONS'));
const { main, second, sso, carol, dave, erin, frank } = sessions;
const ssoOther = sessions.sso_other;

const client = fusionAuthClient(apiKey, baseUrl);
const anonymous = fusionAuthClient(null, baseUrl);
const wrongKey = fusionAuthClient('not-the-api-key', baseUrl);
const locked = fusionAuthClient(tenantApiKey, baseUrl);
const owner = fusionAuthClient(`Bearer ${frank.token}`, baseUrl);

// Shared between sections.
let keys = {};
let refreshed = {};
let ssoRefresh;

const refreshFails = async (what, refreshToken) =>
  expectStatus(what, await call(anonymous.exchangeRefreshTokenForJWT({ refreshToken })), 400);

// --- public keys, JWKS, discovery ------------------------------------------------------------
await section('public keys', async () => {
  let r = expectStatus('retrieveJWTPublicKeys', await call(client.retrieveJWTPublicKeys()), 200);
  keys = r.response.publicKeys;
  check('retrieveJWTPublicKeys lists the RSA key', rsaKid in keys, json(Object.keys(keys)));
  check('retrieveJWTPublicKeys never lists the HMAC key', !(hmacKid in keys));
  for (const [kid, pem] of Object.entries(keys)) {
    check(`public key ${kid} is a PEM`, pem.startsWith('-----BEGIN PUBLIC KEY-----'), pem);
  }

  // The TS client sends ?kid= (FusionAuth's prose documents kid; the Python client sends keyId).
  r = expectStatus('retrieveJWTPublicKey(kid)', await call(client.retrieveJWTPublicKey(rsaKid)), 200);
  check('retrieveJWTPublicKey returns the key', r.response.publicKey === keys[rsaKid], describe(r));
  expectStatus('retrieveJWTPublicKey(HMAC kid)', await call(client.retrieveJWTPublicKey(hmacKid)), 404);
  expectStatus('retrieveJWTPublicKey(unknown)', await call(client.retrieveJWTPublicKey(randomUUID())), 404);
  r = expectStatus('retrieveJWTPublicKeyByApplicationId',
    await call(client.retrieveJWTPublicKeyByApplicationId(appId)), 200);
  check("the application's key is the tenant's RSA key", r.response.publicKey === keys[rsaKid], describe(r));
  expectStatus('retrieveJWTPublicKeyByApplicationId(unknown)',
    await call(client.retrieveJWTPublicKeyByApplicationId(randomUUID())), 404);

  r = expectStatus('retrieveJsonWebKeySet', await call(client.retrieveJsonWebKeySet()), 200);
  const kids = r.response.keys.map((k) => k.kid).sort();
  check('the JWKS lists the public keys', json(kids) === json(Object.keys(keys).sort()),
    `${json(kids)} vs ${json(Object.keys(keys).sort())}`);
  r = expectStatus('retrieveOpenIdConfiguration', await call(client.retrieveOpenIdConfiguration()), 200);
  check('discovery names the issuer', r.response.issuer === issuer, json(r.response));
  check('discovery points at the JWKS', String(r.response.jwks_uri).endsWith('/.well-known/jwks.json'),
    json(r.response));
});

// --- validate ----------------------------------------------------------------------------------
await section('validate', async () => {
  const r = expectStatus('validateJWT', await call(anonymous.validateJWT(main.token)), 200);
  const jwt = r.response.jwt;
  check('validateJWT returns the claims', jwt.sub === main.userId, json(jwt));
  check('validateJWT: applicationId', jwt.applicationId === appId, json(jwt));
  check('validateJWT: issuer', jwt.iss === issuer, json(jwt));
  expectStatus('validateJWT(garbage)', await call(anonymous.validateJWT('not.a.jwt')), 401);
});

// --- refresh -----------------------------------------------------------------------------------
await section('refresh', async () => {
  let r = expectStatus('exchangeRefreshTokenForJWT', await call(anonymous.exchangeRefreshTokenForJWT({
    refreshToken: main.refreshToken, token: main.token })), 200);
  refreshed = r.response;
  check('refresh: same refresh token (Reusable)', refreshed.refreshToken === main.refreshToken, describe(r));
  check('refresh: refreshTokenId', refreshed.refreshTokenId === main.refreshTokenId, describe(r));
  const claims = claimsOf(refreshed.token);
  check('refresh: authenticationType', claims.authenticationType === 'REFRESH_TOKEN', json(claims));
  check('refresh: sid', claims.sid === main.refreshTokenId, json(claims));
  const cookies = Object.fromEntries(r.exchange.setCookies.map((c) => {
    const pair = c.split(';')[0];
    const eq = pair.indexOf('=');
    return [pair.slice(0, eq).trim(), pair.slice(eq + 1).trim()];
  }));
  check('refresh: access_token cookie', cookies.access_token === refreshed.token, json(r.exchange.setCookies));
  check('refresh: refresh_token cookie', cookies.refresh_token === main.refreshToken, json(r.exchange.setCookies));
  expectStatus('validateJWT(refreshed)', await call(anonymous.validateJWT(refreshed.token)), 200);

  r = await refreshFails('exchangeRefreshTokenForJWT(unknown)', 'not-a-refresh-token');
  check('refresh(unknown): field error', fieldErrorCode(r, 'refreshToken') === '[invalid]refreshToken', describe(r));
  r = expectStatus('exchangeRefreshTokenForJWT(missing)', await call(anonymous.exchangeRefreshTokenForJWT({})), 400);
  check('refresh(missing): field error', fieldErrorCode(r, 'refreshToken') === '[blank]refreshToken', describe(r));
});

// --- retrieve ----------------------------------------------------------------------------------
await section('retrieve', async () => {
  let r = expectStatus('retrieveRefreshTokenById', await call(client.retrieveRefreshTokenById(main.refreshTokenId)), 200);
  const token = r.response.refreshToken;
  check('retrieve: id', token.id === main.refreshTokenId, json(token));
  check('retrieve: userId', token.userId === main.userId, json(token));
  check('retrieve: applicationId', token.applicationId === appId, json(token));
  check('retrieve: token', token.token === main.refreshToken, json(token));
  check('retrieve: tenantId', token.tenantId === tenantId, json(token));
  check('retrieve: startInstant', Number.isInteger(token.startInstant), json(token));
  check('retrieve: last access recorded', 'lastAccessedInstant' in ((token.metaData || {}).device || {}), json(token));
  expectStatus('retrieveRefreshTokenById(unknown)', await call(client.retrieveRefreshTokenById(randomUUID())), 404);
  expectStatus('retrieveRefreshTokenById(wrong key)',
    await call(wrongKey.retrieveRefreshTokenById(main.refreshTokenId)), 401);
  expectStatus('retrieveRefreshTokenById(tenant-locked key of another tenant)',
    await call(locked.retrieveRefreshTokenById(main.refreshTokenId)), 404);
  const scoped = fusionAuthClient(apiKey, baseUrl);
  scoped.setTenantId(otherTenantId);
  expectStatus('retrieveRefreshTokenById(X-FusionAuth-TenantId of another tenant)',
    await call(scoped.retrieveRefreshTokenById(main.refreshTokenId)), 404);

  r = expectStatus('retrieveRefreshTokens', await call(client.retrieveRefreshTokens(main.userId)), 200);
  const ids = r.response.refreshTokens.map((t) => t.id).sort();
  check("retrieveRefreshTokens lists the user's tokens",
    json(ids) === json([main.refreshTokenId, second.refreshTokenId].sort()), json(ids));
  r = expectStatus('retrieveRefreshTokens(tenant-locked key)', await call(locked.retrieveRefreshTokens(main.userId)), 200);
  check('a tenant-locked key sees no tokens of another tenant', json(r.response.refreshTokens) === '[]', describe(r));
  expectStatus('retrieveRefreshTokens(wrong key)', await call(wrongKey.retrieveRefreshTokens(main.userId)), 401);
});

// --- issue -------------------------------------------------------------------------------------
await section('issue', async () => {
  let r = expectStatus('issueJWT(registered, with refresh token)',
    await call(anonymous.issueJWT(otherAppId, sso.token, sso.refreshToken)), 200);
  const issued = claimsOf(r.response.token);
  check('issue: authenticationType', issued.authenticationType === 'JWT_SSO', json(issued));
  check('issue: applicationId', issued.applicationId === otherAppId, json(issued));
  check('issue: same exp', issued.exp === claimsOf(sso.token).exp, json(issued));
  ssoRefresh = r.response.refreshToken;
  check('issue: a refresh token for the target application', Boolean(ssoRefresh), describe(r));
  r = expectStatus('exchangeRefreshTokenForJWT(issued refresh token)',
    await call(anonymous.exchangeRefreshTokenForJWT({ refreshToken: ssoRefresh })), 200);
  check('the issued refresh token is for the target application',
    claimsOf(r.response.token).applicationId === otherAppId, describe(r));
  // TS-client shape: the optional refreshToken left out is sent as refreshToken=undefined.
  r = expectStatus('issueJWT(registered, no refresh token)', await call(anonymous.issueJWT(otherAppId, sso.token)), 200);
  check('issue without a refresh token returns none', r.response && !('refreshToken' in r.response), describe(r));
  r = expectStatus('issueJWT(not registered)', await call(anonymous.issueJWT(otherAppId, main.token)), 202);
  check('issue(not registered): no applicationId', !('applicationId' in claimsOf(r.response.token)), describe(r));
  expectStatus('issueJWT(garbage token)', await call(anonymous.issueJWT(appId, 'not.a.jwt')), 401);
});

// --- vend --------------------------------------------------------------------------------------
await section('vend', async () => {
  let r = expectStatus('vendJWT', await call(client.vendJWT({
    claims: { foo: 'bar', exp: 1, iat: 2 }, timeToLiveInSeconds: 60 })), 200);
  const vended = r.response.token;
  const claims = claimsOf(vended);
  check('vend: claims kept', claims.foo === 'bar', json(claims));
  check('vend: exp/iat set by the server', claims.exp - claims.iat === 60, json(claims));
  check('vend: issuer', claims.iss === issuer, json(claims));
  r = expectStatus('validateJWT(vended)', await call(anonymous.validateJWT(vended)), 200);
  check('validate(vended): claims', r.response.jwt.foo === 'bar', describe(r));
  r = expectStatus('vendJWT(ttl 0)', await call(client.vendJWT({ timeToLiveInSeconds: 0 })), 400);
  check('vend(ttl 0): field error', fieldErrorCode(r, 'timeToLiveInSeconds') === '[invalid]timeToLiveInSeconds', describe(r));
  expectStatus('vendJWT(keyId)', await call(client.vendJWT({ keyId: rsaKid, claims: { a: 1 } })), 200);
  r = expectStatus('vendJWT(unknown keyId)', await call(client.vendJWT({ keyId: randomUUID() })), 400);
  check('vend(unknown keyId): field error', fieldErrorCode(r, 'keyId') === '[invalid]keyId', describe(r));
  expectStatus('vendJWT(wrong key)', await call(wrongKey.vendJWT({})), 401);
  r = expectStatus('vendJWT(tenant-locked key)', await call(locked.vendJWT({ claims: { a: 1 } })), 200);
  check("vend(tenant-locked key): its tenant's issuer", claimsOf(r.response.token).iss !== issuer, describe(r));
});

// --- revoke ------------------------------------------------------------------------------------
await section('revoke', async () => {
  // by id
  expectStatus('revokeRefreshTokenById', await call(client.revokeRefreshTokenById(second.refreshTokenId)), 200);
  expectStatus('retrieve after revokeRefreshTokenById',
    await call(client.retrieveRefreshTokenById(second.refreshTokenId)), 404);
  await refreshFails('refresh after revokeRefreshTokenById', second.refreshToken);
  expectStatus('validate after revokeRefreshTokenById', await call(anonymous.validateJWT(second.token)), 401);
  expectStatus('revokeRefreshTokenById(unknown)', await call(client.revokeRefreshTokenById(randomUUID())), 404);

  // by value: revokeRefreshToken(token), the client's first documented usage; it sends
  // ?token=T&userId=undefined&applicationId=undefined.
  expectStatus('revokeRefreshToken(token)', await call(client.revokeRefreshToken(main.refreshToken)), 200);
  await refreshFails('refresh after revokeRefreshToken(token)', main.refreshToken);
  expectStatus('validate after revokeRefreshToken(token)', await call(anonymous.validateJWT(main.token)), 401);
  expectStatus('validate(refreshed) after revokeRefreshToken(token)',
    await call(anonymous.validateJWT(refreshed.token)), 401);
  expectStatus('revokeRefreshTokenByToken', await call(client.revokeRefreshTokenByToken(carol.refreshToken)), 200);
  await refreshFails('refresh after revokeRefreshTokenByToken', carol.refreshToken);

  // by user: revokeRefreshToken(null, userId) (?token=null&userId=U&applicationId=undefined)
  expectStatus('revokeRefreshToken(null, userId)', await call(client.revokeRefreshToken(null, dave.userId)), 200);
  let r = expectStatus('retrieveRefreshTokens after revoke by user', await call(client.retrieveRefreshTokens(dave.userId)), 200);
  check('no tokens left for the user', json(r.response && r.response.refreshTokens) === '[]', describe(r));
  expectStatus('validate after revoke by user', await call(anonymous.validateJWT(dave.token)), 401);

  // by user and application
  expectStatus('revokeRefreshTokensByUserIdForApplication',
    await call(client.revokeRefreshTokensByUserIdForApplication(sso.userId, appId)), 200);
  expectStatus("the sso user's token for the application is gone",
    await call(client.retrieveRefreshTokenById(sso.refreshTokenId)), 404);
  expectStatus("the sso user's token for the other application is kept",
    await call(client.retrieveRefreshTokenById(ssoOther.refreshTokenId)), 200);

  // with a JSON body
  expectStatus('revokeRefreshTokensWithRequest(token)',
    await call(client.revokeRefreshTokensWithRequest({ token: erin.refreshToken })), 200);
  await refreshFails('refresh after revokeRefreshTokensWithRequest', erin.refreshToken);

  // no parameters: revokeRefreshToken() sends token=undefined&userId=undefined&applicationId=undefined
  r = expectStatus('revokeRefreshToken()', await call(client.revokeRefreshToken()), 400);
  check('revoke(): Errors JSON', r.exception && !(r.exception instanceof Error) && Object.keys(r.exception).length > 0,
    describe(r));
  // wrong key, tenant-locked key of another tenant
  expectStatus('revokeRefreshToken(null, userId) (wrong key)',
    await call(wrongKey.revokeRefreshToken(null, frank.userId)), 401);
  expectStatus('revokeRefreshToken(null, userId) (tenant-locked key)',
    await call(locked.revokeRefreshToken(null, frank.userId)), 404);
  // the owner's JWT, by id
  expectStatus("revokeRefreshTokenById(someone else's token, JWT)",
    await call(owner.revokeRefreshTokenById(ssoOther.refreshTokenId)), 401);
});

// --- TS-client call shapes ---------------------------------------------------------------------
// The TS client puts every parameter it was given in the query string, so an argument left out
// or passed as null arrives as the text `undefined` or `null` (DefaultRESTClient.getQueryString:
// encodeURIComponent(undefined) is "undefined"). The client's doc comment for revokeRefreshToken
// shows exactly these usages:
//   revokeRefreshToken(token)                       delete a single refresh token
//   revokeRefreshToken(null, userId)                delete all refresh tokens of a user
//   revokeRefreshToken(null, userId, applicationId) ... of a user for one application
//   revokeRefreshToken(null, null, applicationId)   ... of an application (the last section)
// and issueJWT documents refreshToken as "(Optional)". A FusionAuth user expects each call to
// behave as if the null/undefined arguments were not given. Each check here uses sessions of
// its own (ts_*), so it shows what the shape alone does.
await section('TS-client call shapes', async () => {
  const s = sessions;

  // revokeRefreshToken(token): ?token=T&userId=undefined&applicationId=undefined revokes that one
  // token, and only it (the same user's other session stays).
  expectStatus('revokeRefreshToken(token) [token=T&userId=undefined&applicationId=undefined]',
    await call(client.revokeRefreshToken(s.ts_one.refreshToken)), 200);
  expectStatus('revokeRefreshToken(token): the token is gone',
    await call(client.retrieveRefreshTokenById(s.ts_one.refreshTokenId)), 404);
  await refreshFails('revokeRefreshToken(token): the token no longer refreshes', s.ts_one.refreshToken);
  expectStatus("revokeRefreshToken(token): the user's other token is kept",
    await call(client.retrieveRefreshTokenById(s.ts_one_b.refreshTokenId)), 200);

  // revokeRefreshToken(null, userId): ?token=null&userId=U&applicationId=undefined revokes every
  // token of the user, in every application.
  expectStatus('revokeRefreshToken(null, userId) [token=null&userId=U&applicationId=undefined]',
    await call(client.revokeRefreshToken(null, s.ts_user.userId)), 200);
  let r = expectStatus('revokeRefreshToken(null, userId): retrieveRefreshTokens',
    await call(client.retrieveRefreshTokens(s.ts_user.userId)), 200);
  check('revokeRefreshToken(null, userId): no tokens left for the user (both applications)',
    json(r.response && r.response.refreshTokens) === '[]', describe(r));
  expectStatus("revokeRefreshToken(null, userId): the user's token for the other application is gone",
    await call(client.retrieveRefreshTokenById(s.ts_user_other.refreshTokenId)), 404);
  expectStatus('revokeRefreshToken(null, userId): the access token is refused',
    await call(anonymous.validateJWT(s.ts_user.token)), 401);

  // The same with undefined for the token: revokeRefreshToken(undefined, userId).
  expectStatus('revokeRefreshToken(undefined, userId) [token=undefined&userId=U&applicationId=undefined]',
    await call(client.revokeRefreshToken(undefined, s.ts_user_undefined.userId)), 200);
  r = expectStatus('revokeRefreshToken(undefined, userId): retrieveRefreshTokens',
    await call(client.retrieveRefreshTokens(s.ts_user_undefined.userId)), 200);
  check('revokeRefreshToken(undefined, userId): no tokens left for the user',
    json(r.response && r.response.refreshTokens) === '[]', describe(r));

  // revokeRefreshToken(null, userId, applicationId): ?token=null&userId=U&applicationId=A revokes
  // the user's tokens for that application only.
  expectStatus('revokeRefreshToken(null, userId, applicationId) [token=null&userId=U&applicationId=A]',
    await call(client.revokeRefreshToken(null, s.ts_user_app.userId, appId)), 200);
  expectStatus("revokeRefreshToken(null, userId, applicationId): the user's token for the application is gone",
    await call(client.retrieveRefreshTokenById(s.ts_user_app.refreshTokenId)), 404);
  expectStatus("revokeRefreshToken(null, userId, applicationId): the user's token for the other application is kept",
    await call(client.retrieveRefreshTokenById(s.ts_user_app_other.refreshTokenId)), 200);
  expectStatus("revokeRefreshToken(null, userId, applicationId): another user's token for the application is kept",
    await call(client.retrieveRefreshTokenById(s.ts_bystander.refreshTokenId)), 200);

  // issueJWT(applicationId, jwt): ?applicationId=A&refreshToken=undefined is an issue without a
  // refresh token (200, a token, no refresh token); likewise issueJWT(applicationId, jwt, null).
  for (const [what, refreshToken] of [['issueJWT(applicationId, jwt) [refreshToken=undefined]', undefined],
    ['issueJWT(applicationId, jwt, null) [refreshToken=null]', null]]) {
    r = expectStatus(what, await call(anonymous.issueJWT(otherAppId, s.ts_issue.token, refreshToken)), 200);
    if (r.statusCode === 200) {
      check(`${what}: a token for the application`, claimsOf(r.response.token).applicationId === otherAppId, describe(r));
      check(`${what}: no refresh token`, !('refreshToken' in r.response), describe(r));
    }
  }
});

// --- by application (last: it revokes every token of the other application) -------------------
await section('revoke by application', async () => {
  // revokeRefreshToken(null, null, applicationId): ?token=null&userId=null&applicationId=A
  expectStatus('revokeRefreshToken(null, null, applicationId) [token=null&userId=null&applicationId=A]',
    await call(client.revokeRefreshToken(null, null, otherAppId)), 200);
  expectStatus('retrieve after revoke by application',
    await call(client.retrieveRefreshTokenById(ssoOther.refreshTokenId)), 404);
  await refreshFails('refresh after revoke by application', ssoRefresh);
  expectStatus('revokeRefreshTokensByApplicationId(unknown)',
    await call(client.revokeRefreshTokensByApplicationId(randomUUID())), 404);
  // TS-only: every other-application token went too, the main application's stayed.
  expectStatus('revoke by application: the ts_user_app token for the other application is gone',
    await call(client.retrieveRefreshTokenById(sessions.ts_user_app_other.refreshTokenId)), 404);
  expectStatus('revoke by application: tokens of the main application are kept',
    await call(client.retrieveRefreshTokenById(sessions.ts_bystander.refreshTokenId)), 200);

  expectStatus('revokeRefreshTokenById(own token, JWT)', await call(owner.revokeRefreshTokenById(frank.refreshTokenId)), 200);
  expectStatus('retrieve after revoke by the owner', await call(client.retrieveRefreshTokenById(frank.refreshTokenId)), 404);
});

finish();
