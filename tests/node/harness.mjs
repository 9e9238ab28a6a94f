// Shared by tests/node/jwt_client.mjs and tests/node/identity_provider_client.mjs: loads
// FusionAuth's official npm client (@fusionauth/typescript-client 1.69.0, installed by
// scripts/bootstrap in target/node-clients), records every request it sends and the answer it
// got (for failure messages), and collects failed checks.
//
// The client is used unchanged. Only its documented extension point `clientBuilder` is set, to a
// builder whose REST client is the client's own DefaultRESTClient with `go()` wrapped: the URL,
// method, headers and body are built by the client exactly as shipped, and its own response
// handlers parse the answer; the wrapper only remembers what went out and what came back
// (ClientResponse has no headers, and the JWT checks look at Set-Cookie).

import { appendFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const packageDir = path.join(repo, 'target/node-clients/node_modules/@fusionauth/typescript-client');
const require = createRequire(import.meta.url);

const pkg = require(path.join(packageDir, 'build/index.js'));
const DefaultRESTClient = require(path.join(packageDir, 'build/src/DefaultRESTClient.js')).default;
const ClientResponse = require(path.join(packageDir, 'build/src/ClientResponse.js')).default;
const { version } = require(path.join(packageDir, 'package.json'));
if (version !== '1.69.0') {
  console.error(`FAILED: expected @fusionauth/typescript-client 1.69.0 in ${packageDir}, found ${version}`);
  process.exit(1);
}

/** The last request the client sent and what it got back. */
let last = null;

// Opt-in: when GATEHOUSE_RECORD_EXCHANGES names a file, every exchange is appended to it as one
// JSON line (e.g. to check the answers against FusionAuth's OpenAPI schemas). Unset in CI.
const recordFile = process.env.GATEHOUSE_RECORD_EXCHANGES || null;

class RecordingRESTClient extends DefaultRESTClient {
  async go() {
    const url = new URL(this.getFullUrl());
    const exchange = {
      method: this.method,
      target: url.pathname + url.search,
      body: this.body === undefined ? null : String(this.body),
      status: null,
      text: null,
      setCookies: [],
    };
    last = exchange;
    // The client's own handlers, given the answer's status, headers and text.
    const record = (handler) => async (response) => {
      exchange.status = response.status;
      exchange.setCookies = response.headers.raw()['set-cookie'] || [];
      exchange.text = await response.text();
      if (recordFile) {
        appendFileSync(recordFile, `${JSON.stringify({
          method: exchange.method,
          path: url.pathname,
          query: url.search.replace(/^\?/, ''),
          requestBody: exchange.body,
          status: response.status,
          contentType: response.headers.get('content-type'),
          responseBody: exchange.text,
        })}\n`);
      }
      return handler({
        status: response.status,
        headers: response.headers,
        json: async () => JSON.parse(exchange.text),
      });
    };
    this.responseHandler = record(this.responseHandler);
    this.errorResponseHandler = record(this.errorResponseHandler);
    return super.go();
  }
}

const recordingBuilder = { build: (host) => new RecordingRESTClient(host) };

/** A FusionAuthClient (the package's own class) whose requests are recorded. */
export function fusionAuthClient(apiKey, host, tenantId) {
  const client = new pkg.FusionAuthClient(apiKey, host, tenantId);
  client.clientBuilder = recordingBuilder;
  return client;
}

export const FusionAuthClient = pkg.FusionAuthClient;

/**
 * Awaits a client call. The TS client resolves 2xx answers and THROWS a ClientResponse for the
 * rest; both come back here as {statusCode, response, exception, exchange}.
 */
export async function call(promise) {
  let result;
  try {
    result = await promise;
  } catch (error) {
    if (!(error instanceof ClientResponse)) throw error;
    result = error;
  }
  return {
    statusCode: result.statusCode,
    response: result.response,
    exception: result.exception,
    exchange: last,
  };
}

export const failures = [];

export function fail(message) {
  failures.push(message);
  console.error(`FAILED: ${message}`);
}

function shorten(text, limit = 600) {
  if (text === null || text === undefined) return String(text);
  return text.length > limit ? `${text.slice(0, limit)}…` : text;
}

/** The request and the answer, for a failure message. */
export function describe(r) {
  const x = r.exchange || {};
  const body = x.body === null ? '' : ` body ${shorten(x.body)}`;
  const error = r.exception instanceof Error ? ` (${r.exception.message})` : '';
  return `request ${x.method} ${x.target}${body} -> status ${r.statusCode}, body ${shorten(x.text)}${error}`;
}

/** Records a failure unless `r` has `status`; returns `r` either way. */
export function expectStatus(what, r, status) {
  if (r.statusCode !== status) fail(`${what}: expected status ${status}; ${describe(r)}`);
  return r;
}

/** Records a failure unless `condition` holds. */
export function check(what, condition, detail = '') {
  if (!condition) fail(`${what} ${detail}`.trim());
}

export function env(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`FAILED: environment variable ${name} is not set`);
    process.exit(1);
  }
  return value;
}

export function claimsOf(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'));
}

export function fieldErrorCode(r, field) {
  const errors = r.exception && !(r.exception instanceof Error) ? r.exception : {};
  const items = (errors.fieldErrors || {})[field] || [{}];
  return items[0].code;
}

export function json(value) {
  return JSON.stringify(value);
}

/**
 * Runs one group of checks. A check that fails is recorded and the group goes on; an exception
 * (e.g. a field missing from an answer that a failed check already reported) ends the group,
 * recorded as a failure, and the next group runs.
 */
export async function section(name, body) {
  try {
    await body();
  } catch (error) {
    fail(`[${name}] stopped by ${error && error.stack ? error.stack : error}; last ${last ? describe({ exchange: last, statusCode: last.status }) : 'no request'}`);
  }
}

/** Prints every failure (the first one first) and exits 1, or prints `all checks passed`. */
export function finish() {
  if (failures.length > 0) {
    console.error(`\n${failures.length} check(s) failed; the first: ${failures[0]}`);
    process.exit(1);
  }
  console.log('all checks passed');
}
