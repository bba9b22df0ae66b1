// Apply from a notice (docs/applications.md): the answers are signed inside this browser with
// the key of the resident's card (WebCrypto); the key is read from the chosen file, used once
// and never sent. What is signed: "kiroku-application/v1\n<origin>\n" + RFC 8785 JSON of the
// request {notice, form, answers, forward, challenge}; the server checks the same bytes.
import { canonicalJson } from './verify.js';

const page = JSON.parse(document.getElementById('kiroku-page').textContent);
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const form = document.getElementById('apply-form');
const errorBox = document.getElementById('apply-error');

function pemBody(text) {
  const m = text.match(/-----BEGIN PRIVATE KEY-----([\s\S]+?)-----END PRIVATE KEY-----/);
  if (!m) throw new Error('not a PEM PKCS#8 private key (BEGIN PRIVATE KEY)');
  return Uint8Array.from(atob(m[1].replace(/\s+/g, '')), (c) => c.charCodeAt(0));
}

function b64(bytes) {
  let s = '';
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s);
}

// WebCrypto's ECDSA signature is r‖s (IEEE P1363); X.509 verifiers expect DER (RFC 3279 §2.2.3).
function p1363ToDer(sig) {
  const half = sig.length / 2;
  const int = (bytes) => {
    let i = 0;
    while (i < bytes.length - 1 && bytes[i] === 0) i++;
    let v = bytes.slice(i);
    if (v[0] & 0x80) v = Uint8Array.of(0, ...v);
    return Uint8Array.of(0x02, v.length, ...v);
  };
  const r = int(sig.slice(0, half));
  const s = int(sig.slice(half));
  return Uint8Array.of(0x30, r.length + s.length, ...r, ...s);
}

const ALGORITHMS = [
  { name: 'rsa', imp: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, sign: { name: 'RSASSA-PKCS1-v1_5' } },
  { name: 'ecdsa', imp: { name: 'ECDSA', namedCurve: 'P-256' }, sign: { name: 'ECDSA', hash: 'SHA-256' } },
  { name: 'ed25519', imp: { name: 'Ed25519' }, sign: { name: 'Ed25519' } },
];

async function signWith(der, message) {
  for (const alg of ALGORITHMS) {
    let key;
    try {
      key = await crypto.subtle.importKey('pkcs8', der, alg.imp, false, ['sign']);
    } catch (e) { continue; /* try the next algorithm */ }
    const raw = new Uint8Array(await crypto.subtle.sign(alg.sign, key, new TextEncoder().encode(message)));
    return b64(alg.name === 'ecdsa' ? p1363ToDer(raw) : raw);
  }
  throw new Error('unsupported private key type');
}

function collect() {
  const answers = {};
  for (const input of form.querySelectorAll('[data-answer]')) {
    const value = input.value.trim();
    if (value) answers[input.dataset.answer] = value;
  }
  // Consent is per recipient: only ticked partners are named, each with "consent": true.
  const forward = [];
  for (const box of form.querySelectorAll('[data-consent]')) {
    if (!box.checked) continue;
    const partner = box.dataset.consent;
    const number = form.querySelector(`[data-customer="${partner}"]`).value.trim();
    forward.push({ partner, consent: true, customer_number: number });
  }
  return { answers, forward };
}

async function post(url, body) {
  const res = await fetch(url, {
    method: 'POST', credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf },
    body: JSON.stringify(body),
  });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.detail || res.statusText);
  return data;
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const button = form.querySelector('button[type="submit"]');
  errorBox.hidden = true;
  button.disabled = true;
  try {
    const certFile = document.getElementById('cert-file').files[0];
    const keyFile = document.getElementById('key-file').files[0];
    if (!certFile || !keyFile) throw new Error('choose your certificate and private key files');
    const got = await fetch('/v1/auth/challenge', { method: 'POST' });
    if (!got.ok) throw new Error(got.statusText);
    const { challenge } = await got.json();
    const request = { notice: page.notice, form: page.form, ...collect(), challenge };
    const message = `${page.context}\n${page.origin}\n${canonicalJson(request)}`;
    const signature = await signWith(pemBody(await keyFile.text()), message);
    const done = await post('/me/applications', { request, certificate: await certFile.text(), signature });
    location.assign(done.next);
  } catch (e) {
    errorBox.textContent = errorBox.dataset.prefix + e.message;
    errorBox.hidden = false;
    button.disabled = false;
  }
});
