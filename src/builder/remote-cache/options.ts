// --cache-to / --cache-from values, parsed like buildx (util/buildflags/cache.go): CSV fields
// "key=value", a bare "REF" meaning type=registry,ref=REF, keys lower-cased. The type and key
// checks BuildKit's exporters and importers make are done here, before the build starts.
import { UserError } from '../../util/errors.js';

export type CacheMode = 'min' | 'max';

/** BuildKit's s3 cache attributes (cache/remotecache/s3), defaults applied. */
export interface S3CacheSpec {
  type: 's3';
  bucket: string;
  region: string;
  endpointUrl?: string;
  usePathStyle: boolean;
  prefix: string;
  blobsPrefix: string;
  manifestsPrefix: string;
  /** name=a;b: the manifest is written under each, read from the first. */
  names: string[];
  accessKeyId?: string;
  secretAccessKey?: string;
  sessionToken?: string;
}

/** The s3 exporter's own attributes (BuildKit's defaults: 4 uploads at once, touch after 24h). */
export interface S3ExportTuning {
  /** upload_parallelism: blobs uploaded at once. */
  uploadParallelism: number;
  /** touch_refresh: a blob already in the bucket and older than this is touched (copied onto itself). */
  touchRefreshMs: number;
}

export type CacheExportSpec =
  | { type: 'registry'; ref: string; mode: CacheMode; ignoreError: boolean }
  | { type: 'local'; dest: string; tag: string; mode: CacheMode; ignoreError: boolean }
  | (S3CacheSpec & S3ExportTuning & { mode: CacheMode; ignoreError: boolean })
  | { type: 'inline' };

export type CacheImportSpec =
  | { type: 'registry'; ref: string }
  | { type: 'local'; src: string; tag: string; digest?: string }
  | S3CacheSpec;

/**
 * type=gha talks to GitHub Actions' cache service (ACTIONS_CACHE_URL/ACTIONS_RESULTS_URL and the
 * runner's token), which exists only inside GitHub's runners: drydock knows the flag and says so.
 */
export const GHA_UNSUPPORTED = 'type=gha needs the GitHub Actions cache service (ACTIONS_RESULTS_URL and ACTIONS_RUNTIME_TOKEN of a GitHub-hosted runner), which drydock does not implement; use type=registry, type=s3 or type=local (e.g. with actions/cache) instead';

const S3_KEYS = ['bucket', 'region', 'name', 'endpoint_url', 'use_path_style', 'prefix', 'blobs_prefix', 'manifests_prefix', 'access_key_id', 'secret_access_key', 'session_token', 'disable_accept_encoding'];

/**
 * Newer BuildKit's retry knobs for the Go SDK. drydock's S3 client is the registry driver's (the
 * JS SDK's standard retry mode, 3 attempts), which has no setting for them: refused, not ignored.
 */
const S3_UNSUPPORTED: Record<string, string> = {
  retry_mode: 'retry_mode is not supported for type=s3: drydock\'s S3 client always uses the AWS SDK\'s standard retry mode',
  retry_max_attempts: 'retry_max_attempts is not supported for type=s3: drydock\'s S3 client always makes the AWS SDK\'s default 3 attempts',
};
const GHA_KEYS = ['url', 'url_v2', 'token', 'scope', 'mode', 'ignore-error', 'timeout', 'repository', 'ghtoken', 'version'];

/** BuildKit's s3 getConfig: region and bucket from the attributes or AWS_REGION/AWS_BUCKET. */
function s3Spec(e: Entry, env: NodeJS.ProcessEnv): S3CacheSpec {
  const region = e.attrs.get('region') ?? env.AWS_REGION;
  if (!region) throw new UserError("region ('region') not set for s3 cache");
  const bucket = e.attrs.get('bucket') ?? env.AWS_BUCKET;
  if (!bucket) throw new UserError("bucket ('bucket') not set for s3 cache");
  const get = (k: string, envName: string) => e.attrs.get(k) ?? env[envName];
  const accessKeyId = get('access_key_id', 'AWS_ACCESS_KEY_ID');
  const secretAccessKey = get('secret_access_key', 'AWS_SECRET_ACCESS_KEY');
  const sessionToken = get('session_token', 'AWS_SESSION_TOKEN');
  const endpointUrl = e.attrs.get('endpoint_url');
  for (const k of Object.keys(S3_UNSUPPORTED)) if (e.attrs.has(k)) throw new UserError(S3_UNSUPPORTED[k]!);
  // GCS's front end rewrites a signed Accept-Encoding (BuildKit issue 3749); the JS SDK sends
  // none, so disable_accept_encoding=true is what drydock always does. Checked, then not needed.
  parseBool(e, 'disable_accept_encoding');
  return {
    type: 's3', bucket, region,
    ...(endpointUrl ? { endpointUrl } : {}),
    usePathStyle: parseBool(e, 'use_path_style'),
    prefix: e.attrs.get('prefix') ?? '',
    blobsPrefix: e.attrs.get('blobs_prefix') ?? 'blobs/',
    manifestsPrefix: e.attrs.get('manifests_prefix') ?? 'manifests/',
    names: (e.attrs.get('name') || 'buildkit').split(';').filter(Boolean),
    ...(accessKeyId ? { accessKeyId } : {}),
    ...(secretAccessKey ? { secretAccessKey } : {}),
    ...(sessionToken ? { sessionToken } : {}),
  };
}

