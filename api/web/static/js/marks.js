// The verified mark on each record, computed here in the resident's browser (verify.js):
// the leaf hash is recomputed from the leaf bytes, the inclusion proof walked to the root of
// the checkpoint, the checkpoint's Ed25519 signature checked with the operator's key, and the
// payload matched against its signed commitment and against what the page shows.
//
// The operator's key is pinned on first use (localStorage): if a later page brings another key,
// records are checked against the pinned one and the resident is warned, with a choice to
// trust the new key (after comparing it with the published one).
import { verifyRecords, parseCheckpoint, parseNote, b64encode, b64decode, leafHash } from './verify.js';

const PIN = 'kiroku.operator-vkey';
const lang = document.documentElement.lang === 'en' ? 'en' : 'ja';
const WORDS = {
  ja: {
    ok: '検証済み', bad: '検証できません', pending: '未検証（チェックポイント待ち）',
    okTitle: 'ログ番号 {index}、署名付きチェックポイント（大きさ {size}）で確認',
    reasons: {
      'bad-checkpoint': 'チェックポイントの署名が検証鍵と一致しません',
      'bad-signature': '署名が一致しません', 'size-mismatch': '証明のログの大きさが違います',
      'index-mismatch': 'ログ番号が違います', 'bad-proof': '包含証明が根に届きません',
      'leaf-mismatch': '葉の内容が記録と一致しません', 'commitment-mismatch': '内容が署名されたものと違います',
      'content-mismatch': '表示内容がログの内容と違います', 'bad-vkey': '検証鍵が不正です',
      'malformed': 'データの形式が不正です', 'network': '証明を取得できませんでした',
      'unsupported': 'このブラウザでは検証できません（WebCrypto がありません）',
    },
  },
  en: {
    ok: 'Verified', bad: 'Not verified', pending: 'Not verified yet (awaiting checkpoint)',
    okTitle: 'Log entry {index}, checked against the signed checkpoint of size {size}',
    reasons: {
      'bad-checkpoint': "the checkpoint's signature does not match the operator's key",
      'bad-signature': 'a signature does not match', 'size-mismatch': 'the proof is for another log size',
      'index-mismatch': 'the log index differs', 'bad-proof': 'the inclusion proof does not reach the root',
      'leaf-mismatch': 'the leaf does not match the record', 'commitment-mismatch': 'the content is not what was signed',
      'content-mismatch': 'what the page shows differs from the log', 'bad-vkey': "the operator's key is malformed",
      'malformed': 'malformed data', 'network': 'the proofs could not be fetched',
      'unsupported': 'this browser cannot verify (no WebCrypto)',
    },
  },
}[lang];

const page = JSON.parse(document.getElementById('kiroku-page').textContent);

function pinnedKey() {
  try {
    const pinned = localStorage.getItem(PIN);
    if (!pinned) { localStorage.setItem(PIN, page.vkey); return page.vkey; }
    return pinned;
  } catch (e) { return page.vkey; } // storage disabled: nothing to compare with
}

function mark(el, state, text, title) {
  const m = el.querySelector('[data-mark]');
  if (!m) return;
  m.dataset.state = state;
  m.querySelector('.mark-icon').textContent = state === 'ok' ? '✔' : state === 'bad' ? '✖' : '…';
  m.querySelector('.mark-text').textContent = text;
  if (title) m.title = title;
}

async function fillCheckpoint(bundle, record) {
  const box = document.getElementById('checked-against');
  if (!box || !bundle.checkpoint) return;
  const cp = parseCheckpoint(parseNote(bundle.checkpoint).body);
  box.querySelector('[data-cp="size"]').textContent = String(cp.size);
  box.querySelector('[data-cp="root"]').textContent = b64encode(cp.root);
  if (record) box.querySelector('[data-cp="leaf"]').textContent = b64encode(await leafHash(b64decode(record.leaf)));
  const note = document.querySelector('[data-cp="note"]');
  if (note) note.textContent = bundle.checkpoint;
}

async function run() {
  const cards = Array.from(document.querySelectorAll('.record[data-id]'));
  if (!cards.length) return;
  const vkey = pinnedKey();
  if (vkey !== page.vkey) {
    const box = document.getElementById('key-changed');
    box.hidden = false;
    document.getElementById('trust-new-key').addEventListener('click', () => {
      localStorage.setItem(PIN, page.vkey);
      location.reload();
    });
  }
  let bundle;
  try {
    const res = await fetch(page.verify_url, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
    if (!res.ok) throw new Error(res.statusText);
    bundle = await res.json();
  } catch (e) {
    for (const card of cards) mark(card, 'bad', WORDS.bad, WORDS.reasons.network);
    return;
  }
  const started = performance.now();
  const ready = (bundle.records || []).filter((r) => r.inclusion);
  const results = bundle.checkpoint && ready.length
    ? await verifyRecords({ checkpoint: bundle.checkpoint, records: ready }, vkey)
    : new Map();
  const elapsed = performance.now() - started;
  const byId = new Map((bundle.records || []).map((r) => [r.id, r]));
  let ok = 0;
  for (const card of cards) {
    const result = results.get(card.dataset.id);
    if (result && result.ok) {
      ok++;
      mark(card, 'ok', WORDS.ok, WORDS.okTitle.replace('{index}', result.index).replace('{size}', result.treeSize));
    } else if (result) {
      const reason = WORDS.reasons[result.code] || result.message || '';
      mark(card, 'bad', `${WORDS.bad}: ${reason}`, result.message);
    } else if (byId.has(card.dataset.id)) {
      mark(card, 'pending', WORDS.pending);
    } else {
      mark(card, 'bad', `${WORDS.bad}: ${WORDS.reasons.malformed}`);
    }
  }
  if (cards.length === 1) {
    await fillCheckpoint(bundle, byId.get(cards[0].dataset.id));
  }
  // Read by the browser tests and the bench: how long verification took, how many passed.
  document.documentElement.dataset.verifyMs = elapsed.toFixed(1);
  document.documentElement.dataset.verified = `${ok}/${cards.length}`;
}

run();
