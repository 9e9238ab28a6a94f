// A real OpenID Provider for the browser-login tests: the npm package `oidc-provider` (a
// certified implementation), with its development login form (any login, any password) and
// consent screen. Usage: node provider.mjs PORT CLIENT_SECRET REDIRECT_URI POST_LOGOUT_URI
// Prints "ready" once listening on http://127.0.0.1:PORT (the issuer). The package is found in
// OIDC_PROVIDER_DIR (scripts/bootstrap --tests installs it in target/oidc-provider).
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const require = createRequire(join(process.env.OIDC_PROVIDER_DIR, 'package.json'));
const { default: Provider } = await import(pathToFileURL(require.resolve('oidc-provider')).href);

const [port, secret, redirectUri, postLogoutUri] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: [{
    client_id: 'gatehouse',
    client_secret: secret,
    redirect_uris: [redirectUri],
    post_logout_redirect_uris: [postLogoutUri],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  pkce: { required: () => true },
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  scopes: ['openid', 'email', 'offline_access'],
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, email: `${id}@example.com`, email_verified: true }),
  }),
  features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
});
provider.proxy = false;
provider.listen(Number(port), '127.0.0.1', () => console.log('ready'));
