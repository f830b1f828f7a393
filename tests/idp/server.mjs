// A real OpenID provider (oidc-provider 9) for kms-proxy's end-to-end tests. Started by the
// test harness on 127.0.0.1; it prints "idp listening on http://127.0.0.1:PORT" when ready.
//
// Environment:
//   IDP_PORT       port to listen on (0 or unset: any free port)
//   IDP_KEY_FILE   PKCS#8 PEM RSA private key to sign with (unset: a fresh key each start)
//   IDP_KID        key id of that key (default: its JWK thumbprint)
//   IDP_AUDIENCE   audience of the JWT access tokens (default https://kms.local)
//
// Clients:
//   kms-machine / machine-secret   client_credentials, RS256 JWT access tokens
//   ckms (public, PKCE)            authorization code, redirect http://127.0.0.1/authorization
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';

import Provider from 'oidc-provider';

const port = Number(process.env.IDP_PORT || 0);
const audience = process.env.IDP_AUDIENCE || 'https://kms.local';

function signingKey() {
  const key = process.env.IDP_KEY_FILE
    ? crypto.createPrivateKey(fs.readFileSync(process.env.IDP_KEY_FILE))
    : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const jwk = key.export({ format: 'jwk' });
  const thumbprint = crypto
    .createHash('sha256')
    .update(JSON.stringify({ e: jwk.e, kty: jwk.kty, n: jwk.n }))
    .digest('base64url');
  return { ...jwk, kid: process.env.IDP_KID || thumbprint, use: 'sig', alg: 'RS256' };
}

const server = http.createServer();
server.listen(port, '127.0.0.1', () => {
  const actual = server.address().port;
  const issuer = `http://127.0.0.1:${actual}`;
  const key = signingKey();
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'kms-machine',
        client_secret: 'machine-secret',
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
      },
      {
        client_id: 'ckms',
        application_type: 'native',
        token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code'],
        response_types: ['code'],
        redirect_uris: ['http://localhost:17899/authorization'],
      },
    ],
    jwks: { keys: [key] },
    scopes: ['openid', 'email', 'kms'],
    claims: { openid: ['sub'], email: ['email', 'email_verified'] },
    features: {
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => audience,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'kms openid email',
          audience,
          accessTokenFormat: 'jwt',
          accessTokenTTL: 600,
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
    pkce: { required: () => true },
    // ID tokens carry the scope's claims (email) even when an access token is issued too.
    conformIdTokenClaims: false,
    async findAccount(_ctx, id) {
      return {
        accountId: id,
        async claims() {
          return { sub: id, email: `${id}@example.com`, email_verified: true };
        },
      };
    },
    async extraTokenClaims(_ctx, token) {
      const claims = { groups: ['kms-ops', 'auditors'] };
      if (token.accountId) claims.email = `${token.accountId}@example.com`;
      return claims;
    },
  });
  server.on('request', provider.callback());
  console.log(`idp kid ${key.kid}`);
  console.log(`idp listening on ${issuer}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    process.exit(0);
  });
}
