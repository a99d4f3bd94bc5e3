// Docker/OCI bearer tokens. Verification pins the key set (public keys of the configured
// certificate bundle or JWKS, or our own signing key) and never consults keys named by the token
// itself (jwk/jku/x5u/x5c headers are ignored), so a client cannot bring its own trust anchor.
import { X509Certificate, createPrivateKey, createPublicKey, generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import type { JWTPayload } from 'jose';

// jose is ~10 MiB of RSS; only token auth needs it, so it loads when a token is first signed or checked.
let joseModule: Promise<typeof import('jose')> | undefined;
const jose = () => (joseModule ??= import('jose'));
import { UserError } from '../../util/errors.js';
import type { Access } from './access.js';

export interface TokenClaims extends JWTPayload {
  access?: Access[];
}

function algorithmsFor(key: KeyObject): string[] {
  switch (key.asymmetricKeyType) {
    case 'rsa': return ['RS256', 'RS384', 'RS512'];
    case 'rsa-pss': return ['PS256', 'PS384', 'PS512'];
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      return curve === 'secp384r1' ? ['ES384'] : curve === 'secp521r1' ? ['ES512'] : ['ES256'];
    }
    case 'ed25519': return ['EdDSA', 'Ed25519'];
    default: return [];
  }
}

/** Loads every certificate or public key in a PEM bundle (distribution's rootcertbundle), or a JWKS JSON file. */
export async function loadKeySet(file: string): Promise<KeyObject[]> {
  const text = await fsp.readFile(file, 'utf8').catch(() => { throw new UserError(`token key bundle ${file} not found`); });
  const keys: KeyObject[] = [];
  if (text.trimStart().startsWith('{')) {
    const jwks = JSON.parse(text) as { keys?: Record<string, unknown>[] };
    for (const jwk of jwks.keys ?? []) keys.push(createPublicKey({ key: jwk as never, format: 'jwk' }));
  } else {
    for (const m of text.matchAll(/-----BEGIN ([A-Z ]+)-----[\s\S]+?-----END \1-----/g)) {
      const pem = m[0];
      keys.push(m[1] === 'CERTIFICATE' ? new X509Certificate(pem).publicKey : createPublicKey(pem));
    }
  }
  if (keys.length === 0) throw new UserError(`no certificates or public keys in ${file}`);
  return keys;
}

export class TokenVerifier {
  constructor(private readonly keys: KeyObject[], private readonly issuer: string, private readonly service: string) {}

  /** The token's claims, or undefined when no pinned key verifies it (or it expired, or names another issuer/service). */
  async verify(token: string): Promise<TokenClaims | undefined> {
    for (const key of this.keys) {
      try {
        const { payload } = await (await jose()).jwtVerify(token, key, {
          issuer: this.issuer,
          audience: this.service,
          algorithms: algorithmsFor(key),
          clockTolerance: 60,
        });
        return payload as TokenClaims;
      } catch {
        // try the next pinned key
      }
    }
    return undefined;
  }
}

/** The built-in token server's signer: ES256 with a configured or per-process key. */
export class TokenIssuer {
  readonly publicKey: KeyObject;
  private constructor(private readonly privateKey: KeyObject, readonly issuer: string, readonly service: string, readonly ttlSeconds: number) {
    this.publicKey = createPublicKey(privateKey);
  }

  static async create(opts: { signingKeyFile?: string; issuer: string; service: string; ttlSeconds?: number }): Promise<TokenIssuer> {
    let key: KeyObject;
    if (opts.signingKeyFile) {
      key = createPrivateKey(await fsp.readFile(opts.signingKeyFile, 'utf8').catch(() => { throw new UserError(`token signing key ${opts.signingKeyFile} not found`); }));
    } else {
      key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    }
    return new TokenIssuer(key, opts.issuer, opts.service, opts.ttlSeconds ?? 300);
  }

  get algorithm(): string {
    return algorithmsFor(this.publicKey)[0] ?? 'ES256';
  }

  async issue(subject: string, access: Access[]): Promise<{ token: string; expiresIn: number; issuedAt: string }> {
    const now = Math.floor(Date.now() / 1000);
    const { SignJWT } = await jose();
    const token = await new SignJWT({ access })
      .setProtectedHeader({ alg: this.algorithm, typ: 'JWT' })
      .setIssuer(this.issuer)
      .setAudience(this.service)
      .setSubject(subject)
      .setIssuedAt(now)
      .setNotBefore(now - 10)
      .setExpirationTime(now + this.ttlSeconds)
      .setJti(randomUUID())
      .sign(this.privateKey);
    return { token, expiresIn: this.ttlSeconds, issuedAt: new Date(now * 1000).toISOString() };
  }

  verifier(): TokenVerifier {
    return new TokenVerifier([this.publicKey], this.issuer, this.service);
  }
}
