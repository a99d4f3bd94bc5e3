// The access log line formats. "json" is one pino object per request (machine-readable, with
// route and latency); "combined" is Apache's combined log format, the line registry:2 prints:
//   127.0.0.1 - alice [25/Nov/2016:08:29:32 +0000] "GET /v2/_catalog HTTP/1.1" 200 44 "" "curl/7.29.0"
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

export interface AccessRecord {
  remote: string | undefined;
  user: string | undefined;
  /** When the request arrived. */
  time: Date;
  method: string | undefined;
  /** The request target as sent ("/v2/app/tags/list?n=10"). */
  url: string | undefined;
  httpVersion: string;
  status: number;
  /** Response body bytes. */
  bytes: number;
  referer: string | undefined;
  userAgent: string | undefined;
}

const pad = (n: number) => String(n).padStart(2, '0');

/** `01/Dec/2026:16:06:01 +0000`, always in UTC as distribution's log does. */
export function clfTime(d: Date): string {
  return `${pad(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} +0000`;
}

/** Quotes and control characters are escaped so a hostile User-Agent cannot forge a second line. */
function clean(s: string): string {
  return s.replace(/[\\"\x00-\x1f\x7f]/g, (c) => (c === '"' || c === '\\' ? `\\${c}` : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`));
}

/** User names go in unquoted: a space would shift the fields, so it is escaped too. */
function field(s: string | undefined): string {
  return s ? clean(s).replace(/ /g, '\\x20') : '-';
}

export function combinedLine(r: AccessRecord): string {
  const request = `${r.method ?? '-'} ${r.url ?? '-'} HTTP/${r.httpVersion}`;
  return `${field(r.remote)} - ${field(r.user)} [${clfTime(r.time)}] "${clean(request)}" ${r.status} ${r.bytes} "${clean(r.referer ?? '')}" "${clean(r.userAgent ?? '')}"\n`;
}