/** upload_parallelism and touch_refresh, BuildKit's defaults applied. */
function s3Tuning(e: Entry): S3ExportTuning {
  let uploadParallelism = 4;
  const p = e.attrs.get('upload_parallelism');
  if (p !== undefined) {
    // BuildKit's words; Go's Atoi takes an optional sign and decimal digits only.
    if (!/^[+-]?\d+$/.test(p) || Number(p) <= 0 || !Number.isSafeInteger(Number(p))) throw new UserError('upload_parallelism must be a positive integer');
    uploadParallelism = Number(p);
  }
  const t = e.attrs.get('touch_refresh');
  return { uploadParallelism, touchRefreshMs: t === undefined ? 24 * 3600_000 : goDuration('touch_refresh', t) };
}

const DURATION_UNITS: Record<string, number> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, 'μs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3600_000 };

/** Go's time.ParseDuration ("24h", "1h30m", "90s", "1.5h", "0"), in milliseconds. */
export function goDuration(key: string, text: string): number {
  const bad = () => new UserError(`invalid ${key} ${JSON.stringify(text)}: a Go duration such as 24h, 90m or 1h30m is expected`);
  const m = /^([-+]?)(.*)$/.exec(text)!;
  const sign = m[1] === '-' ? -1 : 1;
  const rest = m[2]!;
  if (rest === '0') return 0;
  if (!rest) throw bad();
  let ms = 0;
  const re = /(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)/gy;
  let end = 0;
  for (let g = re.exec(rest); g; g = re.exec(rest)) {
    ms += Number(g[1]) * DURATION_UNITS[g[2]!]!;
    end = re.lastIndex;
  }
  if (end !== rest.length) throw bad();
  return sign * ms;
}

/** Splits one CSV line the way Go's encoding/csv does for a single record (quotes, doubled quotes). */
export function csvFields(text: string): string[] {
  const out: string[] = [];
  let i = 0;
  for (;;) {
    let field = '';
    if (text[i] === '"') {
      i++;
      for (;;) {
        if (i >= text.length) throw new UserError(`parse error on line 1, column ${i + 1}: extraneous or missing " in quoted-field`);
        if (text[i] === '"') {
          if (text[i + 1] === '"') { field += '"'; i += 2; continue; }
          i++;
          break;
        }
        field += text[i++];
      }
      if (i < text.length && text[i] !== ',') throw new UserError(`parse error on line 1, column ${i + 1}: extraneous or missing " in quoted-field`);
    } else {
      const end = text.indexOf(',', i);
      field = text.slice(i, end < 0 ? text.length : end);
      if (field.includes('"')) throw new UserError(`parse error on line 1, column ${i + field.indexOf('"') + 1}: bare " in non-quoted-field`);
      i = end < 0 ? text.length : end;
    }
    out.push(field);
    if (i >= text.length) return out;
    i++; // the comma
  }
}

interface Entry { type: string; attrs: Map<string, string>; text: string }

/** buildx's ParseCacheEntry: each value is one entry, except a "REF1,REF2" list of bare refs. */
function parseEntries(values: string[]): Entry[] {
  const out: Entry[] = [];
  for (const value of values) {
    if (value === '') continue;
    if (!value.includes('=')) {
      for (const ref of csvFields(value)) out.push({ type: 'registry', attrs: new Map([['ref', ref]]), text: ref });
      continue;
    }
    const attrs = new Map<string, string>();
    let type = '';
    for (const field of csvFields(value)) {
      const eq = field.indexOf('=');
      if (eq < 0) throw new UserError(`invalid value ${field}`);
      const key = field.slice(0, eq).toLowerCase();
      if (key === 'type') type = field.slice(eq + 1);
      else attrs.set(key, field.slice(eq + 1));
    }
    if (!type) throw new UserError(`type required for ${JSON.stringify(value)}`);
    out.push({ type, attrs, text: value });
  }
  return out;
}

