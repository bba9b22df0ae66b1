// Unit tests of api/web/static/js/verify.js, run in headless Chromium by tests/web/test_verify_js.py.
//
// Each group records which checks passed (by a label naming the vector), which failed (with the
// reason) and which were skipped (with the reason). The Python side compares the passed labels
// with the vector files, so a group that ran nothing, or skipped a vector silently, fails there.
// Results are published as window.__results; window.__done resolves when everything ran.
//
// Served paths (tests/web/test_verify_js.py): /static/js/ = api/web/static/js/,
// /vectors/ = tests/verifier/vectors/, /docs/signing-vectors.json, /cases.json (built by pytest).

import * as v from '/static/js/verify.js';

const results = { groups: {}, records: {}, bench: null, errors: [] };
window.__results = results;

const utf8 = new TextEncoder();
const fromHex = (h) => Uint8Array.from(h.match(/../g) ?? [], (x) => parseInt(x, 16));
const toHex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
const ascii = (s) => utf8.encode(s);

async function getJson(path) {
  const response = await fetch(path);
  if (!response.ok) throw new Error(`GET ${path}: ${response.status}`);
  return response.json();
}

function group(name) {
  const g = { passed: [], failed: [], skipped: [] };
  results.groups[name] = g;
  return g;
}

async function check(g, label, fn) {
  try {
    await fn();
    g.passed.push(label);
  } catch (e) {
    g.failed.push(`${label}: ${e && e.stack ? e.stack.split('\n').slice(0, 3).join(' | ') : e}`);
  }
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

function assertEqual(got, want, what) {
  if (got !== want) throw new Error(`${what}: got ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
}

// Resolves when fn() rejects with a VerifyError (of `code` when given); throws otherwise, so a
// must-fail vector that passes, or fails with a TypeError, is reported.
async function rejects(fn, code) {
  let value;
  try {
    value = await fn();
  } catch (e) {
    if (!(e instanceof v.VerifyError)) throw new Error(`rejected with ${e && e.name}: ${e && e.message}, expected a VerifyError`);
    if (code !== undefined && e.code !== code) throw new Error(`rejected with code ${e.code} (${e.message}), expected ${code}`);
    return e;
  }
  throw new Error(`resolved to ${JSON.stringify(value)}, expected a rejection${code ? ` with ${code}` : ''}`);
}

// ---- base64 -------------------------------------------------------------------------------------

async function testBase64() {
  const g = group('base64');
  await check(g, 'roundtrip', async () => {
    for (let n = 0; n < 70; n++) {
      const bytes = crypto.getRandomValues(new Uint8Array(n));
      const text = v.b64encode(bytes);
      assertEqual(text, btoa(String.fromCharCode(...bytes)), `encode ${n} bytes`);
      assertEqual(toHex(v.b64decode(text)), toHex(bytes), `decode ${n} bytes`);
    }
  });
  for (const bad of ['abc', 'ab=c', 'a b=', 'YQ', 'YQ=', '====', 'Y===', 'YWJj\n', '-_8=', 'YWJjZA=x']) {
    await check(g, `rejects ${JSON.stringify(bad)}`, () => rejects(() => v.b64decode(bad), 'malformed'));
  }
  await check(g, 'rejects non-strings', () => rejects(() => v.b64decode(null), 'malformed'));
}

// ---- RFC 6962 / 9162 hashes ----------------------------------------------------------------------

// MTH(D[0:n]) (RFC 9162 §2.1.1), recursively, from the module's leaf and node hashes.
async function mth(leaves) {
  if (leaves.length === 0) return v.sha256(new Uint8Array(0));
  if (leaves.length === 1) return v.leafHash(leaves[0]);
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return v.nodeHash(await mth(leaves.slice(0, k)), await mth(leaves.slice(k)));
}

async function testHashes(vectors) {
  const g = group('rfc6962_hashes');
  for (const t of vectors.hasher_vectors) {
    await check(g, t.desc, async () => {
      let got;
      if (t.kind === 'empty_root') got = await v.sha256(new Uint8Array(0));
      else if (t.kind === 'leaf') got = await v.leafHash(t.leaf_input_ascii !== undefined ? ascii(t.leaf_input_ascii) : fromHex(t.leaf_input_hex));
      else if (t.kind === 'node') got = await v.nodeHash(ascii(t.left_ascii), ascii(t.right_ascii));
      else throw new Error(`unknown kind ${t.kind}`);
      assertEqual(toHex(got), t.want_hex, t.desc);
    });
  }
  const tree = vectors.reference_tree;
  const leaves = tree.leaf_inputs_hex.map(fromHex);
  for (let level = 0; level < tree.node_hashes_hex.length; level++) {
    for (let i = 0; i < tree.node_hashes_hex[level].length; i++) {
      await check(g, `node[${level}][${i}]`, async () => {
        const width = 2 ** level;
        assertEqual(toHex(await mth(leaves.slice(i * width, (i + 1) * width))), tree.node_hashes_hex[level][i], 'subtree hash');
      });
    }
  }
  for (let n = 0; n < tree.root_hashes_by_size_hex.length; n++) {
    await check(g, `root[${n}]`, async () => {
      assertEqual(toHex(await mth(leaves.slice(0, n))), tree.root_hashes_by_size_hex[n], `root of size ${n}`);
    });
  }
}

// ---- RFC 9162 §2.1.3.2 / §2.1.4.2 probes --------------------------------------------------------

async function testInclusion(vectors) {
  const g = group('rfc6962_inclusion');
  for (const t of vectors.vectors) {
    await check(g, t.file, async () => {
      const run = () => v.verifyInclusion(t.leafIdx, t.treeSize, t.leafHash, t.proof, t.root);
      if (t.wantErr) await rejects(run);
      else await run();
    });
  }
}

async function testConsistency(vectors) {
  const g = group('rfc6962_consistency');
  for (const t of vectors.vectors) {
    await check(g, t.file, async () => {
      const run = () => v.verifyConsistency(t.size1, t.size2, t.proof, t.root1, t.root2);
      if (t.wantErr) await rejects(run);
      else await run();
    });
  }
}

// ---- Ed25519, signed notes, checkpoints (run once per backend) -------------------------------------

async function testSignedNotes(name, vectors, signing) {
  const g = group(`signed_note[${name}]`);
  const byId = Object.fromEntries(vectors.vectors.map((t) => [t.id, t]));
  for (const t of vectors.vectors) {
    if (!t.alg.startsWith('ed25519')) {
      // kiroku notes are Ed25519 only; other signature types are out of scope, but must be
      // refused as keys rather than misread.
      await check(g, `refuses-key:${t.id}`, () => rejects(() => v.parseVkey(t.vkey), 'bad-vkey'));
      g.skipped.push(`${t.id}: ${t.alg} notes are not Ed25519; verify.js verifies Ed25519 (type 0x01) only`);
      continue;
    }
    if (t.expect === 'valid') {
      await check(g, `valid:${t.id}`, async () => {
        assertEqual(await v.verifyNote(t.signed_note, t.vkey), t.text, 'note body');
        const note = v.parseNote(t.signed_note);
        assertEqual(note.body, t.text, 'parsed body');
      });
      await check(g, `edited-text:${t.id}`, () => rejects(() => v.verifyNote(t.signed_note.replace(/[a-z]/, 'Z'), t.vkey), 'bad-signature'));
    } else if (t.expect === 'reject_key') {
      for (const [i, bad] of t.bad_vkeys.entries()) {
        await check(g, `bad-vkey:${t.id}:${i}`, () => rejects(() => v.parseVkey(bad), 'bad-vkey'));
      }
    } else {
      g.skipped.push(`${t.id}: expectation ${t.expect} not handled here`);
    }
  }
  const peter = byId['gomod-peterneumann-sign'];
  const enoch = byId['gomod-enochroot-open'];
  const example = byId['c2sp-signed-note-example'];
  await check(g, 'two-signers-either-key', async () => {
    assertEqual(await v.verifyNote(enoch.signed_note, peter.vkey), enoch.text, 'with the first key');
    assertEqual(await v.verifyNote(enoch.signed_note, enoch.vkey), enoch.text, 'with the second key');
  });
  await check(g, 'wrong-key', () => rejects(() => v.verifyNote(peter.signed_note, example.vkey), 'bad-signature'));
  await check(g, 'known-key-bad-signature', async () => {
    // A signature by the trusted key that fails is an error even when another signer verifies.
    const [body, block] = enoch.signed_note.split('\n\n');
    const [peterLine, enochLine] = block.trim().split('\n');
    const blob = v.b64decode(peterLine.split(' ').pop());
    blob[10] ^= 1;
    const broken = `${body}\n\n\u2014 PeterNeumann ${v.b64encode(blob)}\n${enochLine}\n`;
    await rejects(() => v.verifyNote(broken, peter.vkey), 'bad-signature');
    assertEqual(await v.verifyNote(broken, enoch.vkey), enoch.text, 'the untouched signer');
  });
  await check(g, 'vkey-parts', async () => {
    const k = await v.parseVkey(peter.vkey);
    assertEqual(k.name, 'PeterNeumann', 'name');
    assertEqual(toHex(k.keyId), 'c74f20a3', 'key id');
    assertEqual(k.publicKey.length, 32, 'key length');
  });
  const bads = {
    'wrong-key-id': peter.vkey.replace('+c74f20a3+', '+c74f20a4+'),
    'space-in-name': `Peter Neumann${peter.vkey.slice('PeterNeumann'.length)}`,
    'two-parts': 'PeterNeumann+c74f20a3',
    empty: '',
    'bad-base64': 'PeterNeumann+c74f20a3+!!!!',
    'short-id': peter.vkey.replace('+c74f20a3+', '+c74f20a+'),
  };
  for (const [label, bad] of Object.entries(bads)) {
    await check(g, `bad-vkey:${label}`, () => rejects(() => v.parseVkey(bad), 'bad-vkey'));
  }
  const malformed = {
    'no-blank-line': peter.signed_note.replace('\n\n', '\n'),
    'no-final-newline': peter.signed_note.slice(0, -1),
    'no-em-dash': peter.signed_note.replace('\u2014', '-'),
    'control-char': peter.signed_note.replace('If', 'I\u0007f'),
    'short-signature': `${peter.text}\n\u2014 PeterNeumann AAAA\n`,
  };
  for (const [label, bad] of Object.entries(malformed)) {
    await check(g, `malformed-note:${label}`, () => rejects(() => v.verifyNote(bad, peter.vkey), 'malformed'));
  }
  // docs/signing-vectors.json: agencies' statement signatures over JCS(statement).
  for (const t of signing.vectors) {
    await check(g, `statement-signature:${t.name}`, async () => {
      const pk = v.b64decode(t.public_key_b64);
      const sig = v.b64decode(t.signature_b64);
      await v.ed25519Verify(pk, sig, utf8.encode(t.statement_jcs_utf8));
      await rejects(() => v.ed25519Verify(pk, sig, utf8.encode(`${t.statement_jcs_utf8} `)), 'bad-signature');
      const flipped = sig.slice();
      flipped[0] ^= 0x80;
      await rejects(() => v.ed25519Verify(pk, flipped, utf8.encode(t.statement_jcs_utf8)), 'bad-signature');
    });
  }
}

function parseTlogProof(text) {
  // c2sp.org/tlog-proof@v1: header, "index N", proof hashes, blank line, the signed checkpoint.
  const split = text.indexOf('\n\n');
  const head = text.slice(0, split).split('\n');
  assertEqual(head[0], 'c2sp.org/tlog-proof@v1', 'tlog-proof header');
  return { index: Number(head[1].replace('index ', '')), proof: head.slice(2), checkpoint: text.slice(split + 2) };
}

async function testCheckpoints(name, vectors, tlogProofs) {
  const g = group(`checkpoint[${name}]`);
  for (const t of vectors.vectors) {
    if (t.id === 'gomod-formattree') {
      await check(g, t.id, async () => {
        const c = v.parseCheckpoint(t.checkpoint_body);
        assertEqual(c.origin, 'go.sum database tree', 'origin');
        assertEqual(c.size, t.tree_size, 'size');
        assertEqual(toHex(c.root), toHex(await v.leafHash(ascii(t.record_ascii))), 'root = RFC 6962 record hash');
      });
    } else if (t.expect === 'parse_only') {
      await check(g, t.id, async () => {
        const note = v.parseNote(t.signed_checkpoint);
        const c = v.parseCheckpoint(note.body);
        assertEqual(`${c.origin}\n${c.size}\n${v.b64encode(c.root)}\n`, note.body, 'checkpoint fields');
        assertEqual(note.signatures.length, 1, 'signature lines');
        assertEqual(note.signatures[0].name, c.origin, 'signer');
      });
    } else if (t.expect === 'cosignature_valid') {
      await check(g, `refuses-key:${t.id}`, () => rejects(() => v.parseVkey(t.witness_vkey), 'bad-vkey'));
      g.skipped.push(`${t.id}: cosignature/v1 (signature type 0x04) is a witness format, not checked by verify.js`);
    } else {
      g.skipped.push(`${t.id}: no checkpoint to verify (${t.desc})`);
    }
  }
  for (const t of tlogProofs.vectors) {
    await check(g, `tlog-proof:${t.id}`, async () => {
      const p = parseTlogProof(t.tlog_proof);
      const c = v.parseCheckpoint(await v.verifyNote(p.checkpoint, t.log_vkey));
      assertEqual(c.origin, t.origin, 'origin');
      const leaf = await v.leafHash(ascii(t.leaf_raw));
      assertEqual(v.b64encode(leaf), t.expected_leaf_hash_b64, 'leaf hash');
      await v.verifyInclusion(p.index, c.size, leaf, p.proof, c.root);
      const other = await v.leafHash(ascii(t.leaf_raw.replace('v1.0.0', 'v1.0.1')));
      await rejects(() => v.verifyInclusion(p.index, c.size, other, p.proof, c.root), 'bad-proof');
      // sum.golang.org's key is not named after its origin: kiroku's rule must refuse it.
      await rejects(() => v.verifyCheckpoint(p.checkpoint, t.log_vkey), 'bad-checkpoint');
    });
  }
  const root = v.b64encode(await v.sha256(ascii('root')));
  await check(g, 'extension-lines', () => {
    const c = v.parseCheckpoint(`log.example\n5\n${root}\nextension one\nextension two\n`);
    assertEqual(c.size, 5, 'size');
  });
  const bad = {
    'leading-zero': `log.example\n05\n${root}\n`,
    'negative-size': `log.example\n-5\n${root}\n`,
    'short-root': `log.example\n5\n${root.slice(4)}\n`,
    'empty-extension': `log.example\n5\n${root}\n\n`,
    'two-lines': 'log.example\n5\n',
    'no-final-newline': `log.example\n5\n${root}`,
  };
  for (const [label, body] of Object.entries(bad)) {
    await check(g, `malformed:${label}`, () => rejects(() => v.parseCheckpoint(body), 'malformed'));
  }
}

// ---- RFC 8785 and kiroku commitments -----------------------------------------------------------

async function testJcs(signing, pyCases) {
  const g = group('jcs_commitment');
  for (const t of signing.vectors) {
    await check(g, `${t.name}:payload`, () => assertEqual(v.canonicalJson(t.payload), t.payload_jcs_utf8, 'JCS(payload)'));
    await check(g, `${t.name}:statement`, () => assertEqual(v.canonicalJson(t.statement), t.statement_jcs_utf8, 'JCS(statement)'));
    await check(g, `${t.name}:commitment`, async () => {
      assertEqual(await v.commitment(t.payload, t.salt_b64), t.commitment_b64, 'commitment');
      const edited = { ...t.payload, items: [...t.payload.items, 'x'] };
      assert(await v.commitment(edited, t.salt_b64) !== t.commitment_b64, 'an edited payload has another commitment');
    });
  }
  // Values canonicalised by Python's rfc8785 (an independent implementation).
  for (const [i, c] of pyCases.entries()) {
    await check(g, `rfc8785-py:${i}`, () => assertEqual(v.canonicalJson(JSON.parse(c.json)), c.jcs, `JCS(${c.json})`));
  }
  for (const [label, bad] of Object.entries({ nan: NaN, infinity: Infinity, 'lone-surrogate': '\ud800', undef: undefined, date: new Date(0) })) {
    await check(g, `refuses:${label}`, () => rejects(() => v.canonicalJson({ k: bad }), 'malformed'));
  }
}

// ---- verifyRecords on bundles built by the ledger ------------------------------------------------

function plain(map) {
  return Object.fromEntries(map);
}

async function runRecordCases(name, cases) {
  const out = {};
  for (const c of cases) {
    try {
      out[c.name] = plain(await v.verifyRecords(c.bundle, c.vkey));
    } catch (e) {
      out[c.name] = { error: `${e && e.name}: ${e && e.code} ${e && e.message}` };
    }
  }
  results.records[name] = out;
}

async function bench(b) {
  // Warm up (module, key import, code paths), then time full verifyRecords calls.
  await v.verifyRecords(b.bundle, b.vkey);
  const times = [];
  let last;
  for (let i = 0; i < b.runs; i++) {
    const t0 = performance.now();
    last = await v.verifyRecords(b.bundle, b.vkey);
    times.push(performance.now() - t0);
  }
  const ok = [...last.values()].filter((r) => r.ok).length;
  results.bench = { times, records: b.bundle.records.length, ok, treeSize: b.treeSize,
                    proofLength: b.bundle.records[0].inclusion.proof.length,
                    backend: await v.ed25519BackendInUse() };
}

// ---- run everything -----------------------------------------------------------------------------

async function withBackend(name, fn) {
  // 'auto-without-webcrypto': a browser whose WebCrypto lacks Ed25519, simulated by refusing the
  // algorithm in importKey; 'auto' must then fall back to the library.
  const subtle = crypto.subtle;
  const original = subtle.importKey;
  if (name === 'auto-without-webcrypto') {
    subtle.importKey = function importKey(format, key, alg, ...rest) {
      if ((alg?.name ?? alg) === 'Ed25519') return Promise.reject(new DOMException('Algorithm: Unrecognized name', 'NotSupportedError'));
      return original.call(this, format, key, alg, ...rest);
    };
    v.setEd25519Backend('auto');
  } else {
    v.setEd25519Backend(name);
  }
  try {
    results.backends ??= {};
    results.backends[name] = await v.ed25519BackendInUse();
    await fn(name);
  } finally {
    subtle.importKey = original;
    v.setEd25519Backend('auto');
  }
}

async function main() {
  const [hashes, inclusion, consistency, notes, checkpoints, tlogProofs, signing, cases] = await Promise.all([
    getJson('/vectors/rfc6962_hashes.json'),
    getJson('/vectors/rfc6962_inclusion_proofs.json'),
    getJson('/vectors/rfc6962_consistency_proofs.json'),
    getJson('/vectors/signed_note_vectors.json'),
    getJson('/vectors/checkpoint_vectors.json'),
    getJson('/vectors/tlog_proof_vectors.json'),
    getJson('/docs/signing-vectors.json'),
    getJson('/cases.json'),
  ]);
  await testBase64();
  await testHashes(hashes);
  await testInclusion(inclusion);
  await testConsistency(consistency);
  await testJcs(signing, cases.jcs);
  for (const backend of ['webcrypto', 'library', 'auto-without-webcrypto']) {
    await withBackend(backend, async (name) => {
      await testSignedNotes(name, notes, signing);
      await testCheckpoints(name, checkpoints, tlogProofs);
      await runRecordCases(name, cases.records);
    });
  }
  if (cases.bench) await bench(cases.bench);
}

window.__done = main().then(
  () => results,
  (e) => { results.errors.push(String(e && e.stack ? e.stack : e)); return results; },
);
