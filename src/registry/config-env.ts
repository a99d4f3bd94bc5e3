// distribution's environment overrides: REGISTRY_ + the config path in upper case joined by "_"
// (REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY, REGISTRY_AUTH_HTPASSWD_PATH), applied over the YAML
// file. Like distribution's configuration/parser.go: variables are applied in lexical order (so
// REGISTRY_STORAGE=s3 selects a driver before REGISTRY_STORAGE_S3_BUCKET fills it in), a value is
// parsed as YAML into the key's type, keys of free-form maps (driver parameters, headers) are
// lower-cased, and a variable that names no known key is only a warning: orchestrators inject
// REGISTRY_PORT-style variables for a service called "registry".
import YAML from 'yaml';
import { UserError } from '../util/errors.js';

type Leaf = 'string' | 'bool' | 'int' | 'any';
interface Section {
  fields: Record<string, Node>;
  /** A map: any other key is accepted, lower-cased, with this node as its value. */
  open?: Node;
  /** storage and auth: a plain string value names the driver/kind (`REGISTRY_AUTH=htpasswd` → auth: {htpasswd: {}}). */
  selector?: boolean;
}
type Node = Leaf | Section;

const params: Section = { fields: {}, open: 'any' };
const section = (fields: Record<string, Node>, extra: Partial<Section> = {}): Section => ({ fields, ...extra });

/** Every key drydock reads (and the distribution keys it accepts and ignores, such as http.secret). */
export const CONFIG_SCHEMA: Section = section({
  version: 'string',
  loglevel: 'string',
  log: section({
    level: 'string',
    formatter: 'string',
    fields: params,
    accesslog: section({ disabled: 'bool', format: 'string' }),
  }),
  storage: section({
    filesystem: section({ rootdirectory: 'string', fsync: 'bool', maxthreads: 'int' }),
    s3: params,
    inmemory: params,
    delete: section({ enabled: 'bool' }),
    maintenance: section({
      uploadpurging: section({ enabled: 'bool', age: 'string', interval: 'string', dryrun: 'bool' }),
      readonly: section({ enabled: 'bool' }),
    }),
    cache: params,
    redirect: params,
  }, { open: params, selector: true }),
  http: section({
    addr: 'string',
    net: 'string',
    host: 'string',
    prefix: 'string',
    secret: 'string',
    relativeurls: 'bool',
    draintimeout: 'string',
    tls: section({ certificate: 'string', key: 'string', clientcas: 'any', minimumtls: 'string' }),
    headers: { fields: {}, open: 'any' },
    debug: section({ addr: 'string', prometheus: section({ enabled: 'bool', path: 'string' }) }),
    http2: section({ disabled: 'bool' }),
    timeout: section({ idle: 'string', header: 'string', body: 'string', minbodyrate: 'int' }),
  }),
  auth: section({
    htpasswd: section({ realm: 'string', path: 'string' }),
    token: section({ realm: 'string', service: 'string', issuer: 'string', rootcertbundle: 'string', jwks: 'string', signingkey: 'string', expiration: 'int', autoredirect: 'bool' }),
    access: 'any',
    anonymousread: 'bool',
    ratelimit: section({ failures: 'int', window: 'string' }),
  }, { open: params, selector: true }),
  // Repository globs ("team/**") cannot be variable names: REGISTRY_ACCESSCONTROL_REPOSITORIES takes the whole map as YAML.
  accessControl: section({
    repositories: 'any',
    groups: 'any',
    adminPolicy: section({ users: 'any', groups: 'any', actions: 'any' }),
  }),
  proxy: section({ remoteurl: 'string', username: 'string', password: 'string', ttl: 'string' }),
  limits: section({ maxuploadbytes: 'int', maxconcurrentuploads: 'int', chunkminlength: 'int' }),
  metrics: section({ enabled: 'bool' }),
  ui: section({ enabled: 'bool' }),
});

function convert(name: string, value: string, node: Node): unknown {
  if (node === 'string') return value;
  let parsed: unknown;
  try {
    parsed = YAML.parse(value);
  } catch (e) {
    if (node === 'any') return value;
    throw new UserError(`parsing environment variable ${name}: ${(e as Error).message}`, { cause: e });
  }
  if (node === 'any') return parsed ?? value;
  if (node === 'bool') {
    if (typeof parsed !== 'boolean') throw new UserError(`parsing environment variable ${name}: "${value}" is not a boolean (true or false)`);
    return parsed;
  }
  if (node === 'int') {
    if (typeof parsed !== 'number' || !Number.isInteger(parsed)) throw new UserError(`parsing environment variable ${name}: "${value}" is not an integer`);
    return parsed;
  }
  if (typeof parsed === 'string' && node.selector) return { [parsed]: {} };
  if (parsed === null) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed)) throw new UserError(`parsing environment variable ${name}: expected a YAML mapping`);
  return parsed;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Applies REGISTRY_* variables to a parsed config document in place. Returns the names of the
 * variables that name no key drydock knows (the caller warns about them). Throws a UserError for a
 * value that does not fit its key's type.
 */
export function applyEnvOverrides(doc: Record<string, unknown>, env: NodeJS.ProcessEnv, prefix = 'REGISTRY'): string[] {
  const unrecognised: string[] = [];
  const names = Object.keys(env).filter((k) => k.startsWith(`${prefix}_`) && env[k] !== undefined).sort();
  for (const name of names) {
    const value = env[name]!;
    const segments = name.split('_').slice(1);
    // Resolve the whole path against the schema first, so an unknown variable changes nothing.
    const steps: { key: string; node: Node }[] = [];
    let node: Node = CONFIG_SCHEMA;
    let existing: unknown = doc;
    for (const seg of segments) {
      if (seg === '' || typeof node === 'string') { steps.length = 0; break; }
      const known: string | undefined = Object.keys(node.fields).find((k) => k.toUpperCase() === seg);
      let key: string;
      let child: Node;
      if (known) {
        key = known;
        child = node.fields[known]!;
      } else if (node.open) {
        // An existing key of the map is matched case-insensitively, as distribution does.
        key = (isObject(existing) ? Object.keys(existing).find((k) => k.toUpperCase() === seg) : undefined) ?? seg.toLowerCase();
        child = node.open;
      } else { steps.length = 0; break; }
      steps.push({ key, node: child });
      existing = isObject(existing) ? existing[key] : undefined;
      node = child === 'any' ? params : child;
    }
    const leaf = steps[steps.length - 1];
    const inner = steps.slice(0, -1);
    if (!leaf || steps.length !== segments.length || inner.some((st) => typeof st.node === 'string' && st.node !== 'any')) {
      unrecognised.push(name);
      continue;
    }
    let target = doc;
    for (const st of inner) {
      if (!isObject(target[st.key])) target[st.key] = {};
      target = target[st.key] as Record<string, unknown>;
    }
    target[leaf.key] = convert(name, value, leaf.node);
  }
  return unrecognised;
}