/** Keys each backend takes; BuildKit's compression and media-type knobs are accepted where they are harmless. */
const EXPORT_KEYS: Record<string, string[]> = {
  registry: ['ref', 'mode', 'oci-mediatypes', 'image-manifest', 'ignore-error', 'compression', 'compression-level', 'force-compression'],
  local: ['dest', 'tag', 'mode', 'oci-mediatypes', 'image-manifest', 'ignore-error', 'compression', 'compression-level', 'force-compression'],
  inline: [],
  s3: [...S3_KEYS, ...Object.keys(S3_UNSUPPORTED), 'mode', 'ignore-error', 'upload_parallelism', 'touch_refresh'],
  gha: GHA_KEYS,
};
const IMPORT_KEYS: Record<string, string[]> = {
  registry: ['ref'],
  local: ['src', 'tag', 'digest'],
  // The importer reads BuildKit's whole attribute set; touch_refresh only matters when exporting.
  s3: [...S3_KEYS, ...Object.keys(S3_UNSUPPORTED), 'touch_refresh'],
  gha: GHA_KEYS,
};

function checkKeys(e: Entry, allowed: string[], what: string): void {
  for (const k of e.attrs.keys()) {
    if (!allowed.includes(k)) throw new UserError(`unknown ${what} attribute "${k}" for type=${e.type} (${allowed.length ? allowed.join(', ') : 'none'})`);
  }
}

/** Go's strconv.ParseBool spellings, as BuildKit reads its boolean attributes. */
function parseBool(e: Entry, key: string): boolean {
  const v = e.attrs.get(key);
  if (v === undefined) return false;
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(v)) return false;
  throw new UserError(`failed to parse ${key}: strconv.ParseBool: parsing ${JSON.stringify(v)}: invalid syntax`);
}

function parseMode(e: Entry): CacheMode {
  const mode = e.attrs.get('mode') ?? 'min';
  if (mode !== 'min' && mode !== 'max') throw new UserError(`invalid mode: ${mode}`);
  return mode;
}

/** `--cache-to` values (repeatable). */
export function parseCacheTo(values: string[], env: NodeJS.ProcessEnv = process.env): CacheExportSpec[] {
  return parseEntries(values).map((e): CacheExportSpec => {
    const keys = EXPORT_KEYS[e.type];
    if (!keys) throw new UserError(`unknown cache exporter: ${JSON.stringify(e.type)}`);
    checkKeys(e, keys, 'cache exporter');
    if (e.type === 'gha') throw new UserError(GHA_UNSUPPORTED);
    for (const b of ['oci-mediatypes', 'image-manifest']) {
      // drydock always writes an OCI image manifest (BuildKit's default since v0.21).
      if (e.attrs.has(b) && !parseBool(e, b)) throw new UserError(`${b}=${e.attrs.get(b)} is not supported: drydock writes the cache as an OCI image manifest (${b}=true)`);
    }
    const ignoreError = parseBool(e, 'ignore-error');
    switch (e.type) {
      case 'registry': {
        const ref = e.attrs.get('ref');
        if (!ref) throw new UserError('ref is required for registry cache exporter');
        return { type: 'registry', ref, mode: parseMode(e), ignoreError };
      }
      case 's3': return { ...s3Spec(e, env), ...s3Tuning(e), mode: parseMode(e), ignoreError };
      case 'local': {
        const dest = e.attrs.get('dest');
        if (!dest) throw new UserError('local cache exporter requires dest');
        return { type: 'local', dest, tag: e.attrs.get('tag') || 'latest', mode: parseMode(e), ignoreError };
      }
      default: return { type: 'inline' };
    }
  });
}

/** `--cache-from` values (repeatable). */
export function parseCacheFrom(values: string[], env: NodeJS.ProcessEnv = process.env): CacheImportSpec[] {
  return parseEntries(values).map((e): CacheImportSpec => {
    const keys = IMPORT_KEYS[e.type];
    if (!keys) throw new UserError(`unknown cache importer: ${JSON.stringify(e.type)}`);
    checkKeys(e, keys, 'cache importer');
    if (e.type === 'gha') throw new UserError(GHA_UNSUPPORTED);
    if (e.type === 's3') return s3Spec(e, env);
    if (e.type === 'registry') {
      const ref = e.attrs.get('ref');
      if (!ref) throw new UserError('ref is required for registry cache importer');
      return { type: 'registry', ref };
    }
    const src = e.attrs.get('src');
    if (!src) throw new UserError('local cache importer requires src');
    const digest = e.attrs.get('digest');
    return { type: 'local', src, tag: e.attrs.get('tag') || 'latest', ...(digest ? { digest } : {}) };
  });
}
