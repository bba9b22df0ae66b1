// kiroku in-browser verification: the "verified" mark on each record is computed here, in the
// resident's own browser, from the record's leaf bytes, its RFC 9162 inclusion proof and the
// operator's signed checkpoint (C2SP tlog-checkpoint in a C2SP signed-note, Ed25519).
//
// Main entry point for pages: verifyRecords(bundle, vkey) -> Map(id -> {ok: true, index,
// treeSize, origin, root, erased} | {ok: false, code, message}); when the checkpoint itself
// fails, every record gets code 'bad-checkpoint' and `cause` holds the underlying code.
//
// An ES module with no build step. Hashing is WebCrypto (crypto.subtle, available in a secure
// context: https or http://127.0.0.1 / localhost). Ed25519 is WebCrypto's where the browser has it,
// else the vendored @noble/ed25519 (./vendor/noble-ed25519.js, loaded only when needed).
//
// Verification functions resolve to a value or reject with VerifyError (never a boolean a caller
// could forget to check); its .code is one of the strings in CODES and its message is short
// English ("got X, expected Y") for logs; pages translate by code.

export const CODES = Object.freeze([
  'malformed', 'bad-checkpoint', 'bad-signature', 'size-mismatch', 'index-mismatch', 'bad-proof',
  'leaf-mismatch', 'commitment-mismatch', 'content-mismatch', 'bad-vkey', 'unsupported',
]);

export class VerifyError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'VerifyError';
    this.code = code;
  }
}

const fail = (code, message) => { throw new VerifyError(code, message); };
const HASH_SIZE = 32;
const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true });

// ---- base64 (RFC 4648 §4, standard alphabet, padded) ------------------------------------------

const B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export function b64decode(s) {
  // atob alone is lenient (whitespace, missing padding); the contract says padded standard base64.
  if (typeof s !== 'string' || !B64.test(s)) {
    fail('malformed', `got ${describe(s)}, expected padded standard base64`);
  }
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function b64encode(bytes) {
  if (!(bytes instanceof Uint8Array)) fail('malformed', `got ${describe(bytes)}, expected bytes`);
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin);
}

