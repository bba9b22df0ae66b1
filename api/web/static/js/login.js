// Log in by signing a one-time challenge inside this browser (WebCrypto). The private key is
// read from the chosen file, used once and never sent: only the certificate (residents) or the
// key id (auditors, agencies), the challenge and the signature go to the server.
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const errorBox = document.getElementById('login-error');

function pemBody(text, labels) {
  for (const label of labels) {
    const m = text.match(new RegExp(`-----BEGIN ${label}-----([\\s\\S]+?)-----END ${label}-----`));
    if (m) {
      const bin = atob(m[1].replace(/\s+/g, ''));
      return Uint8Array.from(bin, (c) => c.charCodeAt(0));
    }
  }
  throw new Error('not a PEM PKCS#8 private key (BEGIN PRIVATE KEY)');
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
  // JPKI user certificates: RSA PKCS#1 v1.5 with SHA-256.
  { name: 'rsa', imp: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, sign: { name: 'RSASSA-PKCS1-v1_5' } },
  { name: 'ecdsa', imp: { name: 'ECDSA', namedCurve: 'P-256' }, sign: { name: 'ECDSA', hash: 'SHA-256' } },
  { name: 'ed25519', imp: { name: 'Ed25519' }, sign: { name: 'Ed25519' } },
];

async function importKey(der, only) {
  for (const alg of ALGORITHMS) {
    if (only && alg.name !== only) continue;
    try {
      const key = await crypto.subtle.importKey('pkcs8', der, alg.imp, true, ['sign']);
      return { key, alg };
    } catch (e) { /* try the next algorithm */ }
  }
  throw new Error(only ? `the key is not an ${only} key` : 'unsupported private key type');
}

async function sign(imported, message) {
  const raw = new Uint8Array(await crypto.subtle.sign(imported.alg.sign, imported.key,
    new TextEncoder().encode(message)));
  return b64(imported.alg.name === 'ecdsa' ? p1363ToDer(raw) : raw);
}

async function getChallenge() {
  const res = await fetch('/v1/auth/challenge', { method: 'POST' });
  if (!res.ok) throw new Error((await res.json()).detail || res.statusText);
  return res.json();
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

function goNext(fallback) {
  const next = new URLSearchParams(location.search).get('next');
  location.assign(next && next.startsWith('/') && !next.startsWith('//') ? next : fallback);
}

function wire(form, handler) {
  if (!form) return;
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const button = form.querySelector('button[type="submit"]');
    errorBox.hidden = true;
    button.disabled = true;
    button.dataset.label = button.textContent;
    button.textContent = form.dataset.working;
    try {
      goNext((await handler(form)).next);
    } catch (e) {
      errorBox.textContent = form.dataset.failed + e.message;
      errorBox.hidden = false;
      errorBox.focus?.();
      button.disabled = false;
      button.textContent = button.dataset.label;
    }
  });
}

wire(document.getElementById('resident-login'), async (form) => {
  const certificate = await form.certificate.files[0].text();
  const key = await importKey(pemBody(await form.key.files[0].text(), ['PRIVATE KEY']));
  const challenge = await getChallenge();
  return post('/login/resident', {
    certificate, challenge: challenge.challenge, signature: await sign(key, challenge.message),
  });
});

wire(document.getElementById('console-login'), async (form) => {
  const principal = form.principal.value.trim();
  const key = await importKey(pemBody(await form.key.files[0].text(), ['PRIVATE KEY']), 'ed25519');
  const jwk = await crypto.subtle.exportKey('jwk', key.key);
  const pub = Uint8Array.from(atob(jwk.x.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0));
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', pub));
  const keyId = Array.from(digest.slice(0, 8), (b) => b.toString(16).padStart(2, '0')).join('');
  const challenge = await getChallenge();
  const origin = challenge.message.split('\n')[1];
  const message = `kiroku-console-login/v1\n${origin}\n${principal}\n${keyId}\n${challenge.challenge}\n`;
  return post('/login/console', {
    principal, key_id: keyId, challenge: challenge.challenge, signature: await sign(key, message),
  });
});
