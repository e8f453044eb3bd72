// A JWT issuer written with Node's own crypto, for proxy/auth_node_test.go:
// a JOSE implementation unrelated to the gateway's (golang-jwt) and to the
// Go tests' (go-jose). It serves its public keys as a JWK Set on
// 127.0.0.1, prints one JSON line {"jwks": URL, "tokens": {...}} and runs
// until its stdin closes.
import http from 'node:http';
import crypto from 'node:crypto';

const iss = process.argv[2];
const aud = process.argv[3];
const keys = {
  RS256: crypto.generateKeyPairSync('rsa', {modulusLength: 2048}),
  ES256: crypto.generateKeyPairSync('ec', {namedCurve: 'P-256'}),
  EdDSA: crypto.generateKeyPairSync('ed25519'),
};
const secret = crypto.randomBytes(32);
const jwks = {keys: Object.entries(keys).map(([alg, k]) =>
  ({...k.publicKey.export({format: 'jwk'}), kid: 'node-' + alg, alg, use: 'sig'}))};
const b64 = (x) => Buffer.from(typeof x === 'string' ? x : JSON.stringify(x)).toString('base64url');

function sign(alg, claims) {
  const head = b64({alg, typ: 'JWT', ...(alg === 'HS256' ? {} : {kid: 'node-' + alg})});
  const input = head + '.' + b64(claims);
  const data = Buffer.from(input);
  let sig;
  switch (alg) {
    case 'RS256': sig = crypto.sign('sha256', data, keys.RS256.privateKey); break;
    case 'ES256': sig = crypto.sign('sha256', data, {key: keys.ES256.privateKey, dsaEncoding: 'ieee-p1363'}); break;
    case 'EdDSA': sig = crypto.sign(null, data, keys.EdDSA.privateKey); break;
    case 'HS256': sig = crypto.createHmac('sha256', secret).update(data).digest(); break;
  }
  return input + '.' + sig.toString('base64url');
}

const srv = http.createServer((req, res) => {
  res.setHeader('content-type', 'application/jwk-set+json');
  res.end(JSON.stringify(jwks));
});
srv.listen(0, '127.0.0.1', () => {
  const now = Math.floor(Date.now() / 1000);
  const claims = (sub, exp) => ({iss, aud: [aud], sub, iat: now, exp});
  const tokens = {};
  for (const alg of ['RS256', 'ES256', 'EdDSA', 'HS256']) tokens[alg] = sign(alg, claims('node-' + alg, now + 3600));
  tokens.expired = sign('ES256', claims('late', now - 3600));
  tokens.wrongAud = sign('RS256', {...claims('x', now + 3600), aud: 'elsewhere'});
  process.stdout.write(JSON.stringify({
    jwks: `http://127.0.0.1:${srv.address().port}/jwks.json`,
    secret: secret.toString('base64'),
    tokens,
  }) + '\n');
});
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