function describe(value) {
  if (typeof value === 'string') {
    return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  }
  if (value instanceof Uint8Array) return `${value.length} bytes`;
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  return value === null ? 'null' : typeof value;
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function b64decodeOrBytes(value) {
  return value instanceof Uint8Array ? value : b64decode(value);
}

function hash32(value, what) {
  const bytes = typeof value === 'string' ? b64decode(value) : value;
  if (!(bytes instanceof Uint8Array) || bytes.length !== HASH_SIZE) {
    fail('malformed', `${what}: got ${describe(bytes)}, expected a ${HASH_SIZE}-byte hash`);
  }
  return bytes;
}

// ---- RFC 9162 §2.1.1 hashes ---------------------------------------------------------------------

export async function sha256(bytes) {
  // WebCrypto exists only in secure contexts (https, or http://127.0.0.1 and localhost).
  if (!globalThis.crypto?.subtle) fail('unsupported', 'got no crypto.subtle (the page is not in a secure context), expected WebCrypto');
  return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
}

const LEAF_PREFIX = Uint8Array.of(0x00);
const NODE_PREFIX = Uint8Array.of(0x01);

export async function leafHash(leafBytes) {
  return sha256(concat(LEAF_PREFIX, leafBytes));
}

export async function nodeHash(left, right) {
  return sha256(concat(NODE_PREFIX, left, right));
}

// Sizes and indices are uint64 in the RFC; BigInt keeps the bit walks exact past 2^32.
function toUint(n, what) {
  if (typeof n === 'bigint' && n >= 0n) return n;
  if (Number.isSafeInteger(n) && n >= 0) return BigInt(n);
  return fail('malformed', `${what}: got ${describe(n)}, expected a non-negative integer`);
}

function proofHashes(proof) {
  // The transparency-dev vectors use null for an empty proof.
  if (proof === null || proof === undefined) return [];
  if (!Array.isArray(proof)) fail('malformed', `proof: got ${describe(proof)}, expected an array`);
  return proof.map((h, i) => hash32(h, `proof[${i}]`));
}

// ---- RFC 9162 §2.1.3.2: verifying an inclusion proof ----------------------------------------------

export async function rootFromInclusionProof(index, size, leafHashValue, proof) {
  const fn0 = toUint(index, 'leaf index');
  const sn0 = toUint(size, 'tree size');
  const leaf = hash32(leafHashValue, 'leaf hash');
  const path = proofHashes(proof);
  // Step 1: leaf_index must be below tree_size.
  if (fn0 >= sn0) fail('bad-proof', `got leaf index ${fn0}, expected one below tree size ${sn0}`);
  let fn = fn0;
  let sn = sn0 - 1n;
  let r = leaf;
  for (const p of path) {
    if (sn === 0n) fail('bad-proof', `got ${path.length} proof hashes, expected fewer`);
    if ((fn & 1n) === 1n || fn === sn) {
      r = await nodeHash(p, r);
      // Skip the levels where this node has no right sibling (right edge of the tree).
      while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) fail('bad-proof', `got ${path.length} proof hashes, expected more`);
  return r;
}

export async function verifyInclusion(index, size, leafHashValue, proof, root) {
  const want = hash32(root, 'root');
  const got = await rootFromInclusionProof(index, size, leafHashValue, proof);
  if (!equalBytes(got, want)) {
    fail('bad-proof', `got root ${b64encode(got)}, expected ${b64encode(want)}`);
  }
  return got;
}

// ---- RFC 9162 §2.1.4.2: verifying a consistency proof -------------------------------------------

export async function verifyConsistency(size1, size2, proof, root1, root2) {
  const first = toUint(size1, 'first size');
  const second = toUint(size2, 'second size');
  const path = proofHashes(proof);
  if (first > second) fail('bad-proof', `got first size ${first}, expected at most ${second}`);
  // Every tree is an extension of the empty tree, but no proof is defined from it: rejected like
  // transparency-dev/merkle, even between two empty trees (tests/verifier/vectors/README.md).
  if (first === 0n) fail('bad-proof', 'got first size 0, expected a non-empty tree');
  if (first === second) {
    // Equal trees: the empty proof, and the same root bytes (as transparency-dev/merkle does).
    if (path.length !== 0) fail('bad-proof', `got ${path.length} proof hashes for equal sizes, expected 0`);
    if (!equalBytes(b64decodeOrBytes(root1), b64decodeOrBytes(root2))) {
      fail('bad-proof', 'got different roots for equal sizes, expected the same');
    }
    return;
  }
  const firstHash = hash32(root1, 'first root');
  const secondHash = hash32(root2, 'second root');
  // Step 1.
  if (path.length === 0) fail('bad-proof', 'got an empty proof, expected at least one hash');
  // Step 2: a power-of-two first tree is itself a node of the second; its root starts the path.
  const hashes = (first & (first - 1n)) === 0n ? [firstHash, ...path] : path;
  // Steps 3-4.
  let fn = first - 1n;
  let sn = second - 1n;
  while ((fn & 1n) === 1n) { fn >>= 1n; sn >>= 1n; }
  // Steps 5-6.
  let fr = hashes[0];
  let sr = hashes[0];
  for (const c of hashes.slice(1)) {
    if (sn === 0n) fail('bad-proof', `got ${path.length} proof hashes, expected fewer`);
    if ((fn & 1n) === 1n || fn === sn) {
      fr = await nodeHash(c, fr);
      sr = await nodeHash(c, sr);
      while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
    } else {
      sr = await nodeHash(sr, c);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  // Step 7.
  if (sn !== 0n) fail('bad-proof', `got ${path.length} proof hashes, expected more`);
  if (!equalBytes(fr, firstHash)) fail('bad-proof', `got first root ${b64encode(fr)}, expected ${b64encode(firstHash)}`);
  if (!equalBytes(sr, secondHash)) fail('bad-proof', `got second root ${b64encode(sr)}, expected ${b64encode(secondHash)}`);
}

// ---- Ed25519 (RFC 8032) -----------------------------------------------------------------------

let backend = 'auto';
let webcryptoProbe = null; // Promise<boolean>, reset when the backend changes
let nobleModule = null;

export function setEd25519Backend(name) {
  if (!['webcrypto', 'library', 'auto'].includes(name)) {
    throw new TypeError(`Ed25519 backend: got ${describe(name)}, expected webcrypto, library or auto`);
  }
  backend = name;
  webcryptoProbe = null;
}

// RFC 8032 §7.1 TEST 1 public key: a valid point, to ask the browser whether it has Ed25519.
const PROBE_KEY = Uint8Array.from(
  'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a'.match(/../g),
  (h) => parseInt(h, 16),
);

async function webcryptoHasEd25519() {
  try {
    await crypto.subtle.importKey('raw', PROBE_KEY, { name: 'Ed25519' }, false, ['verify']);
    return true;
  } catch {
    return false;
  }
}

// Which implementation the next ed25519Verify uses: 'webcrypto' or 'library'.
export async function ed25519BackendInUse() {
  if (backend !== 'auto') return backend;
  webcryptoProbe ??= webcryptoHasEd25519();
  return (await webcryptoProbe) ? 'webcrypto' : 'library';
}

async function noble() {
  if (nobleModule === null) {
    nobleModule = import('./vendor/noble-ed25519.js').then((ed) => {
      // The library needs SHA-512; give it WebCrypto's, so no other hash code is involved.
      ed.etc.sha512Async = async (...parts) =>
        new Uint8Array(await crypto.subtle.digest('SHA-512', concat(...parts)));
      return ed;
    });
  }
  return nobleModule;
}

export async function ed25519Verify(publicKey, signature, message) {
  if (!(publicKey instanceof Uint8Array) || publicKey.length !== 32) {
    fail('bad-vkey', `Ed25519 public key: got ${describe(publicKey)}, expected 32 bytes`);
  }
  if (!(signature instanceof Uint8Array) || signature.length !== 64) {
    fail('bad-signature', `Ed25519 signature: got ${describe(signature)}, expected 64 bytes`);
  }
  const which = await ed25519BackendInUse();
  let ok = false;
  if (which === 'webcrypto') {
    let key;
    try {
      key = await crypto.subtle.importKey('raw', publicKey, { name: 'Ed25519' }, false, ['verify']);
    } catch (e) {
      if (!(await webcryptoHasEd25519())) fail('unsupported', 'this browser has no WebCrypto Ed25519');
      fail('bad-vkey', `Ed25519 public key: got one WebCrypto refuses (${e.name})`);
    }
    ok = await crypto.subtle.verify({ name: 'Ed25519' }, key, signature, message);
  } else {
    const ed = await noble();
    // RFC 8032 §5.1.7 strict verification (not ZIP 215), as WebCrypto and Go's crypto/ed25519 do.
    ok = await ed.verifyAsync(signature, message, publicKey, { zip215: false });
  }
  if (!ok) fail('bad-signature', 'got an Ed25519 signature that does not verify, expected a valid one');
}

// ---- C2SP signed-note ---------------------------------------------------------------------------

const ALG_ED25519 = 0x01; // signed-note "Signature types": 0x01 is Ed25519
const MAX_SIGNATURES = 100; // as golang.org/x/mod/sumdb/note, to bound the work on hostile input
const SIG_PREFIX = '\u2014 '; // em dash, space

// signed-note: a key name is non-empty UTF-8 with no Unicode whitespace and no '+'.
function validKeyName(name) {
  return typeof name === 'string' && name !== '' && !name.includes('+') && !/\p{White_Space}/u.test(name);
}

async function noteKeyId(name, alg, publicKey) {
  // signed-note key ID: SHA-256(key name || 0x0A || signature type || public key)[:4]
  return (await sha256(concat(utf8.encode(name), Uint8Array.of(0x0a, alg), publicKey))).slice(0, 4);
}

export async function parseVkey(vkey) {
  if (typeof vkey !== 'string') fail('bad-vkey', `vkey: got ${describe(vkey)}, expected a string`);
  // name+hex(key id)+base64(type || key); the base64 may itself contain '+', so split at the
  // first two only.
  const first = vkey.indexOf('+');
  const second = first < 0 ? -1 : vkey.indexOf('+', first + 1);
  if (second < 0) fail('bad-vkey', 'vkey: got fewer than 3 \'+\'-separated parts, expected name+keyid+key');
  const name = vkey.slice(0, first);
  const idHex = vkey.slice(first + 1, second);
  const keyB64 = vkey.slice(second + 1);
  if (!validKeyName(name)) fail('bad-vkey', `vkey name: got ${describe(name)}, expected no spaces or '+'`);
  if (!/^[0-9a-fA-F]{8}$/.test(idHex)) fail('bad-vkey', `vkey key id: got ${describe(idHex)}, expected 8 hex digits`);
  let key;
  try {
    key = b64decode(keyB64);
  } catch {
    fail('bad-vkey', 'vkey key: got invalid base64, expected base64(0x01 || 32-byte key)');
  }
  if (key.length === 0 || key[0] !== ALG_ED25519) {
    const alg = key.length ? `0x${key[0].toString(16).padStart(2, '0')}` : 'nothing';
    fail('bad-vkey', `vkey signature type: got ${alg}, expected 0x01 (Ed25519)`);
  }
  const publicKey = key.slice(1);
  if (publicKey.length !== 32) fail('bad-vkey', `vkey Ed25519 key: got ${publicKey.length} bytes, expected 32`);
  const keyId = Uint8Array.from(idHex.match(/../g), (h) => parseInt(h, 16));
  const want = await noteKeyId(name, ALG_ED25519, publicKey);
  if (!equalBytes(keyId, want)) fail('bad-vkey', `vkey key id: got ${hex(keyId)}, expected ${hex(want)}`);
  return { name, keyId, publicKey };
}

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export function parseNote(text) {
  if (text instanceof Uint8Array) {
    try {
      text = utf8Strict.decode(text);
    } catch {
      fail('malformed', 'note: got bytes that are not UTF-8, expected UTF-8 text');
    }
  }
  if (typeof text !== 'string') fail('malformed', `note: got ${describe(text)}, expected text`);
  // signed-note: no ASCII control characters other than newline, and no lone surrogates (the
  // text is UTF-8).
  if (/[\u0000-\u0009\u000b-\u001f]/.test(text)) fail('malformed', 'note: got a control character, expected none but newline');
  if (!text.isWellFormed()) fail('malformed', 'note: got a lone surrogate, expected valid Unicode');
  // The text ends with a newline; a blank line separates it from the signature lines.
  const split = text.lastIndexOf('\n\n');
  if (split < 0) fail('malformed', 'note: got no blank line, expected one before the signatures');
  const body = text.slice(0, split + 1);
  const block = text.slice(split + 2);
  if (block === '' || !block.endsWith('\n')) fail('malformed', 'note: got no signature lines ending in a newline, expected at least one');
  const lines = block.slice(0, -1).split('\n');
  if (lines.length > MAX_SIGNATURES) fail('malformed', `note: got ${lines.length} signatures, expected at most ${MAX_SIGNATURES}`);
  const signatures = lines.map((line) => {
    if (!line.startsWith(SIG_PREFIX)) fail('malformed', `note signature line: got ${describe(line)}, expected '— name signature'`);
    const rest = line.slice(SIG_PREFIX.length);
    const space = rest.indexOf(' ');
    const name = space < 0 ? rest : rest.slice(0, space);
    const blobB64 = space < 0 ? '' : rest.slice(space + 1);
    let blob;
    try {
      blob = b64decode(blobB64);
    } catch {
      blob = null;
    }
    if (!validKeyName(name) || blob === null || blob.length < 5) {
      fail('malformed', `note signature line: got ${describe(line)}, expected '— name base64(keyid || signature)'`);
    }
    return { name, keyId: blob.slice(0, 4), signature: blob.slice(4) };
  });
  return { body, signatures };
}

async function asKey(vkey) {
  return typeof vkey === 'string' ? parseVkey(vkey) : vkey;
}

export async function verifyNote(text, vkey) {
  const key = await asKey(vkey);
  const note = parseNote(text);
  const message = utf8.encode(note.body);
  // signed-note: signatures by unknown keys are ignored (witness cosignatures, other algorithms);
  // one by the trusted key (same name and key id) that does not verify is an error, as in
  // golang.org/x/mod/sumdb/note.
  const mine = note.signatures.filter((s) => s.name === key.name && equalBytes(s.keyId, key.keyId));
  if (mine.length === 0) {
    const seen = note.signatures.map((s) => `${s.name}+${hex(s.keyId)}`).join(', ');
    fail('bad-signature', `note: got signatures by ${seen}, expected one by ${key.name}+${hex(key.keyId)}`);
  }
  for (const s of mine) await ed25519Verify(key.publicKey, s.signature, message);
  return note.body;
}

// ---- C2SP tlog-checkpoint -----------------------------------------------------------------------

export function parseCheckpoint(body) {
  if (typeof body !== 'string' || !body.endsWith('\n')) fail('malformed', 'checkpoint: got a body without a final newline, expected one');
  // origin, decimal tree size, base64 root hash, then optional non-empty extension lines.
  const lines = body.slice(0, -1).split('\n');
  if (lines.length < 3) fail('malformed', `checkpoint: got ${lines.length} lines, expected at least 3`);
  const [origin, sizeText, rootText, ...extensions] = lines;
  if (origin === '') fail('malformed', 'checkpoint origin: got an empty line, expected the log origin');
  if (!/^(?:0|[1-9][0-9]{0,19})$/.test(sizeText)) fail('malformed', `checkpoint size: got ${describe(sizeText)}, expected a decimal integer`);
  const size = Number(sizeText);
  // A browser page only handles sizes a Number holds exactly (2^53 - 1, far beyond any real log).
  if (!Number.isSafeInteger(size)) fail('malformed', `checkpoint size: got ${sizeText}, expected at most ${Number.MAX_SAFE_INTEGER}`);
  let root;
  try {
    root = hash32(rootText, 'checkpoint root');
  } catch (e) {
    fail('malformed', e.message);
  }
  if (extensions.some((line) => line === '')) fail('malformed', 'checkpoint: got an empty extension line, expected none');
  return { origin, size, root };
}

export async function verifyCheckpoint(noteText, vkey) {
  const key = await asKey(vkey);
  const checkpoint = parseCheckpoint(await verifyNote(noteText, key));
  // kiroku's note key is named after the log origin (docs/log-format.md); tlog-checkpoint says
  // the origin must be checked, so one log's checkpoint cannot stand in for another's.
  if (checkpoint.origin !== key.name) {
    fail('bad-checkpoint', `checkpoint origin: got ${describe(checkpoint.origin)}, expected ${describe(key.name)}`);
  }
  return checkpoint;
}

// ---- RFC 8785 JSON Canonicalization Scheme ------------------------------------------------------

export function canonicalJson(value) {
  // RFC 8785 §3.2: ECMAScript JSON.stringify's string and number forms, no whitespace, object
  // members sorted by their names' UTF-16 code units (§3.2.3), which is what Array#sort does.
  if (value === null || typeof value === 'boolean') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) fail('malformed', `JSON: got ${value}, expected a finite number`);
    return JSON.stringify(value);
  }
  if (typeof value === 'string') {
    // I-JSON (RFC 7493 §2.1, required by RFC 8785 §3.1): no lone surrogates.
    if (!value.isWellFormed()) fail('malformed', 'JSON string: got a lone surrogate, expected valid Unicode');
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    const names = Object.keys(value).sort();
    return `{${names.map((n) => `${canonicalJson(n)}:${canonicalJson(value[n])}`).join(',')}}`;
  }
  return fail('malformed', `JSON: got ${describe(value)}, expected a JSON value`);
}

// ---- kiroku records -----------------------------------------------------------------------------

const COMMITMENT_PREFIX = utf8.encode('kiroku/commitment/v1\n');

export async function commitment(payload, saltB64) {
  // docs/log-format.md: b64(SHA-256("kiroku/commitment/v1\n" || salt || JCS(payload)))
  const salt = b64decode(saltB64);
  return b64encode(await sha256(concat(COMMITMENT_PREFIX, salt, utf8.encode(canonicalJson(payload)))));
}

function isObject(value) {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

async function verifyRecord(record, checkpoint) {
  if (!isObject(record)) fail('malformed', `record: got ${describe(record)}, expected an object`);
  const { index, inclusion } = record;
  if (!Number.isSafeInteger(index) || index < 0) fail('malformed', `record index: got ${describe(index)}, expected a non-negative integer`);
  if (!isObject(inclusion)) fail('malformed', `inclusion proof: got ${describe(inclusion)}, expected an object`);
  if (inclusion.tree_size !== checkpoint.size) {
    fail('size-mismatch', `proof tree size: got ${inclusion.tree_size}, expected the checkpoint's ${checkpoint.size}`);
  }
  if (inclusion.leaf_index !== index) fail('index-mismatch', `proof leaf index: got ${inclusion.leaf_index}, expected ${index}`);
  const leaf = b64decode(record.leaf);
  // RFC 9162 §2.1.1: the leaf hash is recomputed from the leaf bytes; the server's copy is only
  // compared, never used.
  const digest = await leafHash(leaf);
  if (inclusion.leaf_hash !== undefined && inclusion.leaf_hash !== null
      && !equalBytes(hash32(inclusion.leaf_hash, 'leaf hash'), digest)) {
    fail('leaf-mismatch', `leaf hash: got ${inclusion.leaf_hash}, expected ${b64encode(digest)} from the leaf bytes`);
  }
  if (inclusion.root_hash !== undefined && inclusion.root_hash !== null
      && !equalBytes(hash32(inclusion.root_hash, 'root hash'), checkpoint.root)) {
    fail('bad-proof', `proof root: got ${inclusion.root_hash}, expected the checkpoint's ${b64encode(checkpoint.root)}`);
  }
  // RFC 9162 §2.1.3.2, to the root the operator signed.
  await verifyInclusion(index, checkpoint.size, digest, inclusion.proof, checkpoint.root);

  // docs/log-format.md validity rules 1-2: the leaf is JCS(entry) and names its own index.
  let entry;
  let text;
  try {
    text = utf8Strict.decode(leaf);
    entry = JSON.parse(text);
  } catch {
    fail('malformed', 'leaf: got bytes that are not JSON, expected canonical JSON');
  }
  if (!isObject(entry)) fail('malformed', `leaf: got ${describe(entry)}, expected a JSON object`);
  if (canonicalJson(entry) !== text) fail('malformed', 'leaf: got JSON that is not canonical, expected RFC 8785 form');
  if (entry.index !== index) fail('index-mismatch', `leaf index: got ${entry.index}, expected ${index}`);

  const { payload, salt } = record;
  const erased = (payload === null || payload === undefined) && (salt === null || salt === undefined);
  if (!erased) {
    if (!isObject(payload) || typeof salt !== 'string') fail('malformed', 'record: got payload or salt without the other, expected both or neither');
    // The payload shown is the one the agency signed: its salted commitment is in the leaf.
    const got = await commitment(payload, salt);
    if (got !== entry.commitment) fail('commitment-mismatch', `commitment: got ${got} from the payload, expected the leaf's ${entry.commitment}`);
  }
  if (record.expected !== undefined && record.expected !== null) {
    if (!isObject(record.expected)) fail('malformed', `expected: got ${describe(record.expected)}, expected an object`);
    for (const [name, shown] of Object.entries(record.expected)) {
      if (erased) fail('content-mismatch', `${name}: got an erased payload, expected ${JSON.stringify(shown)}`);
      const signed = payload[name];
      // Arrays compare element-wise; JCS makes the comparison exact for any JSON value.
      if (signed === undefined || canonicalJson(signed) !== canonicalJson(shown)) {
        fail('content-mismatch', `${name}: got ${JSON.stringify(shown)} on the page, expected ${JSON.stringify(signed)} as signed`);
      }
    }
  }
  return { ok: true, index, treeSize: checkpoint.size, origin: checkpoint.origin, root: b64encode(checkpoint.root), erased };
}

function failure(e) {
  if (e instanceof VerifyError) return { ok: false, code: e.code, message: e.message };
  return { ok: false, code: 'malformed', message: String(e && e.message ? e.message : e) };
}

export async function verifyRecords(bundle, vkey) {
  if (!isObject(bundle) || !Array.isArray(bundle.records)) fail('malformed', `bundle: got ${describe(bundle)}, expected {checkpoint, records: [...]}`);
  const ids = bundle.records.map((r, i) => (isObject(r) && typeof r.id === 'string' ? r.id : `#${i}`));
  // The checkpoint is checked once against the key the page pinned (never one the bundle brings).
  let checkpoint;
  try {
    checkpoint = await verifyCheckpoint(bundle.checkpoint, vkey);
  } catch (e) {
    const { message, code } = failure(e);
    const result = { ok: false, code: 'bad-checkpoint', cause: code, message };
    return new Map(ids.map((id) => [id, result]));
  }
  // Each record on its own: one record's failure never affects another's.
  const results = await Promise.all(
    bundle.records.map((r) => verifyRecord(r, checkpoint).catch(failure)),
  );
  return new Map(ids.map((id, i) => [id, results[i]]));
}
