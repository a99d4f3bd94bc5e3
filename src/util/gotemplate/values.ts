// How Go sees drydock's JavaScript values: plain objects are map[string]interface{}, arrays are
// slices, and objects marked with goStruct() are structs with a fixed set of fields (an unknown
// field is an error, as on Docker's formatter contexts). Printing follows fmt's %v.

export const GO_TYPE = Symbol('gotemplate.type');

/** Marks `fields` as a Go struct named `typeName`; field order is declaration order. */
export function goStruct<T extends object>(typeName: string, fields: T): T {
  Object.defineProperty(fields, GO_TYPE, { value: typeName, enumerable: false });
  return fields;
}

/**
 * A nil slice or map of a typed Go field: prints as "[]" or "map[]" (where a nil interface{}
 * prints "<nil>"), encodes to JSON null, and is empty for len, range, if and index.
 */
export class TypedNil {
  constructor(readonly kind: 'slice' | 'map') {}
  toJSON(): null { return null; }
}

export const nilSlice = new TypedNil('slice');
export const nilMap = new TypedNil('map');

export function structType(v: unknown): string | undefined {
  return v !== null && typeof v === 'object' ? (v as { [GO_TYPE]?: string })[GO_TYPE] : undefined;
}

export function isMap(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof TypedNil) && structType(v) === undefined;
}

/** The Go type name of a value, for error texts. */
export function goTypeName(v: unknown): string {
  if (v === undefined || v === null) return 'interface {}';
  if (typeof v === 'string') return 'string';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float64';
  if (typeof v === 'function') return 'func';
  if (v instanceof TypedNil) return v.kind === 'slice' ? '[]string' : 'map[string]string';
  if (Array.isArray(v)) return v.length > 0 && v.every((x) => typeof x === 'string') ? '[]string' : '[]interface {}';
  return structType(v) ?? 'map[string]interface {}';
}

/** Go's truth: false, 0, nil, and empty strings, slices and maps are false; structs are true. */
export function isTrue(v: unknown): boolean {
  if (v === undefined || v === null) return false;
  if (typeof v === 'boolean') return v;
  if (typeof v === 'number') return v !== 0;
  if (typeof v === 'string') return v.length > 0;
  if (Array.isArray(v)) return v.length > 0;
  if (v instanceof TypedNil) return false;
  if (typeof v === 'object') return structType(v) !== undefined || Object.keys(v).length > 0;
  return true;
}

export function formatNumber(n: number): string {
  if (Number.isInteger(n)) return Math.abs(n) >= 1e21 ? goExp(n) : String(n);
  // %v of a float64 is %g with the shortest representation: exponent for large/small values.
  const exp = Math.floor(Math.log10(Math.abs(n)));
  if (exp < -4 || exp >= 21) return goExp(n);
  return String(n);
}

function goExp(n: number): string {
  return n.toExponential().replace(/e([+-])(\d)$/, 'e$10$2');
}

/** fmt.Sprint(v): what {{.}} prints. */
export function formatValue(v: unknown, top = true): string {
  if (v === undefined) return top ? '<no value>' : '<nil>';
  if (v === null) return '<nil>';
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return formatNumber(v);
  if (typeof v === 'boolean') return String(v);
  if (typeof v === 'function') return '0x0';
  if (v instanceof TypedNil) return v.kind === 'slice' ? '[]' : 'map[]';
  if (Array.isArray(v)) return `[${v.map((x) => formatValue(x, false)).join(' ')}]`;
  if (typeof v === 'object') {
    if (structType(v) !== undefined) return `{${Object.values(v).map((x) => formatValue(x, false)).join(' ')}}`;
    const keys = Object.keys(v).sort();
    return `map[${keys.map((k) => `${k}:${formatValue((v as Record<string, unknown>)[k], false)}`).join(' ')}]`;
  }
  return String(v);
}

/** encoding/json's Marshal: structs in field order; json.Marshal escapes <, > and & in strings. */
export function toJson(v: unknown, escapeHtml = false): string {
  const s = JSON.stringify(v, (_k, x: unknown) => (x === undefined ? null : x)) ?? 'null';
  const out = s.replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
  return escapeHtml ? out.replace(/</g, '\\u003c').replace(/>/g, '\\u003e').replace(/&/g, '\\u0026') : out;
}
