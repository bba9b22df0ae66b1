// The auditor console's checks, run in the auditor's browser: each listed checkpoint's note
// signature against the operator's key, and each checkpoint's consistency with the one before
// it (RFC 9162 §2.1.4.2) from the proofs the page carries.
import { verifyCheckpoint, verifyConsistency, b64decode } from './verify.js';

const lang = document.documentElement.lang === 'en' ? 'en' : 'ja';
const WORDS = lang === 'en'
  ? { ok: 'Verified', bad: 'Not verified', first: 'Oldest shown', same: 'Same size',
      healthy: 'Healthy: the latest checkpoint reproduces from stored data', unhealthy: 'Unhealthy', lag: '{n} entries' }
  : { ok: '検証済み', bad: '検証できません', first: '表示中で最古', same: '同じ大きさ',
      healthy: '正常：最新のチェックポイントが保存データから再現できます', unhealthy: '異常', lag: '{n} 件' };
const data = JSON.parse(document.getElementById('kiroku-console').textContent);

function show(size, check, state, text, title) {
  const el = document.querySelector(`tr[data-size="${size}"] [data-check="${check}"]`);
  if (!el) return;
  el.dataset.state = state;
  el.textContent = `${state === 'ok' ? '✔' : state === 'bad' ? '✖' : '–'} ${text}`;
  if (title) el.title = title;
}

async function run() {
  const roots = new Map();
  let ok = 0;
  for (const cp of data.checkpoints) {
    try {
      const opened = await verifyCheckpoint(cp.note, data.vkey);
      if (opened.size !== cp.size) throw new Error(`size ${opened.size}, expected ${cp.size}`);
      roots.set(cp.size, opened.root);
      show(cp.size, 'signature', 'ok', WORDS.ok);
      ok++;
    } catch (e) {
      show(cp.size, 'signature', 'bad', `${WORDS.bad}: ${e.code || ''}`, e.message);
    }
  }
  const sizes = data.checkpoints.map((c) => c.size);
  if (sizes.length) show(sizes[0], 'consistency', 'pending', WORDS.first);
  for (let i = 1; i < sizes.length; i++) {
    if (sizes[i] === sizes[i - 1]) { show(sizes[i], 'consistency', 'ok', WORDS.same); continue; }
    const proof = data.consistency.find((p) => p.old_size === sizes[i - 1] && p.new_size === sizes[i]);
    try {
      // The roots come from the signed notes, never from the proof's own old_root/new_root.
      const oldRoot = roots.get(sizes[i - 1]);
      const newRoot = roots.get(sizes[i]);
      if (!proof || !oldRoot || !newRoot) throw new Error('no signed roots or proof to compare');
      await verifyConsistency(sizes[i - 1], sizes[i], proof.proof.map(b64decode), oldRoot, newRoot);
      show(sizes[i], 'consistency', 'ok', WORDS.ok);
    } catch (e) {
      show(sizes[i], 'consistency', 'bad', `${WORDS.bad}: ${e.code || ''}`, e.message);
    }
  }
  document.documentElement.dataset.checkpointsVerified = `${ok}/${data.checkpoints.length}`;
}

// A live view of the log's health: size, latest checkpoint and the views' lag, every 5 s.
async function poll() {
  try {
    const res = await fetch('/healthz', { headers: { Accept: 'application/json' } });
    const health = await res.json();
    document.getElementById('tree-size').textContent = String(health.tree_size);
    const status = document.getElementById('health-status');
    if (status) {
      status.dataset.state = health.status === 'ok' ? 'ok' : 'bad';
      status.textContent = `${health.status === 'ok' ? '✔' : '✖'} ${health.status === 'ok' ? WORDS.healthy : WORDS.unhealthy}`;
    }
    for (const view of health.projections || []) {
      const el = document.querySelector(`[data-lag="${view.name}"]`);
      if (el) el.textContent = WORDS.lag.replace('{n}', view.lag);
    }
    document.documentElement.dataset.healthPolled = String(Date.now());
  } catch (e) { /* the next poll tries again */ }
}

run();
poll();
setInterval(poll, 5000);
