import { PschedError, ValidationError } from './errors.ts';

/**
 * Request bodies, read strictly: JSON and form posts are UTF-8, and what is
 * stored is exactly what was sent. A lenient decoder turns a bad byte into
 * U+FFFD, so a message would be stored with a character nobody typed (and
 * the answer would echo one it never stored); here such a body is refused
 * with a 400 that names the field.
 */

export class UnsupportedCharsetError extends PschedError {
  override name = 'UnsupportedCharsetError';
  override readonly status = 415;
  override readonly code = 'unsupported_media_type';
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const lenientUtf8 = new TextDecoder('utf-8', { ignoreBOM: true });

/** Refuses a charset other than UTF-8 (`application/json; charset=iso-8859-1`): psched reads UTF-8 only. */
export function requireUtf8Charset(contentType: string | undefined): void {
  const charset = /;\s*charset\s*=\s*"?([^";\s]+)"?/i.exec(contentType ?? '')?.[1];
  if (charset !== undefined && !/^utf-?8$/i.test(charset)) {
    throw new UnsupportedCharsetError(`Send the body as UTF-8 (got charset=${charset})`);
  }
}

/** The text of a JSON body; invalid UTF-8 is refused naming the field that holds it. */
export function decodeJsonBody(body: Buffer): string {
  try {
    return strictUtf8.decode(body);
  } catch {
    const field = replacedField(parseOrUndefined(lenientUtf8.decode(body)));
    throw new ValidationError(`${field ?? 'the body'} is not valid UTF-8: send text as UTF-8`, field);
  }
}

/** A lone surrogate can only come from a \u escape: the raw bytes were checked already. */
const SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/;

/**
 * JSON.parse, with the problems named: a syntax error, a lone surrogate
 * escape (`"\ud800"`: not text), and the keys that could reach an object's
 * prototype if some code merged the body (`__proto__`, `constructor.prototype`).
 */
export function parseJsonBody(text: string): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ValidationError(`body is not valid JSON: ${(err as Error).message}`, undefined, { cause: err });
  }
  if (SURROGATE_ESCAPE.test(text) || text.includes('__proto__') || text.includes('prototype')) checkValue(value, '');
  return value;
}

function checkValue(value: unknown, path: string): void {
  if (typeof value === 'string') {
    if (!value.isWellFormed()) throw new ValidationError(`${path || 'the body'} holds a lone surrogate (an unpaired \\ud800-\\udfff escape), which is not text`, path || undefined);
    return;
  }
  if (Array.isArray(value)) {
    value.forEach((item, i) => checkValue(item, `${path || 'items'}[${i}]`)); // a batch: named as its validation names it
    return;
  }
  if (typeof value !== 'object' || value === null) return;
  for (const [key, item] of Object.entries(value)) {
    const at = path ? `${path}.${key}` : key;
    if (key === '__proto__' || (key === 'prototype' && path.endsWith('constructor'))) {
      throw new ValidationError(`the key "${key}" is not allowed (at ${at})`, at);
    }
    checkValue(item, at);
  }
}

/** The path of the first string holding U+FFFD: where a lenient decode replaced a bad byte. */
function replacedField(value: unknown, path = ''): string | undefined {
  if (typeof value === 'string') return value.includes('\uFFFD') ? path || undefined : undefined;
  if (typeof value !== 'object' || value === null) return undefined;
  for (const [key, item] of Object.entries(value)) {
    const at = Array.isArray(value) ? `${path || 'items'}[${key}]` : path ? `${path}.${key}` : key;
    const found = replacedField(item, at);
    if (found) return found;
  }
  return undefined;
}

function parseOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

export type FormFields = Record<string, string | string[]>;

/**
 * An `application/x-www-form-urlencoded` body, decoded as PHP does (`+` is a
 * space, `%XX` a byte, a `%` not followed by two hex digits stays as it is,
 * a repeated name gives an array), except that the bytes must form UTF-8
 * text. Fields live in an object without a prototype.
 */
export function parseFormBody(body: Buffer): FormFields {
  const raw = body.toString('latin1'); // byte for byte: percent-decoding works on bytes
  const fields: FormFields = Object.create(null) as FormFields;
  for (const pair of raw.split('&')) {
    if (pair === '') continue;
    const equals = pair.indexOf('=');
    const name = decodeFormComponent(equals < 0 ? pair : pair.slice(0, equals), undefined);
    const value = decodeFormComponent(equals < 0 ? '' : pair.slice(equals + 1), name);
    const existing = fields[name];
    fields[name] = existing === undefined ? value : Array.isArray(existing) ? [...existing, value] : [existing, value];
  }
  return fields;
}

const PERCENT_BYTE = /%([0-9a-fA-F]{2})/g;

/**
 * PHP's urldecode over bytes, given as a latin1 string (one character a
 * byte): `+` is a space, `%XX` a byte, a `%` not followed by two hex digits
 * stays; the result must be UTF-8. Undefined when it is not.
 */
export function urldecodeBytes(latin1: string): string | undefined {
  const decoded = latin1.replaceAll('+', ' ').replace(PERCENT_BYTE, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
  try {
    return strictUtf8.decode(Buffer.from(decoded, 'latin1'));
  } catch {
    return undefined;
  }
}

function decodeFormComponent(component: string, field: string | undefined): string {
  const decoded = urldecodeBytes(component);
  if (decoded !== undefined) return decoded;
  const what = field === undefined ? 'a field name' : field;
  throw new ValidationError(`${what} is not valid UTF-8 once percent-decoded: send text as UTF-8`, field);
}

/** A parsed form's field as a string, for a page's form posts: missing or repeated fields read as empty. */
export function formFields(body: unknown): (name: string) => string {
  const fields = typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {};
  return (name) => (typeof fields[name] === 'string' ? (fields[name] as string) : '');
}
