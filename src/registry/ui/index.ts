// The registry's web UI at /ui/: one HTML page, one script and one stylesheet, shipped in the
// package (no CDN, no second server), plus the JSON endpoints of ./api.ts. The page signs in with
// the registry's own auth: it keeps the credentials in sessionStorage and sends them as an
// Authorization header (fetching bearer tokens from the built-in /token when the registry uses
// them), so there is no session store to protect. The server routes /ui/ after every /v2/ route,
// so the manifest GET hot path never looks at it.
import { promises as fsp } from 'node:fs';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { RegistryError } from '../errors.js';
import { createUiApi, type UiApiDeps, type UiContext } from './api.js';
import { INDEX_HTML, STYLE_CSS } from './assets.js';

export type { UiContext, UiApiDeps } from './api.js';

/**
 * Nothing inline, nothing from elsewhere: the page's script and style come from /ui/, and it
 * talks only to this origin. Image data (labels, history, annotations) is inserted as text.
 */
export const UI_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const SECURITY_HEADERS = {
  'Content-Security-Policy': UI_CSP,
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
};

interface Asset { body: Buffer; type: string; etag: string }

function asset(body: string | Buffer, type: string): Asset {
  const b = typeof body === 'string' ? Buffer.from(body) : body;
  return { body: b, type, etag: `"${createHash('sha256').update(b).digest('hex').slice(0, 32)}"` };
}

/**
 * The compiled page script: next to this module in dist/; when drydock runs from its TypeScript
 * sources (tsx), the copy tsc put in dist/.
 */
async function loadScript(): Promise<Buffer> {
  const candidates = [new URL('./client/app.js', import.meta.url), new URL('../../../dist/src/registry/ui/client/app.js', import.meta.url)];
  for (const u of candidates) {
    try {
      return await fsp.readFile(fileURLToPath(u));
    } catch { /* try the next */ }
  }
  throw new RegistryError('UNAVAILABLE', 'the web UI script is missing from this build (run `npx tsc -p .`)');
}

async function loadSourceMap(): Promise<Buffer | undefined> {
  try {
    return await fsp.readFile(fileURLToPath(new URL('./client/app.js.map', import.meta.url)));
  } catch {
    return undefined;
  }
}

export interface UiHandler {
  /** Answers any path under /ui (the caller has checked the prefix). */
  handle(ctx: UiContext): Promise<void>;
}

export function createUiHandler(deps: UiApiDeps): UiHandler {
  const api = createUiApi(deps);
  let assets: Promise<Map<string, Asset>> | undefined;
  const load = () => (assets ??= (async () => {
    const map = new Map<string, Asset>();
    map.set('/ui/', asset(INDEX_HTML, 'text/html; charset=utf-8'));
    map.set('/ui/app.js', asset(await loadScript(), 'text/javascript; charset=utf-8'));
    map.set('/ui/style.css', asset(STYLE_CSS, 'text/css; charset=utf-8'));
    const sourceMap = await loadSourceMap();
    if (sourceMap) map.set('/ui/app.js.map', asset(sourceMap, 'application/json'));
    return map;
  })().catch((e) => { assets = undefined; throw e; }));

  return {
    async handle(ctx) {
      const { req, res, url } = ctx;
      for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
      const p = url.pathname;
      if (p.startsWith('/ui/api/')) return api(ctx);
      if (req.method !== 'GET' && req.method !== 'HEAD') throw new RegistryError('UNSUPPORTED', `${req.method} is not supported on ${p.slice(0, 100)}`);
      if (p === '/ui') {
        res.writeHead(301, { Location: `/ui/${url.search}`, 'Content-Length': 0 });
        res.end();
        return;
      }
      const a = (await load()).get(p === '/ui/index.html' ? '/ui/' : p);
      if (!a) {
        res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': 10 });
        res.end(req.method === 'HEAD' ? undefined : 'not found\n');
        return;
      }
      const headers = { 'Content-Type': a.type, ETag: a.etag, 'Cache-Control': 'no-cache' };
      if (req.headers['if-none-match'] === a.etag) {
        res.writeHead(304, headers);
        res.end();
        return;
      }
      res.writeHead(200, { ...headers, 'Content-Length': a.body.length });
      res.end(req.method === 'HEAD' ? undefined : a.body);
    },
  };
}
